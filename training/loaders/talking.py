"""Talking-face clips of ../shared/data/talking and their identity-disjoint splits.

The splits are the image engineer's (training.data): the face cache index assigns every
talking clip's identity group to train/val/test, and the audio, sync and fusion data use the
same assignment so no person's clip is trained on by one branch and tested on by fusion.
Where that index does not exist yet, the same grouping (training.data.identities) is split
here with one item per clip.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from training.data.identities import group_files, split_groups
from training.runtime import RUNS_DIR


@dataclass(frozen=True)
class TalkingClip:
    """One clip from MANIFEST.csv's talking rows."""

    name: str          # path relative to the shared data folder
    group: str
    split: str
    has_audio: bool
    silent: bool       # MANIFEST notes say the audio track is silent
    speech: bool       # the track is speech (not "mostly not speech" driving clips)
    fps: float


def _face_index_splits() -> dict[str, str]:
    index = RUNS_DIR / "cache" / "faces" / "index.json"
    if not index.is_file():
        return {}
    return {e["file"]: e["split"] for e in json.loads(index.read_text())
            if e["category"] == "talking"}


def talking_clips(data_dir: Path, seed: int = 0) -> list[TalkingClip]:
    """Every talking clip with its identity group and split."""
    with (data_dir / "MANIFEST.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] == "talking"]
    names = [r["local_path"] for r in rows]
    groups = group_files(names)
    known = _face_index_splits()
    sizes: dict[str, int] = {}
    for name in names:
        sizes[groups[name]] = sizes.get(groups[name], 0) + 1
    fallback = split_groups(sizes, seed=seed)
    group_split = {groups[n]: known[n] for n in names if n in known}
    clips = []
    for row in rows:
        name, notes = row["local_path"], row["notes"]
        fps = next((float(t.split("fps")[0].split()[-1]) for t in notes.split(";")
                    if "fps" in t), 25.0)
        clips.append(TalkingClip(
            name=name, group=groups[name],
            split=group_split.get(groups[name], fallback[groups[name]]),
            has_audio=row["has_audio"] == "yes", silent="AUDIO SILENT" in notes,
            speech="not speech" not in notes and "not a talking head" not in notes, fps=fps))
    return clips
