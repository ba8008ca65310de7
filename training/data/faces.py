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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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


def load_rgb(path: Path) -> np.ndarray | None:
    """An image file as RGB uint8, or None where OpenCV cannot read it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def video_frames(path: Path, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """Up to `count` evenly spaced RGB frames with their indices.

    Frames are counted by grabbing the whole stream first (container frame counts lie), then
    only the picked ones are decoded on a second pass, so a long full-HD video never sits in
    memory whole.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        total = 0
        while capture.grab():
            total += 1
    finally:
        capture.release()
    if total == 0:
        return
    picks = set(np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
                .tolist())
    capture = cv2.VideoCapture(str(path))
    try:
        for i in range(max(picks) + 1):
            if not capture.grab():
                break
            if i in picks:
                ok, frame = capture.retrieve()
                if ok:
                    yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


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


def make_detector():
    """facenet-pytorch MTCNN on the CPU, one thread, every face of an image."""
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(1)
    return MTCNN(keep_all=True, device="cpu")


@dataclass
class FaceCrops:
    """Face crops found in one file, in the cache's npz layout."""

    crops: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    frame_index: list[int] = field(default_factory=list)
    prob: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.crops)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            crops=np.asarray(self.crops, np.uint8).reshape(-1, FACE_CROP_SIZE, FACE_CROP_SIZE, 3),
            landmarks=np.asarray(self.landmarks, np.float32).reshape(-1, 5, 2),
            frame_index=np.asarray(self.frame_index, np.int32),
            prob=np.asarray(self.prob, np.float32))


def detect_crops(detector, frames: Iterable[tuple[int, np.ndarray]], *, largest_only: bool,
                 min_prob: float = 0.95, min_face_px: float = 40.0) -> FaceCrops:
    """Confident faces of every (index, RGB frame) as ingest crops with their landmarks;
    `largest_only` keeps one face per frame (the largest)."""
    out = FaceCrops()
    for index, frame in frames:
        found = [f for f in detect_faces(detector, frame)
                 if f[2] >= min_prob and max(f[0].width, f[0].height) >= min_face_px]
        if largest_only:
            found = sorted(found, key=lambda f: f[0].width * f[0].height)[-1:]
        for box, landmarks, prob in found:
            crop, crop_lm = crop_with_landmarks(frame, box, landmarks)
            out.crops.append(crop)
            out.landmarks.append(crop_lm)
            out.frame_index.append(index)
            out.prob.append(prob)
    return out


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
    from tqdm import tqdm

    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    detector = make_detector()
    sources = list_sources(data_dir)[:limit]
    counts: dict[str, int] = {}
    for name, category in tqdm(sources, desc="detecting faces", unit="file"):
        out = cache_dir / (Path(name).stem + ".npz")
        if out.is_file():
            with np.load(out) as cached:
                counts[name] = len(cached["crops"])
            continue
        if category == "faces":
            image = load_rgb(data_dir / name)
            frames = [] if image is None else [(0, image)]
        else:
            frames = video_frames(data_dir / name, frames_per_clip)
        found = detect_crops(detector, frames, largest_only=category == "talking",
                             min_prob=min_prob, min_face_px=min_face_px)
        found.save(out)
        counts[name] = len(found)
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
