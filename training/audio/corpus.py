"""Bona fide speech for the audio branch, grouped by speaker and split speaker-disjointly.

Speakers come from file names: LibriSpeech utterances and the RTVC samples carry the
LibriSpeech speaker id (or the VCTK one), the ALSA channel names are one voice, every other
recording is its own source. Talking clips with a real (non-silent) audio track join with
the split of their identity group (training.loaders.talking), so fusion's test clips never
trained the audio model.

Labelled recordings (`--labelled asvspoof:PROTOCOL@AUDIO_DIR` or `folders:PATH`, parsed by
training.loaders.public.labelled_rows) come with their own label and speaker: they are split
speaker-disjointly among themselves (split_groups over the rows' groups, by recordings), and
their windows keep that label (no resynthesis).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from training.data.identities import split_groups
from training.loaders.public import LabelledSpecError, labelled_rows
from training.loaders.talking import talking_clips

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus"}


@dataclass(frozen=True)
class SpeechSource:
    """One recording, its speaker group and split. `label` None: bona fide speech that gets
    resynthesized pseudo-spoofs; 0 or 1: a labelled recording (1 = spoof) taken as it is."""

    path: Path
    name: str
    speaker: str
    split: str
    label: int | None = None
    method: str = ""      # the labelled spoof's attack id, where the dataset names one


def speaker_of(name: str) -> str:
    """Speaker group of a speech file from its name."""
    stem = Path(name).stem
    if m := re.search(r"__(?:test-other|test-clean|train-clean-100|dev-clean)__(\d+)-", stem):
        return f"libri:{m.group(1)}"
    if m := re.match(r"rtvc__(p\d+)_", stem):
        return f"vctk:{m.group(1)}"
    if m := re.match(r"rtvc__(\d+)_", stem):
        return f"libri:{m.group(1)}"
    if stem.startswith("alsa-utils__"):
        return "alsa"
    return f"file:{stem}"


def speech_sources(data_dir: Path, seed: int = 0) -> list[SpeechSource]:
    """Every bona fide recording (speech/ and talking clips with real audio), with splits."""
    speech = sorted(p for p in (data_dir / "speech").rglob("*") if p.suffix in AUDIO_SUFFIXES)
    names = [str(p.relative_to(data_dir)) for p in speech]
    speakers = {n: speaker_of(n) for n in names}
    sizes: dict[str, int] = {}
    for s in speakers.values():
        sizes[s] = sizes.get(s, 0) + 1
    splits = split_groups(sizes, seed=seed)
    sources = [SpeechSource(data_dir / n, n, speakers[n], splits[speakers[n]]) for n in names]
    for clip in talking_clips(data_dir, seed):
        if clip.has_audio and not clip.silent:
            sources.append(SpeechSource(data_dir / clip.name, clip.name, f"talking:{clip.group}",
                                        clip.split))
    return sources


def labelled_speech_sources(spec: str, seed: int = 0) -> list[SpeechSource]:
    """The audio recordings of one --labelled spec, split speaker-disjointly (by the rows'
    group, weighted by recordings)."""
    if spec.split(":", 1)[0] not in ("asvspoof", "folders"):
        raise LabelledSpecError(f"--labelled {spec}: the audio trainer takes asvspoof:"
                                "PROTOCOL@AUDIO_DIR or folders:PATH")
    rows = [r for r in labelled_rows(spec) if r.path.suffix.lower() in AUDIO_SUFFIXES]
    if not rows:
        raise LabelledSpecError(f"--labelled {spec}: no audio files there")
    sizes: dict[str, int] = {}
    for row in rows:
        group = f"{row.dataset}:{row.group}"
        sizes[group] = sizes.get(group, 0) + 1
    splits = split_groups(sizes, seed=seed)
    out = []
    for row in rows:
        group = f"{row.dataset}:{row.group}"
        digest = hashlib.sha1(str(row.path).encode()).hexdigest()[:12]
        out.append(SpeechSource(row.path, f"labelled/{row.dataset}/{digest}_{row.path.name}",
                                group, splits[group], row.label, row.method))
    return out
