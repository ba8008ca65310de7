"""The labelled files of ../shared/train and ../shared/data, read from their MANIFEST.csv.

A row's `source` is the public repository (demo page, dataset) it came from: the unit that
leave-one-source-out holds out, with its reals. `group` is finer: the people or the sentence
that must never sit on both sides of a split inside training (FF++ target ids, a demo page's
sentence, a face-swap figure). The file list is never hard-coded: more rows in a manifest
are more training data.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from training.runtime import shared_data_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac"}


@dataclass(frozen=True)
class RealRow:
    """One labelled file. label 1 = fake."""

    path: Path
    kind: str          # video | image | audio
    label: int
    source: str        # repository / demo page / dataset: what leave-one-source-out holds out
    group: str         # identity, FF++ id or sentence: never on both sides of a split
    generator: str     # the fake's method ("" for reals)
    collection: str    # "train" (../shared/train), "data" (../shared/data), "dev" (sanity only)


def kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    raise ValueError(f"{path}: not a media file this project reads")


_FF_ID = re.compile(r"ff-[a-z0-9]+__(\d+)")


def train_group(row: dict[str, str]) -> str:
    """The split group of a ../shared/train row (the README's shortcuts, made rules)."""
    stem = Path(row["local_path"]).stem
    match = _FF_ID.match(stem)
    if match:  # an FF++ fake shares its target with the original of the same id
        return f"ff:{match.group(1)}"
    if row["generator"].startswith(("faceswapper", "diffface")) or "FaceForensics" in row["repo"]:
        return "ff:figures"
    return f"{row['repo']}|{row['identity_or_source']}"


def manifest_files(root: Path) -> Iterator[tuple[dict[str, str], Path, int]]:
    """(row, path, label) of every MANIFEST.csv row under `root` whose file exists;
    label 1 = fake."""
    with open(root / "MANIFEST.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / row["local_path"]
            if path.is_file():
                yield row, path, int(row["label"].strip().lower() == "fake")


def read_train_manifest(root: Path) -> list[RealRow]:
    """Rows of ../shared/train/MANIFEST.csv that exist on disk."""
    return [RealRow(path, row["kind"] or kind_of(path), label, row["repo"], train_group(row),
                    row["generator"] if label else "", "train")
            for row, path, label in manifest_files(root)]


def read_data_manifest(root: Path) -> list[RealRow]:
    """Rows of ../shared/data/MANIFEST.csv: reals of faces/, talking/, speech/, and dev/ (kept
    apart as the sanity line, never trained on)."""
    rows = []
    for row, path, label in manifest_files(root):
        try:
            kind = kind_of(path)
        except ValueError:
            continue
        collection = "dev" if row["category"] == "dev" else "data"
        rows.append(RealRow(path, kind, label, f"data:{row['repo']}",
                            f"data:{row['repo']}|{path.stem.split('__')[0]}",
                            "dfdc" if label else "", collection))
    return rows


def all_rows(shared: Path | None = None) -> list[RealRow]:
    """Every labelled file beside the repository (../shared, found from DFMESH_SHARED_DATA's
    parent when set), train first."""
    shared = shared or shared_data_dir().parent
    rows: list[RealRow] = []
    if (shared / "train" / "MANIFEST.csv").is_file():
        rows += read_train_manifest(shared / "train")
    if (shared / "data" / "MANIFEST.csv").is_file():
        rows += read_data_manifest(shared / "data")
    return rows
