"""Lip-sync model inputs: aligned (mouth video window, audio window) pairs (numpy + OpenCV +
librosa, no torch).

Ingest sends the dense window: 96x96 RGB mouth crops (cut with
`dfmesh.preprocess.geometry.mouth_crop`) at the clip's native frame rate, each with its
timestamp, plus the mono 16 kHz PCM. Here the frames are resampled in time to a nominal
`VIDEO_FPS` by nearest timestamp (so 25, 30 or 22 fps clips give the same tensor), and every
window of `WINDOW_FRAMES` frames is paired with the log-mel audio covering the same
`WINDOW_SECONDS` (centred on the same instant).

| tensor | shape | values |
|---|---|---|
| mouth | [N, WINDOW_FRAMES, MOUTH_SIZE, MOUTH_SIZE] float32 | gray / 255 minus window mean |
| audio | [N, N_MELS, MEL_FRAMES] float32 | log-mel, per-clip mean/std normalized per band |
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import librosa
import numpy as np

from dfmesh.errors import InvalidInput
from dfmesh.preprocess.waveform import check_pcm

VIDEO_FPS = 25.0
WINDOW_FRAMES = 15
WINDOW_SECONDS = WINDOW_FRAMES / VIDEO_FPS
"""0.6 s: fifteen frames at 25 fps, and the audio that goes with them. Long enough that the
lip-motion and speech-energy time courses can be compared (a 0.3 s shift is half a window),
short enough for several windows per 2.5 s dense window."""
MOUTH_SIZE = 32
SAMPLE_RATE = 16_000
N_MELS = 40
N_FFT = 512
WIN_LENGTH = 400
"""25 ms analysis window."""
MEL_HOP = 160
"""10 ms hop: 100 mel frames per second."""
MEL_FRAMES = int(round(WINDOW_SECONDS * SAMPLE_RATE / MEL_HOP))
"""60 mel frames per window (4 per video frame)."""
WINDOW_STRIDE_FRAMES = 2
"""Nominal frames between the starts of consecutive windows."""
MAX_WINDOWS = 48
LOG_FLOOR = 1e-6

PREPROCESSING = {
    "function": "dfmesh.preprocess.mouth.sync_inputs",
    "mouth_crop": "dfmesh.preprocess.geometry.mouth_crop (96x96 RGB from MTCNN landmarks)",
    "video_fps": VIDEO_FPS, "window_frames": WINDOW_FRAMES, "window_seconds": WINDOW_SECONDS,
    "mouth_size": MOUTH_SIZE, "mouth_values": "grayscale/255 minus window mean",
    "sample_rate": SAMPLE_RATE, "n_mels": N_MELS, "n_fft": N_FFT, "win_length": WIN_LENGTH,
    "hop_length": MEL_HOP, "mel_frames": MEL_FRAMES,
    "audio_values": "natural-log mel power, per-clip per-band mean/std normalized",
    "window_stride_frames": WINDOW_STRIDE_FRAMES, "max_windows": MAX_WINDOWS,
}
"""What the sync model's manifest says about its inputs."""


def mouth_gray(crops: Sequence[np.ndarray] | np.ndarray, size: int = MOUTH_SIZE) -> np.ndarray:
    """uint8 RGB mouth crops [T, H, W, 3] -> float32 grayscale [T, size, size] in [0, 1]."""
    out = np.empty((len(crops), size, size), dtype=np.float32)
    for i, crop in enumerate(crops):
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 \
                or crop.shape[2] != 3:
            raise InvalidInput(f"mouth crop {i} must be a uint8 HxWx3 RGB array, got "
                               f"{getattr(crop, 'dtype', type(crop).__name__)} "
                               f"{getattr(crop, 'shape', '')}")
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(gray, (size, size), interpolation=interp) / 255.0
    return out


def log_mel(pcm: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram of the whole clip, [N_MELS, frames]; frame j is centred at
    j * MEL_HOP / sr seconds. Bands are normalized to zero mean, unit variance over the clip."""
    if sr != SAMPLE_RATE:
        raise InvalidInput(f"PCM must be {SAMPLE_RATE} Hz, got {sr}")
    mel = librosa.feature.melspectrogram(y=check_pcm(pcm), sr=sr, n_fft=N_FFT,
                                         win_length=WIN_LENGTH, hop_length=MEL_HOP,
                                         n_mels=N_MELS, power=2.0)
    logm = np.log(mel + LOG_FLOOR)
    return (logm - logm.mean(axis=1, keepdims=True)) / (logm.std(axis=1, keepdims=True) + 1e-5)


def nearest_frames(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame whose timestamp is nearest to each of `times` (timestamps sorted)."""
    right = np.clip(np.searchsorted(timestamps, times), 1, len(timestamps) - 1)
    left = right - 1
    pick_left = np.abs(times - timestamps[left]) <= np.abs(timestamps[right] - times)
    return np.where(pick_left, left, right)


def window_centres(timestamps: np.ndarray, audio_seconds: float,
                   stride_frames: int = WINDOW_STRIDE_FRAMES,
                   max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """Centre times (s) of the windows that fit inside both the video and the audio, every
    `stride_frames` nominal frames, evenly thinned to at most max_windows."""
    half = WINDOW_SECONDS / 2.0
    step = 1.0 / VIDEO_FPS
    edge = (WINDOW_FRAMES - 1) / 2.0 * step
    # Centres sit on the nominal frame grid (so the middle frame is shown at the centre time)
    # and far enough in that the audio window fits too.
    first = timestamps[0] + np.ceil((max(edge, half - timestamps[0]) - 1e-9) / step) * step
    last = min(timestamps[-1] - edge, audio_seconds - half)
    if last < first:
        return np.empty(0)
    centres = np.arange(first, last + 1e-9, stride_frames * step)
    if len(centres) > max_windows:
        centres = centres[np.linspace(0, len(centres) - 1, max_windows).round().astype(int)]
    return centres


def sync_inputs(mouth_frames: Sequence[np.ndarray] | np.ndarray, timestamps: Sequence[float],
                pcm: np.ndarray, sr: int = SAMPLE_RATE, *,
                valid: Sequence[bool] | None = None,
                audio_offset_seconds: float = 0.0,
                max_windows: int = MAX_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (mouth, audio) pairs from dense mouth crops and the clip's PCM.

    mouth_frames: uint8 RGB crops at native fps; timestamps: their times in seconds (same
    clock as the PCM, which starts at 0); valid: per-frame face_found (windows touching a frame
    without a face are dropped). audio_offset_seconds shifts the audio against the video
    (training uses it to make out-of-sync negatives; serving leaves it at 0).
    Returns mouth [N, WINDOW_FRAMES, MOUTH_SIZE, MOUTH_SIZE] and audio [N, N_MELS, MEL_FRAMES]
    float32; N may be 0.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(mouth_frames) != len(ts):
        raise InvalidInput(f"{len(mouth_frames)} mouth frames but {len(ts)} timestamps")
    empty = (np.zeros((0, WINDOW_FRAMES, MOUTH_SIZE, MOUTH_SIZE), np.float32),
             np.zeros((0, N_MELS, MEL_FRAMES), np.float32))
    if len(ts) < 2:
        return empty
    if np.any(np.diff(ts) <= 0):
        raise InvalidInput("mouth frame timestamps must be strictly increasing")
    pcm = check_pcm(pcm)
    mel = log_mel(pcm, sr)
    centres = window_centres(ts, pcm.size / sr - abs(audio_offset_seconds), max_windows=max_windows)
    ok = np.ones(len(ts), bool) if valid is None else np.asarray(valid, dtype=bool)
    offsets = (np.arange(WINDOW_FRAMES) - (WINDOW_FRAMES - 1) / 2.0) / VIDEO_FPS
    picks, mel_starts = [], []
    for centre in centres:
        idx = nearest_frames(ts, centre + offsets)
        audio_centre = centre + audio_offset_seconds
        start = int(round((audio_centre - WINDOW_SECONDS / 2.0) * sr / MEL_HOP))
        if not ok[idx].all() or start < 0 or start + MEL_FRAMES > mel.shape[1]:
            continue
        picks.append(idx)
        mel_starts.append(start)
    if not picks:
        return empty
    used = np.unique(np.concatenate(picks))
    gray = np.zeros((len(ts), MOUTH_SIZE, MOUTH_SIZE), np.float32)
    gray[used] = mouth_gray([mouth_frames[i] for i in used])
    mouth = gray[np.stack(picks)]
    mouth -= mouth.mean(axis=(1, 2, 3), keepdims=True)
    audio = np.stack([mel[:, s:s + MEL_FRAMES] for s in mel_starts])
    return mouth.astype(np.float32), audio.astype(np.float32)
