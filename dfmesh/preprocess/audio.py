"""CQCC features and fixed-length audio windows for the audio branch (numpy + librosa, no torch).

CQCC (constant-Q cepstral coefficients, Todisco et al., 2016/2017) as the audio model is trained
and served on:

1. constant-Q transform of the 16 kHz mono PCM (librosa.cqt), power |X|^2, natural log;
2. uniform resampling of the geometric (log-spaced) frequency axis onto a linear one, so that
   the cosine transform below sees a linearly sampled spectrum (that is what makes it cepstral);
3. DCT-II (orthonormal) along frequency, keep the first `N_COEFFS` coefficients (c0 included);
4. append deltas and delta-deltas (librosa.feature.delta, 9-frame regression);
5. per-window mean and variance normalization of every row over time (CMVN), so loudness and
   a fixed channel colouring do not dominate.

Windows: the PCM is cut into `WINDOW_SECONDS` windows; audio shorter than one window is
repeated (tiled) to fill it; longer audio gives several windows spaced evenly over the clip
(at most `MAX_WINDOWS`). `audio_input` returns [W, 1, C, T] float32 with C = 3 * N_COEFFS and
T = 1 + WINDOW_SAMPLES // HOP_LENGTH.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.fft

from dfmesh.preprocess import waveform
from dfmesh.preprocess.waveform import check_pcm

SAMPLE_RATE = 16_000
HOP_LENGTH = 256
"""CQT hop in samples (16 ms); must be divisible by 2**(octaves - 1) for librosa's multirate CQT."""
FMIN_HZ = 62.5
BINS_PER_OCTAVE = 24
N_OCTAVES = 7
N_BINS = BINS_PER_OCTAVE * N_OCTAVES
"""168 bins from 62.5 Hz up to about 7.77 kHz, just under Nyquist."""
N_LINEAR_BINS = 512
"""Points of the uniform (linear) frequency grid the log-power CQT is resampled onto."""
N_COEFFS = 20
DELTA_WIDTH = 9
WINDOW_SECONDS = 4.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
MAX_WINDOWS = 8
N_FEATURES = 3 * N_COEFFS
"""Rows of the CQCC matrix: static coefficients, deltas, delta-deltas."""
N_FRAMES = 1 + WINDOW_SAMPLES // HOP_LENGTH
"""Columns (frames) of one window's CQCC matrix (251 for 4 s)."""
LOG_FLOOR = 1e-10

PREPROCESSING = {
    "function": "dfmesh.preprocess.audio.audio_input",
    "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH, "fmin_hz": FMIN_HZ,
    "bins_per_octave": BINS_PER_OCTAVE, "n_bins": N_BINS, "n_linear_bins": N_LINEAR_BINS,
    "n_coeffs": N_COEFFS, "deltas": ["delta", "delta-delta"], "delta_width": DELTA_WIDTH,
    "normalization": "per-window CMVN over time", "window_seconds": WINDOW_SECONDS,
    "max_windows": MAX_WINDOWS, "short_audio": "tiled to one window",
}
"""What the audio model's manifest says about its inputs."""


def cqt_frequencies() -> np.ndarray:
    """Centre frequency in Hz of every CQT bin."""
    return librosa.cqt_frequencies(n_bins=N_BINS, fmin=FMIN_HZ, bins_per_octave=BINS_PER_OCTAVE)


def cqt_log_power(pcm: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Natural-log power constant-Q spectrogram, [N_BINS, frames] float64."""
    spectrum = librosa.cqt(check_pcm(pcm), sr=sr, hop_length=HOP_LENGTH, fmin=FMIN_HZ,
                           n_bins=N_BINS, bins_per_octave=BINS_PER_OCTAVE)
    return np.log(np.abs(spectrum) ** 2 + LOG_FLOOR)


def linear_resample(log_power: np.ndarray) -> np.ndarray:
    """Resample [N_BINS, T] from the geometric CQT frequencies onto N_LINEAR_BINS evenly spaced
    frequencies over the same range (linear interpolation along frequency)."""
    geometric = cqt_frequencies()
    linear = np.linspace(geometric[0], geometric[-1], N_LINEAR_BINS)
    upper = np.clip(np.searchsorted(geometric, linear, side="right"), 1, len(geometric) - 1)
    lower = upper - 1
    frac = (linear - geometric[lower]) / (geometric[upper] - geometric[lower])
    return log_power[lower] * (1.0 - frac)[:, None] + log_power[upper] * frac[:, None]


def cqcc_static(pcm: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The first N_COEFFS cepstral coefficients per frame, [N_COEFFS, T]."""
    uniform = linear_resample(cqt_log_power(pcm, sr))
    return scipy.fft.dct(uniform, type=2, axis=0, norm="ortho")[:N_COEFFS]


def with_deltas(static: np.ndarray) -> np.ndarray:
    """Stack static coefficients, their deltas and delta-deltas: [C, T] -> [3C, T]."""
    delta = librosa.feature.delta(static, width=DELTA_WIDTH, order=1, axis=-1, mode="interp")
    delta2 = librosa.feature.delta(static, width=DELTA_WIDTH, order=2, axis=-1, mode="interp")
    return np.concatenate([static, delta, delta2], axis=0)


def cmvn(features: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Zero mean and unit variance per row over time (rows that are constant become zeros)."""
    centred = features - features.mean(axis=1, keepdims=True)
    return centred / (features.std(axis=1, keepdims=True) + eps)


def cqcc(pcm: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """CQCC with deltas and delta-deltas, CMVN-normalized: [N_FEATURES, T] float32."""
    return cmvn(with_deltas(cqcc_static(pcm, sr))).astype(np.float32)


def window_starts(n_samples: int, window: int = WINDOW_SAMPLES,
                  max_windows: int = MAX_WINDOWS) -> list[int]:
    """Start samples of the windows cut from `n_samples` of audio: one window for audio up to
    one window long, otherwise ceil(n / window) windows (at most max_windows) spread evenly
    from the first sample to the last full window (the rule the AASIST windows share)."""
    return waveform.window_starts(n_samples, max_windows=max_windows, window=window)


def audio_windows(pcm: np.ndarray, window: int = WINDOW_SAMPLES,
                  max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """Cut PCM into fixed-length windows, [W, window] float32; short audio is tiled."""
    pcm = waveform.tile_to(check_pcm(pcm), window)
    return np.stack([pcm[s:s + window] for s in window_starts(pcm.size, window, max_windows)])


def audio_input(pcm: np.ndarray, max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """The audio model's input from mono 16 kHz float PCM: [W, 1, N_FEATURES, N_FRAMES]."""
    windows = audio_windows(pcm, WINDOW_SAMPLES, max_windows)
    return np.stack([cqcc(w)[None] for w in windows]).astype(np.float32)
