"""The shared public media (../shared/data, or DFMESH_SHARED_DATA) and real inputs cut
from it: face crops, whole frames, speech PCM, mouth crops of a talking clip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np

from dfmesh.preprocess.geometry import centre_crop_box, face_crop
from dfmesh.runtime.config import REPO_ROOT


def shared_data_dir() -> Path:
    """../shared/data next to the repository, or DFMESH_SHARED_DATA."""
    env = os.environ.get("DFMESH_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def face_crops(shared_data: Path, count: int) -> list[np.ndarray]:
    """256x256 RGB crops cut from real photographs in faces/ (their centre, where the
    portrait's face is) with the shared face-crop geometry."""
    crops = []
    for path in sorted((shared_data / "faces").glob("*.jpg"))[:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        crops.append(face_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                               centre_crop_box(w, h, 0.45)))
    return crops


def full_frames(shared_data: Path, count: int) -> list[np.ndarray]:
    """Whole RGB photographs (for the no-face fallback), downscaled to 320 px wide."""
    frames = []
    for path in sorted((shared_data / "faces").glob("*.jpg"))[:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        scale = 320 / bgr.shape[1]
        bgr = cv2.resize(bgr, (320, int(round(bgr.shape[0] * scale))))
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def decode_pcm(path: Path, seconds: float, sample_rate: int = 16_000) -> np.ndarray:
    """Mono float32 PCM of the first `seconds` of a media file, decoded by ffmpeg."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
           "-t", f"{seconds}", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(out, dtype="<f4").copy()


def speech_file(shared_data: Path) -> Path:
    return sorted((shared_data / "speech" / "librispeech").glob("*.flac"))[0]


def talking_clip(shared_data: Path) -> Path:
    return sorted((shared_data / "talking").glob("lipnet__GRID_*.mpg"))[0]


def dense_mouths(clip: Path, seconds: float) -> tuple[list[np.ndarray], list[float]]:
    """96x96 RGB crops of the lower-centre face region (where GRID speakers' mouths are) of
    every frame in the first `seconds` of a talking clip, with their timestamps."""
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    crops, stamps = [], []
    while len(crops) < int(seconds * fps):
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        region = bgr[int(0.55 * h):int(0.85 * h), int(0.35 * w):int(0.65 * w)]
        crops.append(cv2.cvtColor(cv2.resize(region, (96, 96)), cv2.COLOR_BGR2RGB))
        stamps.append(len(stamps) / fps)
    cap.release()
    return crops, stamps
