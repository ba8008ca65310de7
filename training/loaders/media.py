"""Decoding real media for training: PCM through the ffmpeg binary, frames through OpenCV."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SAMPLE_RATE = 16_000


def decode_pcm(path: Path, sr: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 PCM at `sr` of a media file's first audio stream (empty if it has none)."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sr)]
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds:.3f}"]
    cmd += ["-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        if b"does not contain any stream" in proc.stderr or b"Output file is empty" in proc.stderr \
                or b"matches no streams" in proc.stderr:
            return np.zeros(0, np.float32)
        raise RuntimeError(f"ffmpeg could not decode {path}: {proc.stderr.decode()[-400:]}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def encode_pcm(pcm: np.ndarray, sr: int, codec_args: list[str], container: str) -> bytes:
    """Encode float32 mono PCM with ffmpeg (e.g. ["-c:a", "libmp3lame", "-b:a", "32k"])."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-f", "f32le", "-ar", str(sr), "-ac", "1",
           "-i", "-", *codec_args, "-f", container, "-"]
    proc = subprocess.run(cmd, input=pcm.astype(np.float32).tobytes(), capture_output=True,
                          check=True)
    return proc.stdout


def decode_bytes(data: bytes, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an encoded audio byte string back to mono float32 PCM at `sr`."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", "-", "-ac", "1",
                           "-ar", str(sr), "-f", "f32le", "-"],
                          input=data, capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


@dataclass(frozen=True)
class VideoFrames:
    """Decoded RGB frames of a clip's first seconds with their timestamps."""

    frames: list[np.ndarray]   # uint8 HxWx3 RGB
    timestamps: np.ndarray     # float64 seconds
    fps: float


def read_frames(path: Path, max_seconds: float) -> VideoFrames:
    """RGB frames of the first `max_seconds` at native fps; timestamps from the frame index
    and the container's fps (OpenCV's position is unreliable for MPEG-1)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[np.ndarray] = []
    while len(frames) < int(max_seconds * fps):
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return VideoFrames(frames, np.arange(len(frames)) / fps, float(fps))
