"""Raw-waveform windows for the AASIST audio model (numpy only: no torch, no librosa).

The model reads 64,600 samples (about 4.04 s) of 16 kHz mono float PCM in [-1, 1], not
normalised. A clip shorter than one window is repeated (tiled) to fill it; a longer clip
gives ceil(n / 64600) windows, at most `max_windows`, spaced evenly from the first sample to
the last full window. The clip's probability is the mean of the windows' probabilities.
Training (training/real/audio.py) and the audio service both cut windows with these functions.
"""

from __future__ import annotations

import numpy as np

from dfmesh.errors import InvalidInput

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 64_600
MAX_WINDOWS = 4

PREPROCESSING = {
    "function": "dfmesh.preprocess.waveform.waveform_windows",
    "sample_rate": SAMPLE_RATE,
    "window_samples": WINDOW_SAMPLES,
    "normalization": "none (float PCM in [-1, 1] as ingest decodes it)",
    "short_audio": "tiled to one window",
    "long_audio": "ceil(n / window) windows, at most max_windows, spaced evenly",
    "clip_score": "audio_prob_fake = mean over windows of sigmoid(logit)",
}
"""What the audio model's manifest says about its inputs (the service's contract)."""


def check_pcm(pcm: np.ndarray) -> np.ndarray:
    """Return `pcm` as contiguous float32 1-D; raise InvalidInput when it is not mono PCM."""
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1:
        raise InvalidInput(f"PCM must be a 1-D numpy array, got "
                           f"{type(pcm).__name__} {getattr(pcm, 'shape', '')}")
    if pcm.size == 0:
        raise InvalidInput("PCM is empty")
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    if not np.all(np.isfinite(pcm)):
        raise InvalidInput("PCM contains NaN or infinite samples")
    return pcm


def tile_to(pcm: np.ndarray, length: int = WINDOW_SAMPLES) -> np.ndarray:
    """Repeat `pcm` until it is at least `length` samples long (unchanged when it already is)."""
    if pcm.size >= length:
        return pcm
    return np.tile(pcm, int(np.ceil(length / pcm.size)))[:length]


def window_starts(n_samples: int, max_windows: int = MAX_WINDOWS,
                  window: int = WINDOW_SAMPLES) -> list[int]:
    """Start samples of the windows cut from `n_samples` of (tiled) audio."""
    if max_windows < 1:
        raise ValueError("max_windows must be at least 1")
    if n_samples <= window:
        return [0]
    count = min(max_windows, int(np.ceil(n_samples / window)))
    return [int(round(s)) for s in np.linspace(0, n_samples - window, count)]


def waveform_windows(pcm: np.ndarray, max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """The model's input from mono 16 kHz float PCM: float32 [N, WINDOW_SAMPLES], N <= max."""
    pcm = tile_to(check_pcm(pcm))
    return np.stack([pcm[s:s + WINDOW_SAMPLES]
                     for s in window_starts(pcm.size, max_windows)]).astype(np.float32)


def random_window(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One window at a uniformly random offset (training), float32 [WINDOW_SAMPLES]."""
    pcm = tile_to(check_pcm(pcm))
    start = int(rng.integers(0, pcm.size - WINDOW_SAMPLES + 1))
    return pcm[start:start + WINDOW_SAMPLES].copy()
