"""Face crops of labelled public datasets (DFDC, FaceForensics++, real/fake folders), cached
for the image trainers next to the pseudo-fake pipeline.

One `--labelled SPEC` (training.loaders.public.labelled_rows) is one cache folder,
runs/cache/labelled/<first 16 hex of sha256(SPEC)>/:

    <sha1 of the file path, 12 hex>_<stem>.npz   crops uint8 [K, 256, 256, 3], landmarks
                                                  float32 [K, 5, 2] (crop pixels),
                                                  frame_index int32 [K], prob float32 [K]
    index.json   {"spec", "seed", "frames_per_video", "files", "entries": [{"file", "cache",
                 "label", "group", "split", "method", "dataset", "count"}, ...]}

Crops are made exactly like the real-face cache (training.data.faces): MTCNN, the ingest
`face_crop`, landmarks mapped into the crop. Every file keeps the largest confident face of
each of its frames: one frame for an image, `frames_per_video` evenly spaced frames for a
video. The label belongs to the file, so a fake image with two faces keeps only the one most
likely to be the manipulated subject.

Splits are made before detection, over the rows' groups (a DFDC fake with its original, an
FF++ fake with its target id, an ASVspoof speaker, a real/fake-folder file on its own), with
training.data.identities.split_groups weighted by files per group: a group lands in exactly
one of train/val/test, and the split does not move when a detector version finds a face in
one more frame. The split seed is the one the cache was first built with (`prepare --seed`);
later builds keep it.

Trainers build missing entries lazily: `python -m training train --branch visual --labelled
SPEC` detects faces in files not yet cached (the same code `prepare --labelled SPEC` runs), so
preparing first is optional; it is worth it for a large dataset, where detection takes hours
and is better done once, ahead of the training jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.faces import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    detect_crops,
    load_rgb,
    make_detector,
    video_frames,
)
from training.data.identities import split_groups
from training.loaders.public import LabeledMedia, LabelledSpecError, labelled_rows
from training.runtime import RUNS_DIR

log = logging.getLogger(__name__)
DEFAULT_FRAMES_PER_VIDEO = 8


@dataclass(frozen=True)
class LabelledSource:
    """One labelled file's cached crops, its label (1 = fake), group and split."""

    name: str            # the file's path
    label: int
    group: str
    split: str
    method: str          # manipulation id where the dataset names it
    dataset: str
    crops: np.ndarray    # uint8 [K, 256, 256, 3]
    landmarks: np.ndarray  # float32 [K, 5, 2], crop coordinates
    frame_index: np.ndarray


@dataclass(frozen=True)
class LabelledEvalSet:
    """Fixed held-out labelled crops: what `labelled_metrics` scores."""

    crops: list[np.ndarray]
    labels: np.ndarray
    files: list[str]


def default_labelled_root() -> Path:
    return RUNS_DIR / "cache" / "labelled"


def spec_cache_dir(spec: str, root: Path | None = None) -> Path:
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return (root or default_labelled_root()) / digest


def visual_rows(spec: str) -> list[LabeledMedia]:
    """The spec's image and video rows (audio files of a folder layout are left out)."""
    rows = [r for r in labelled_rows(spec)
            if r.path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
    if not rows:
        raise LabelledSpecError(f"--labelled {spec}: no images or videos (audio specs go to "
                                "--branch audio)")
    return rows


def row_group(row: LabeledMedia) -> str:
    """The split unit: the row's group, namespaced by dataset."""
    return f"{row.dataset}:{row.group}"


def assign_splits(rows: Sequence[LabeledMedia], seed: int = 0) -> dict[str, str]:
    """Group -> split, weighted by files per group (every group in exactly one split)."""
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row_group(row)] = sizes.get(row_group(row), 0) + 1
    return split_groups(sizes, seed=seed)


def _cache_name(path: Path) -> str:
    return f"{hashlib.sha1(str(path).encode()).hexdigest()[:12]}_{path.stem}.npz"


def _read_index(cache_dir: Path) -> dict | None:
    path = cache_dir / "index.json"
    return json.loads(path.read_text()) if path.is_file() else None


def build_labelled_cache(spec: str, root: Path | None = None, *,
                         frames_per_video: int = DEFAULT_FRAMES_PER_VIDEO,
                         seed: int | None = None, min_prob: float = 0.9,
                         min_face_px: float = 40.0, limit: int | None = None) -> Path:
    """Detect faces in every file of `spec` not cached yet, then (re)write index.json.

    `seed` sets the split seed; None keeps the seed of an existing index (else 0).
    """
    from tqdm import tqdm

    rows = visual_rows(spec)[:limit]
    cache_dir = spec_cache_dir(spec, root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_index(cache_dir)
    if seed is None:
        seed = previous["seed"] if previous else 0
    if previous and previous["frames_per_video"] != frames_per_video:
        log.warning("%s was cached with %d frames per video; files cached then keep them "
                    "(delete the folder to rebuild with %d)", cache_dir,
                    previous["frames_per_video"], frames_per_video)
    detector = None
    counts = []
    for row in tqdm(rows, desc=f"labelled faces {spec}", unit="file"):
        out = cache_dir / _cache_name(row.path)
        if not out.is_file():
            detector = detector or make_detector()
            if row.path.suffix.lower() in IMAGE_SUFFIXES:
                image = load_rgb(row.path)
                frames = [] if image is None else [(0, image)]
            else:
                frames = video_frames(row.path, frames_per_video)
            tmp = out.with_suffix(".tmp.npz")
            detect_crops(detector, frames, largest_only=True, min_prob=min_prob,
                         min_face_px=min_face_px).save(tmp)
            tmp.replace(out)  # a concurrent reader never sees half a file
        with np.load(out) as cached:
            counts.append(len(cached["crops"]))
    splits = assign_splits(rows, seed)
    entries = [{"file": str(row.path), "cache": _cache_name(row.path), "label": row.label,
                "group": row_group(row), "split": splits[row_group(row)], "method": row.method,
                "dataset": row.dataset, "count": n}
               for row, n in zip(rows, counts, strict=True) if n > 0]
    index = {"spec": spec, "seed": seed, "frames_per_video": frames_per_video,
             "files": len(rows), "files_without_face": sum(1 for n in counts if n == 0),
             "entries": entries}
    (cache_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return cache_dir / "index.json"


def load_labelled_sources(spec: str, root: Path | None = None,
                          split: str | None = None) -> list[LabelledSource]:
    """The cached sources of `spec`, optionally of one split."""
    cache_dir = spec_cache_dir(spec, root)
    index = _read_index(cache_dir)
    if index is None:
        raise FileNotFoundError(f"{cache_dir}/index.json missing: run "
                                f"`python -m training prepare --labelled {spec}` first")
    out = []
    for e in index["entries"]:
        if split and e["split"] != split:
            continue
        with np.load(cache_dir / e["cache"]) as data:
            out.append(LabelledSource(e["file"], e["label"], e["group"], e["split"], e["method"],
                                      e["dataset"], data["crops"], data["landmarks"],
                                      data["frame_index"]))
    return out


def labelled_eval_set(sources: Sequence[LabelledSource], max_crops: int) -> LabelledEvalSet:
    """Up to `max_crops` crops, half of them real and half fake where both exist, evenly
    spaced over each class's files and frames: the same set on every call."""
    by_label = {y: [(s, i) for s in sources if s.label == y for i in range(len(s.crops))]
                for y in (0, 1)}
    present = [y for y in (0, 1) if by_label[y]]
    crops, labels, files = [], [], []
    for y in present:
        pool = by_label[y]
        share = max_crops // len(present) if max_crops > 0 else len(pool)
        picks = np.unique(np.linspace(0, len(pool) - 1, min(share, len(pool))).round().astype(int))
        for k in picks:
            source, i = pool[k]
            crops.append(source.crops[i])
            labels.append(y)
            files.append(source.name)
    return LabelledEvalSet(crops, np.asarray(labels, int), files)


def labelled_metrics(eval_set: LabelledEvalSet, probs: np.ndarray) -> dict:
    """Per-crop metrics and per-file metrics (mean crop probability per file: the clip
    score the service reports for a video)."""
    from training.scoring import binary_metrics

    files = sorted(set(eval_set.files))
    where = {f: i for i, f in enumerate(files)}
    idx = np.array([where[f] for f in eval_set.files], int)
    file_probs = np.bincount(idx, weights=probs, minlength=len(files)) / np.bincount(idx)
    file_labels = np.zeros(len(files), int)
    file_labels[idx] = eval_set.labels
    return {"crop": binary_metrics(eval_set.labels, probs),
            "file_mean": binary_metrics(file_labels, file_probs)}
