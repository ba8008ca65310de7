"""Real face crops from ../shared/data, found once with MTCNN and cached under runs/.

Photos (faces/) keep every confident face; talking clips (talking/) keep the largest face of
up to `frames_per_clip` evenly spaced frames (ingest samples frames the same way). Every
crop is the 256x256 `face_crop` ingest makes, with MTCNN's five landmarks mapped into crop
coordinates, so pseudo-fakes are made on exactly what the services see.

Cache layout (gitignored): runs/cache/faces/<source stem>.npz holding `crops` uint8
[K, 256, 256, 3], `landmarks` float32 [K, 5, 2], `frame_index` int32 [K], `prob` float32
[K]; and index.json with one entry per source: file, category, group, split, count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfmesh.preprocess.geometry import FACE_CROP_SIZE, Box, face_crop, square_box_with_margin
from training.data.identities import group_files, split_groups
from training.runtime import RUNS_DIR

DETECT_MAX_SIDE = 640
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".mpg", ".avi", ".mov", ".mkv", ".webm"}


@dataclass(frozen=True)
class FaceSource:
    """One cached source file and its crops."""

    name: str            # path relative to the shared data folder
    category: str        # "faces" or "talking"
    group: str
    split: str
    crops: np.ndarray    # uint8 [K, 256, 256, 3]
    landmarks: np.ndarray  # float32 [K, 5, 2], crop coordinates
    frame_index: np.ndarray


def default_cache_dir() -> Path:
    return RUNS_DIR / "cache" / "faces"


def _load_rgb(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _video_frames(path: Path, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """Up to `count` evenly spaced RGB frames (decoded sequentially: frame counts lie)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        return
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    for i in picks:
        yield int(i), cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB)


def detect_faces(detector, image: np.ndarray) -> list[tuple[Box, np.ndarray, float]]:
    """MTCNN on a copy downscaled to DETECT_MAX_SIDE; boxes and landmarks in full-size pixels."""
    scale = min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale,
                                                  interpolation=cv2.INTER_AREA)
    boxes, probs, landmarks = detector.detect(small, landmarks=True)
    if boxes is None:
        return []
    return [(Box(*(b / scale).tolist()), (lm / scale).astype(np.float32), float(p))
            for b, lm, p in zip(boxes, landmarks, probs, strict=True)]


def crop_with_landmarks(image: np.ndarray, box: Box, landmarks: np.ndarray,
                        size: int = FACE_CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The ingest face crop and the landmarks mapped into its pixel coordinates."""
    square = square_box_with_margin(box)
    scale = size / square.width
    crop_landmarks = (landmarks - np.array([square.x1, square.y1], np.float32)) * scale
    return face_crop(image, box, size), crop_landmarks.astype(np.float32)


def list_sources(data_dir: Path) -> list[tuple[str, str]]:
    """(relative name, category) of every photo in faces/ and clip in talking/."""
    out = []
    for category, suffixes in (("faces", IMAGE_SUFFIXES), ("talking", VIDEO_SUFFIXES)):
        for path in sorted((data_dir / category).glob("*")):
            if path.suffix.lower() in suffixes:
                out.append((f"{category}/{path.name}", category))
    return out


def build_face_cache(data_dir: Path, cache_dir: Path | None = None, *, frames_per_clip: int = 48,
                     min_prob: float = 0.95, min_face_px: float = 40.0, seed: int = 0,
                     limit: int | None = None) -> Path:
    """Detect faces in every source not yet cached, then (re)write index.json with splits."""
    import torch
    from facenet_pytorch import MTCNN
    from tqdm import tqdm

    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    detector = MTCNN(keep_all=True, device="cpu")
    sources = list_sources(data_dir)[:limit]
    counts: dict[str, int] = {}
    for name, category in tqdm(sources, desc="detecting faces", unit="file"):
        out = cache_dir / (Path(name).stem + ".npz")
        if out.is_file():
            with np.load(out) as cached:
                counts[name] = len(cached["crops"])
            continue
        crops, lms, idxs, probs = [], [], [], []
        if category == "faces":
            image = _load_rgb(data_dir / name)
            frames = [] if image is None else [(0, image)]
        else:
            frames = _video_frames(data_dir / name, frames_per_clip)
        for index, frame in frames:
            found = [f for f in detect_faces(detector, frame)
                     if f[2] >= min_prob and max(f[0].width, f[0].height) >= min_face_px]
            if category == "talking":
                found = sorted(found, key=lambda f: f[0].width * f[0].height)[-1:]
            for box, landmarks, prob in found:
                crop, crop_lm = crop_with_landmarks(frame, box, landmarks)
                crops.append(crop)
                lms.append(crop_lm)
                idxs.append(index)
                probs.append(prob)
        np.savez_compressed(
            out, crops=np.asarray(crops, np.uint8).reshape(-1, FACE_CROP_SIZE, FACE_CROP_SIZE, 3),
            landmarks=np.asarray(lms, np.float32).reshape(-1, 5, 2),
            frame_index=np.asarray(idxs, np.int32), prob=np.asarray(probs, np.float32))
        counts[name] = len(crops)
    groups = group_files(counts)
    group_sizes: dict[str, int] = {}
    for name, n in counts.items():
        group_sizes[groups[name]] = group_sizes.get(groups[name], 0) + n
    splits = split_groups(group_sizes, seed=seed)
    index = [{"file": name, "cache": Path(name).stem + ".npz", "category": name.split("/")[0],
              "group": groups[name], "split": splits[groups[name]], "count": n}
             for name, n in counts.items() if n > 0]
    (cache_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return cache_dir / "index.json"


def load_face_sources(cache_dir: Path | None = None, split: str | None = None,
                      category: str | None = None) -> list[FaceSource]:
    """Cached sources, optionally only one split and/or category."""
    cache_dir = cache_dir or default_cache_dir()
    index_path = cache_dir / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} missing: run `python -m training prepare` first")
    out = []
    for entry in json.loads(index_path.read_text()):
        if (split and entry["split"] != split) or (category and entry["category"] != category):
            continue
        with np.load(cache_dir / entry["cache"]) as data:
            out.append(FaceSource(entry["file"], entry["category"], entry["group"],
                                  entry["split"], data["crops"], data["landmarks"],
                                  data["frame_index"]))
    return out
