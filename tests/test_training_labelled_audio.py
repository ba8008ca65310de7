"""The audio trainer with --labelled: ASVspoof-style protocol rows next to the pseudo-spoofs.

Plumbing only: the "spoof" recordings below are real LibriSpeech utterances that the protocol
written here calls spoofs, so no number this run prints means anything about detection.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from training.audio.corpus import labelled_speech_sources  # noqa: E402
from training.loaders.public import LabelledSpecError  # noqa: E402

LIBRI = "speech/librispeech/resemblyzer__test-other__{}.flac"
PSEUDO = ("3005-163389-0007", "3331-159605-0004", "367-130732-0006")  # one speaker per split
# (speaker, utterance file, key): three protocol speakers, each with a bona fide and a spoof
PROTOCOL = (("LA_0001", "2414-128291-0009", "bonafide"), ("LA_0001", "2414-128291-0003", "A01"),
            ("LA_0002", "533-1066-0000", "bonafide"), ("LA_0002", "533-1066-0002", "A02"),
            ("LA_0003", "1688-142285-0002", "bonafide"), ("LA_0003", "1688-142285-0003", "A01"))


@pytest.fixture()
def audio_layout(shared_data: Path, tmp_path: Path) -> tuple[Path, str]:
    """(a data dir of three real recordings, an asvspoof spec over six others)."""
    data = tmp_path / "data"
    (data / "speech").mkdir(parents=True)
    header = (shared_data / "MANIFEST.csv").read_text().splitlines()[0]
    (data / "MANIFEST.csv").write_text(header + "\n")  # no talking clips
    for utt in PSEUDO:
        src = shared_data / LIBRI.format(utt)
        if not src.is_file():
            pytest.skip(f"{src.name} missing from the shared data")
        (data / "speech" / src.name).symlink_to(src)
    flac = tmp_path / "asvspoof" / "flac"
    flac.mkdir(parents=True)
    lines = []
    for i, (speaker, utt, key) in enumerate(PROTOCOL):
        (flac / f"LA_T_{i}.flac").symlink_to(shared_data / LIBRI.format(utt))
        lines.append(f"{speaker} LA_T_{i} - - bonafide" if key == "bonafide"
                     else f"{speaker} LA_T_{i} - {key} spoof")
    protocol = tmp_path / "asvspoof" / "protocol.txt"
    protocol.write_text("\n".join(lines) + "\n")
    return data, f"asvspoof:{protocol}@{flac}"


def test_labelled_recordings_are_split_by_speaker(audio_layout: tuple[Path, str]) -> None:
    _, spec = audio_layout
    sources = labelled_speech_sources(spec)
    assert [s.label for s in sources] == [0, 1, 0, 1, 0, 1]
    assert [s.method for s in sources if s.label] == ["A01", "A02", "A01"]
    by_speaker: dict[str, set[str]] = {}
    for s in sources:
        by_speaker.setdefault(s.speaker, set()).add(s.split)
    assert all(len(splits) == 1 for splits in by_speaker.values())
    assert {next(iter(s)) for s in by_speaker.values()} == {"train", "val", "test"}


def test_audio_trainer_refuses_image_specs(tmp_path: Path) -> None:
    with pytest.raises(LabelledSpecError, match="asvspoof:PROTOCOL@AUDIO_DIR or folders"):
        labelled_speech_sources(f"dfdc:{tmp_path}")


@pytest.mark.slow
def test_audio_trains_on_labelled_rows_and_reports_them_apart(
        audio_layout: tuple[Path, str], tmp_path: Path) -> None:
    from training.cli import main

    data, spec = audio_layout
    cache = tmp_path / "cache"
    assert main(["train", "--branch", "audio", "--data-dir", str(data), "--labelled", spec,
                 "--cache-dir", str(cache), "--runs-dir", str(tmp_path / "runs"),
                 "--models-dir", str(tmp_path / "models"), "--epochs", "1",
                 "--windows-per-file", "1", "--copies", "1", "--version", "0.0.1"]) == 0
    # a labelled recording's windows keep its label and attack; no resynthesis
    labelled = sorted(cache.glob("labelled__asvspoof__*.npz"))
    assert len(labelled) == 6
    for path in labelled:
        with np.load(path) as rows:
            assert rows["labelled"].all() and len(rows["y"]) == 1
            assert set(rows["method"]) <= {"bonafide", "A01", "A02"}
            assert rows["y"][0] == int(rows["method"][0] != "bonafide")
    metrics = json.loads((tmp_path / "runs" / "audio" / "metrics.json").read_text())
    assert metrics["labelled_specs"] == [spec]
    # pseudo-spoof numbers stay on the pseudo rows: one recording, bona fide + resynthesis
    assert metrics["test_window"]["n"] == 2 and metrics["test_window"]["n_fake"] == 1
    assert metrics["test_labelled"]["window"]["n"] == 2
    assert metrics["test_labelled"]["window"]["n_fake"] == 1
    assert set(metrics["test_labelled"]["auc_by_attack"]) <= {"A01", "A02"}
    assert metrics["val_labelled"]["recording_mean"]["n"] == 2
    manifest = json.loads(next((tmp_path / "models" / "audio").glob("*/manifest.json"))
                          .read_text())
    assert manifest["training_data"]["counts"]["train"]["labelled_rows"] == 2
