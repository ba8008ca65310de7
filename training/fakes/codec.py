"""Video codec round trips for training crops: H.264 (libx264, yuv420p) through the ffmpeg
binary, so that real and fake crops alike carry the block, deblocking and chroma artefacts of
the clips the service decodes, at qualities from broadcast to heavily re-shared."""

from __future__ import annotations

import subprocess

import numpy as np

H264_PRESETS = ("ultrafast", "veryfast", "medium")


def h264_roundtrip(frames: np.ndarray, crf: int, preset: str = "veryfast",
                   intra_only: bool = True, timeout: float = 60.0) -> np.ndarray:
    """Encode `frames` ([n, h, w, 3] RGB uint8, h and w even) as one H.264 stream at `crf`
    and decode it back to the same shape. `intra_only` codes every frame on its own (the
    frames of a training batch are unrelated crops); otherwise a GOP of all frames, for a
    clip's consecutive crops."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected [n, h, w, 3] uint8 frames, got {frames.shape} {frames.dtype}")
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 4:2:0 needs even sides, got {w}x{h}")
    if preset not in H264_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {H264_PRESETS}")
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}"]
    encode = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *raw, "-r", "25",
              "-i", "pipe:0", "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)),
              "-pix_fmt", "yuv420p", "-g", "1" if intra_only else str(max(n, 1)),
              "-f", "h264", "pipe:1"]
    decode = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "h264",
              "-i", "pipe:0", *raw, "pipe:1"]
    coded = subprocess.run(encode, input=np.ascontiguousarray(frames).tobytes(),
                           capture_output=True, timeout=timeout, check=False)
    if coded.returncode != 0:
        raise RuntimeError(f"libx264 encode failed: {coded.stderr.decode(errors='replace')}")
    back = subprocess.run(decode, input=coded.stdout, capture_output=True, timeout=timeout,
                          check=False)
    if back.returncode != 0:
        raise RuntimeError(f"H.264 decode failed: {back.stderr.decode(errors='replace')}")
    out = np.frombuffer(back.stdout, np.uint8)
    if out.size != frames.size:
        raise RuntimeError(f"H.264 round trip gave {out.size} bytes for {frames.size}")
    return out.reshape(frames.shape)
