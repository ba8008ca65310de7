"""Dense face tracks of talking clips: MTCNN on every frame of a clip's first seconds.

For lip-sync training and for fusion's clip dataset. Per clip, cached (gitignored) as
runs/cache/dense/<stem>.npz:
    timestamps float64 [F]     frame times (index / fps)
    found      bool [F]        a face was detected
    boxes      float32 [F, 4]  largest face's box (x1, y1, x2, y2), full-frame pixels
    landmarks  float32 [F, 5, 2]  MTCNN's five points, full-frame pixels
    mouth      uint8 [F, 96, 96, 3]  `geometry.mouth_crop` (zeros where no face)
    pcm        float32 [S]     mono 16 kHz audio of the same seconds
    fps        float
Detection runs on a copy downscaled to DETECT_MAX_SIDE, like ingest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dfmesh.preprocess.geometry import MOUTH_CROP_SIZE, Box, mouth_crop
from training.loaders.media import SAMPLE_RATE, decode_pcm, read_frames
from training.loaders.talking import TalkingClip
from training.runtime import RUNS_DIR

log = logging.getLogger(__name__)
DETECT_MAX_SIDE = 360
MIN_PROB = 0.9


@dataclass(frozen=True)
class DenseClip:
    """A cached dense track (see module docstring)."""

    clip: TalkingClip
    timestamps: np.ndarray
    found: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    mouth: np.ndarray
    pcm: np.ndarray
    fps: float


def default_cache_dir() -> Path:
    return RUNS_DIR / "cache" / "dense"


def make_detector():
    """facenet-pytorch MTCNN on CPU (its weights ship inside the package)."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device="cpu", post_process=False)


def largest_face(detector, image: np.ndarray,
                 max_side: int = DETECT_MAX_SIDE) -> tuple[Box, np.ndarray] | None:
    """The largest confident face's box and landmarks in full-size pixels, or None."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale,
                                                  interpolation=cv2.INTER_AREA)
    boxes, probs, points = detector.detect(small, landmarks=True)
    if boxes is None:
        return None
    keep = [i for i, p in enumerate(probs) if p is not None and p >= MIN_PROB]
    if not keep:
        return None
    best = max(keep, key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    return Box(*(boxes[best] / scale).tolist()), (points[best] / scale).astype(np.float32)


def track_clip(detector, data_dir: Path, clip: TalkingClip, max_seconds: float) -> dict:
    """Detect, cut mouth crops and decode audio for one clip's first `max_seconds`."""
    video = read_frames(data_dir / clip.name, max_seconds)
    n = len(video.frames)
    found = np.zeros(n, bool)
    boxes = np.zeros((n, 4), np.float32)
    landmarks = np.zeros((n, 5, 2), np.float32)
    mouth = np.zeros((n, MOUTH_CROP_SIZE, MOUTH_CROP_SIZE, 3), np.uint8)
    for i, frame in enumerate(video.frames):
        face = largest_face(detector, frame)
        if face is None:
            continue
        box, points = face
        found[i] = True
        boxes[i] = (box.x1, box.y1, box.x2, box.y2)
        landmarks[i] = points
        mouth[i] = mouth_crop(frame, points, box)
    pcm = decode_pcm(data_dir / clip.name, SAMPLE_RATE, max_seconds=n / video.fps)
    return {"timestamps": video.timestamps, "found": found, "boxes": boxes,
            "landmarks": landmarks, "mouth": mouth, "pcm": pcm, "fps": np.float64(video.fps)}


def build_dense_cache(data_dir: Path, clips: list[TalkingClip], max_seconds: float = 10.0,
                      cache_dir: Path | None = None, build: bool = True) -> list[DenseClip]:
    """Track every clip not cached yet (unless build=False: cached clips only); return them."""
    import torch

    torch.set_num_threads(1)
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    detector = None
    out = []
    for clip in tqdm(clips, desc="dense face tracks", unit="clip"):
        path = cache_dir / (Path(clip.name).stem + ".npz")
        if not path.is_file():
            if not build:
                continue
            detector = detector or make_detector()
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **track_clip(detector, data_dir, clip, max_seconds))
            tmp.replace(path)  # readers never see a half-written cache
            log.info("dense track: %s", clip.name)
        with np.load(path) as d:
            out.append(DenseClip(clip, d["timestamps"], d["found"], d["boxes"], d["landmarks"],
                                 d["mouth"], d["pcm"], float(d["fps"])))
    return out
