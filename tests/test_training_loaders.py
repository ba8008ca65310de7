"""Public dataset layouts, built as small folder trees."""

from __future__ import annotations

import json
from pathlib import Path

from training.loaders.public import (
    asvspoof_protocol,
    dfdc_folder,
    faceforensics,
    real_fake_folders,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


def test_dfdc_metadata(tmp_path: Path) -> None:
    for name in ("aaa.mp4", "bbb.mp4", "ccc.mp4"):
        touch(tmp_path / name)
    (tmp_path / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "REAL", "split": "train"},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "ccc.mp4": {"label": "FAKE", "original": "zzz.mp4"},
        "missing.mp4": {"label": "FAKE", "original": "aaa.mp4"},
    }))
    rows = {r.path.name: r for r in dfdc_folder(tmp_path)}
    assert set(rows) == {"aaa.mp4", "bbb.mp4", "ccc.mp4"}
    assert (rows["aaa.mp4"].label, rows["bbb.mp4"].label) == (0, 1)
    # a fake shares its original's group, so they never land in different splits
    assert rows["aaa.mp4"].group == rows["bbb.mp4"].group == "aaa"
    assert rows["ccc.mp4"].group == "zzz"


def test_faceforensics_layout(tmp_path: Path) -> None:
    touch(tmp_path / "original_sequences/youtube/c23/videos/000.mp4")
    touch(tmp_path / "original_sequences/youtube/c40/videos/000.mp4")
    touch(tmp_path / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4")
    touch(tmp_path / "manipulated_sequences/NeuralTextures/c23/videos/000_003.mp4")
    rows = faceforensics(tmp_path)
    assert [(r.label, r.method, r.group) for r in rows] == [
        (0, "", "000"), (1, "Deepfakes", "000"), (1, "NeuralTextures", "000")]
    assert len(faceforensics(tmp_path, "c40")) == 1


def test_asvspoof_protocols_2019_and_2021(tmp_path: Path) -> None:
    audio = tmp_path / "flac"
    for utt in ("LA_T_1", "LA_T_2", "DF_E_3"):
        touch(audio / f"{utt}.flac")
    la2019 = tmp_path / "la2019.txt"
    la2019.write_text("LA_0079 LA_T_1 - - bonafide\nLA_0080 LA_T_2 - A01 spoof\n"
                      "LA_0081 LA_T_9 - A02 spoof\n")
    rows = asvspoof_protocol(la2019, audio)
    assert [(r.group, r.label, r.method) for r in rows] == [("LA_0079", 0, ""),
                                                            ("LA_0080", 1, "A01")]
    df2021 = tmp_path / "df2021.txt"
    df2021.write_text("LA_0023 DF_E_3 mp3m4a asvspoof A14 spoof notrim eval traditional_vocoder\n")
    (row,) = asvspoof_protocol(df2021, audio)
    assert (row.label, row.method, row.group) == (1, "A14", "LA_0023")


def test_real_fake_folders(tmp_path: Path) -> None:
    touch(tmp_path / "real/a/x.jpg")
    touch(tmp_path / "fake/y.mp4")
    touch(tmp_path / "fake/notes.txt")
    rows = real_fake_folders(tmp_path)
    assert [(r.path.name, r.label) for r in rows] == [("x.jpg", 0), ("y.mp4", 1)]
    assert rows[0].group == "real:a/x"
