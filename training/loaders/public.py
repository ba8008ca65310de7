"""Labelled media lists from public dataset layouts, for evaluating on real benchmarks.

Every loader returns `LabeledMedia` rows (label 1 = fake/spoof) with a `group` that keeps one
person (or one source video) in one split:

    dfdc_folder           DFDC part folder: *.mp4 beside metadata.json
                          ({"x.mp4": {"label": "FAKE", "original": "y.mp4", ...}})
    faceforensics         FaceForensics++: original_sequences/<source>/<compression>/videos
                          and manipulated_sequences/<method>/<compression>/videos
                          (fakes are "<target>_<source>.mp4"; grouped by the target id)
    asvspoof_protocol     an ASVspoof protocol file (2019 LA/PA, 2021 LA/DF) and its audio
                          folder; the key is the "bonafide"/"spoof" token, the attack the
                          token before it (2019) or the Axx token (2021)
    real_fake_folders     root/real/** and root/fake/** (any depth)

`labelled_rows(spec)` reads the command line's `--labelled SPEC` form of each of them:

    dfdc:PATH                       a DFDC part folder (PATH/metadata.json)
    ff++:PATH  or  ff++:PATH@c40    a FaceForensics++ root, compression c23 unless given
    asvspoof:PROTOCOL@AUDIO_DIR     an ASVspoof protocol and its audio (.flac, else .wav)
    folders:PATH                    PATH/real and PATH/fake
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

MEDIA_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".jpg", ".jpeg", ".png",
                  ".wav", ".flac", ".mp3", ".m4a", ".ogg"}


@dataclass(frozen=True)
class LabeledMedia:
    """One labelled file of a public dataset."""

    path: Path
    label: int          # 1 = fake / spoof
    group: str          # identity or source video: never split across train/val/test
    dataset: str
    method: str = ""    # manipulation or attack id where the dataset names it


def dfdc_folder(folder: Path) -> list[LabeledMedia]:
    """A DFDC training part (or any folder with DFDC-style metadata.json)."""
    meta = json.loads((folder / "metadata.json").read_text())
    rows = []
    for name, info in sorted(meta.items()):
        label = 1 if str(info.get("label", "")).upper() == "FAKE" else 0
        original = info.get("original") or name
        rows.append(LabeledMedia(folder / name, label, Path(original).stem, "dfdc",
                                 "dfdc_fake" if label else ""))
    return [r for r in rows if r.path.is_file()]


def faceforensics(root: Path, compression: str = "c23") -> list[LabeledMedia]:
    """FaceForensics++ originals (label 0) and every manipulation method present (label 1)."""
    rows = []
    for video in sorted((root / "original_sequences").glob(f"*/{compression}/videos/*.mp4")):
        rows.append(LabeledMedia(video, 0, video.stem, "faceforensics++"))
    for video in sorted((root / "manipulated_sequences").glob(f"*/{compression}/videos/*.mp4")):
        method = video.parents[2].name
        target = video.stem.split("_")[0]
        rows.append(LabeledMedia(video, 1, target, "faceforensics++", method))
    return rows


def asvspoof_protocol(protocol: Path, audio_dir: Path, suffix: str = ".flac") -> list[LabeledMedia]:
    """Rows of an ASVspoof protocol whose audio file exists under `audio_dir`."""
    rows = []
    for line in protocol.read_text().splitlines():
        tokens = line.split()
        if len(tokens) < 3:
            continue
        key = next((t for t in tokens if t in ("bonafide", "spoof")), None)
        if key is None:
            continue
        speaker, utterance = tokens[0], tokens[1]
        attack = next((t for t in tokens if re.fullmatch(r"A\d\d", t)), "")
        if not attack and tokens.index(key) >= 1 and tokens[tokens.index(key) - 1] != "-":
            attack = tokens[tokens.index(key) - 1]
        path = audio_dir / f"{utterance}{suffix}"
        if path.is_file():
            rows.append(LabeledMedia(path, int(key == "spoof"), speaker, "asvspoof",
                                     attack if key == "spoof" else ""))
    return rows


def real_fake_folders(root: Path) -> list[LabeledMedia]:
    """root/real/** (label 0) and root/fake/** (label 1); each file is its own group."""
    rows = []
    for label, sub in ((0, "real"), (1, "fake")):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file() and path.suffix.lower() in MEDIA_SUFFIXES:
                group = str(path.relative_to(root / sub).with_suffix(""))
                rows.append(LabeledMedia(path, label, f"{sub}:{group}", "folders"))
    return rows


LABELLED_KINDS = ("dfdc", "ff++", "asvspoof", "folders")


class LabelledSpecError(ValueError):
    """A `--labelled` spec names an unknown kind, a missing path, or finds no files."""


def _existing(path_text: str, spec: str, what: str, *, directory: bool) -> Path:
    path = Path(path_text).expanduser()
    if not path_text or not (path.is_dir() if directory else path.is_file()):
        raise LabelledSpecError(f"--labelled {spec}: {what} {path_text or '(empty)'!r} "
                                "does not exist")
    return path


def labelled_rows(spec: str) -> list[LabeledMedia]:
    """The rows of one `--labelled` spec (kinds in the module docstring).

    Raises LabelledSpecError for an unknown kind, a missing path or a layout with no files.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in LABELLED_KINDS:
        raise LabelledSpecError(f"--labelled {spec}: unknown kind {kind!r}; expected one of "
                                + ", ".join(f"{k}:PATH" for k in LABELLED_KINDS))
    if kind == "dfdc":
        root = _existing(rest, spec, "DFDC folder", directory=True)
        _existing(str(root / "metadata.json"), spec, "DFDC metadata", directory=False)
        rows = dfdc_folder(root)
    elif kind == "ff++":
        path_text, _, compression = rest.partition("@")
        rows = faceforensics(_existing(path_text, spec, "FaceForensics++ root", directory=True),
                             compression or "c23")
    elif kind == "asvspoof":
        protocol_text, at, audio_text = rest.partition("@")
        if not at:
            raise LabelledSpecError(f"--labelled {spec}: expected asvspoof:PROTOCOL@AUDIO_DIR")
        protocol = _existing(protocol_text, spec, "ASVspoof protocol", directory=False)
        audio_dir = _existing(audio_text, spec, "ASVspoof audio folder", directory=True)
        rows = (asvspoof_protocol(protocol, audio_dir, ".flac")
                or asvspoof_protocol(protocol, audio_dir, ".wav"))
    else:
        root = _existing(rest, spec, "folder", directory=True)
        if not (root / "real").is_dir() and not (root / "fake").is_dir():
            raise LabelledSpecError(f"--labelled {spec}: {root} has neither real/ nor fake/")
        rows = real_fake_folders(root)
    if not rows:
        raise LabelledSpecError(f"--labelled {spec}: no labelled media found there")
    return rows
