"""Training on labelled public data: the --labelled spec parser, the labelled face cache, the
sampler's labelled share, and smoke runs of the image trainers with --labelled.

The labelled data is a real/ + fake/ layout of symlinks to ../shared/data/dev (67 DFDC face
crops, labels from the file names); the pseudo-fake side is a face cache of four real photos.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.common import DEFAULT_MANIPULATIONS  # noqa: E402
from training.data.identities import SPLITS  # noqa: E402
from training.data.labelled import (  # noqa: E402
    assign_splits,
    build_labelled_cache,
    load_labelled_sources,
    spec_cache_dir,
)
from training.data.pseudo import PseudoFakeSampler  # noqa: E402
from training.fakes.registry import parse_weights  # noqa: E402
from training.loaders.public import LabeledMedia, LabelledSpecError, labelled_rows  # noqa: E402
from training.train_tiny_gate import loss_fn  # noqa: E402
from training.train_visual import mask_loss  # noqa: E402

PHOTOS = ("face_recognition__obama.jpg", "face_recognition__biden.jpg",
          "openface__clapton-1.jpg", "openface__lennon-1.jpg")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


# ---------------------------------------------------------------- the spec parser


def test_spec_parser_reads_every_kind(tmp_path: Path) -> None:
    dfdc = tmp_path / "dfdc"
    touch(dfdc / "a.mp4")
    touch(dfdc / "b.mp4")
    (dfdc / "metadata.json").write_text(json.dumps({
        "a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}}))
    assert [(r.path.name, r.label, r.group) for r in labelled_rows(f"dfdc:{dfdc}")] == [
        ("a.mp4", 0, "a"), ("b.mp4", 1, "a")]

    ff = tmp_path / "ff"
    touch(ff / "original_sequences/youtube/c23/videos/000.mp4")
    touch(ff / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4")
    touch(ff / "original_sequences/youtube/c40/videos/000.mp4")
    assert [(r.label, r.method) for r in labelled_rows(f"ff++:{ff}")] == [(0, ""),
                                                                           (1, "Deepfakes")]
    assert [r.label for r in labelled_rows(f"ff++:{ff}@c40")] == [0]

    folders = tmp_path / "folders"
    touch(folders / "real/x.jpg")
    touch(folders / "fake/y.png")
    assert [(r.path.name, r.label) for r in labelled_rows(f"folders:{folders}")] == [
        ("x.jpg", 0), ("y.png", 1)]

    protocol = tmp_path / "protocol.txt"
    protocol.write_text("S1 U1 - - bonafide\nS2 U2 - A07 spoof\n")
    flac, wav = tmp_path / "flac", tmp_path / "wav"
    touch(flac / "U1.flac")
    touch(flac / "U2.flac")
    touch(wav / "U1.wav")
    assert [(r.label, r.method, r.group) for r in labelled_rows(f"asvspoof:{protocol}@{flac}")] \
        == [(0, "", "S1"), (1, "A07", "S2")]
    assert [r.path.name for r in labelled_rows(f"asvspoof:{protocol}@{wav}")] == ["U1.wav"]


@pytest.mark.parametrize("spec, message", [
    ("kaggle:/data", "unknown kind 'kaggle'"),
    ("/data/dfdc_train_part_0", "unknown kind"),
    ("dfdc:/no/such/folder", "DFDC folder '/no/such/folder' does not exist"),
    ("ff++:/no/such/root@c40", "FaceForensics\\+\\+ root '/no/such/root' does not exist"),
    ("folders:", "folder '\\(empty\\)' does not exist"),
    ("asvspoof:/no/protocol.txt", "expected asvspoof:PROTOCOL@AUDIO_DIR"),
    ("asvspoof:/no/protocol.txt@/no/audio", "ASVspoof protocol '/no/protocol.txt' does not"),
])
def test_spec_parser_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(LabelledSpecError, match=message):
        labelled_rows(spec)


def test_spec_parser_refuses_layouts_without_media(tmp_path: Path) -> None:
    (tmp_path / "dfdc").mkdir()
    with pytest.raises(LabelledSpecError, match="DFDC metadata"):
        labelled_rows(f"dfdc:{tmp_path / 'dfdc'}")
    with pytest.raises(LabelledSpecError, match="neither real/ nor fake/"):
        labelled_rows(f"folders:{tmp_path}")
    (tmp_path / "real").mkdir()
    with pytest.raises(LabelledSpecError, match="no labelled media"):
        labelled_rows(f"folders:{tmp_path}")


def test_splits_keep_a_fake_with_its_original() -> None:
    rows = [LabeledMedia(Path(f"{v}_{k}.mp4"), int(k > 0), f"video{v}", "dfdc")
            for v in range(30) for k in range(3)]
    splits = assign_splits(rows, seed=0)
    assert set(splits) == {f"dfdc:video{v}" for v in range(30)}
    assert set(splits.values()) == set(SPLITS)
    assert splits == assign_splits(list(reversed(rows)), seed=0)


# ---------------------------------------------------------------- the labelled face cache


@pytest.fixture(scope="module")
def labelled_layout(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/real and root/fake: symlinks to the dev crops, by the label in their names."""
    root = tmp_path_factory.mktemp("labelled")
    for sub in ("real", "fake"):
        (root / sub).mkdir()
    for path in sorted((shared_data / "dev").glob("genconvit__*")):
        sub = "fake" if "__fake__" in path.name else "real"
        (root / sub / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="module")
def labelled_cache(labelled_layout: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[str, Path]:
    """(spec, cache root) with every dev crop run through MTCNN."""
    root = tmp_path_factory.mktemp("labelled_cache")
    spec = f"folders:{labelled_layout}"
    build_labelled_cache(spec, root, seed=0)
    return spec, root


@pytest.fixture(scope="module")
def face_cache(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-face cache of four photos (the pseudo-fake side of a run)."""
    from training.data.faces import build_face_cache

    data = tmp_path_factory.mktemp("faces_data")
    (data / "faces").mkdir()
    for name in PHOTOS:
        (data / "faces" / name).symlink_to(shared_data / "faces" / name)
    cache = tmp_path_factory.mktemp("faces_cache")
    index = json.loads(build_face_cache(data, cache).read_text())
    assert {e["split"] for e in index} == set(SPLITS)
    return cache


def test_labelled_cache_finds_faces_labels_them_and_splits_by_group(
        labelled_cache: tuple[str, Path]) -> None:
    spec, root = labelled_cache
    cache_dir = spec_cache_dir(spec, root)
    index = json.loads((cache_dir / "index.json").read_text())
    assert index["spec"] == spec and index["files"] == 67
    entries = index["entries"]
    assert len(entries) >= 60  # MTCNN finds the face in (nearly) every 224 crop
    for e in entries:
        assert e["label"] == int("__fake__" in e["file"])
        assert e["count"] == 1  # an image keeps its largest face only
    split_of_group: dict[str, set[str]] = {}
    for e in entries:
        split_of_group.setdefault(e["group"], set()).add(e["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    assert Counter((e["split"], e["label"]) for e in entries).keys() == {
        (s, y) for s in SPLITS for y in (0, 1)}
    sources = load_labelled_sources(spec, root, "val")
    assert sources and all(s.split == "val" for s in sources)
    assert sources[0].crops.shape[1:] == (256, 256, 3) and sources[0].crops.dtype == np.uint8
    assert sources[0].landmarks.shape[1:] == (5, 2)
    # a second build detects nothing again and keeps the first build's split seed
    stamps = {p: p.stat().st_mtime_ns for p in cache_dir.glob("*.npz")}
    build_labelled_cache(spec, root)
    assert {p: p.stat().st_mtime_ns for p in cache_dir.glob("*.npz")} == stamps
    assert json.loads((cache_dir / "index.json").read_text())["entries"] == entries


def test_missing_labelled_cache_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prepare --labelled folders:/x"):
        load_labelled_sources("folders:/x", tmp_path)


# ---------------------------------------------------------------- the sampler


def test_sampler_labelled_samples_keep_their_source_labels(
        labelled_cache: tuple[str, Path]) -> None:
    spec, root = labelled_cache
    sources = load_labelled_sources(spec, root, "train")
    label_of = {s.name: s.label for s in sources}
    sampler = PseudoFakeSampler([], parse_weights(DEFAULT_MANIPULATIONS), seed=5,
                                labelled=sources, labelled_fraction=1.0)
    samples = [sampler.sample(2, i) for i in range(40)]
    assert all(s.label == label_of[s.source] for s in samples)
    assert all(s.mask_known == (s.label == 0) for s in samples)
    assert all(s.manipulation.startswith("labelled:") for s in samples)
    assert {s.label for s in samples} == {0, 1}
    again = sampler.sample(2, 7)
    assert again.source == samples[7].source and np.array_equal(again.crop, samples[7].crop)
    assert any(not np.array_equal(sampler.sample(3, i).crop, samples[i].crop) for i in range(5))
    assert all(sampler.sample(0, i, label=1).label == 1 for i in range(5))


def test_sampler_mixes_labelled_and_leaves_pseudo_only_runs_unchanged(
        face_cache: Path, labelled_cache: tuple[str, Path]) -> None:
    from training.data.faces import load_face_sources

    faces = load_face_sources(face_cache, "train")
    weights = parse_weights(DEFAULT_MANIPULATIONS)
    spec, root = labelled_cache
    labelled = load_labelled_sources(spec, root, "train")
    plain = PseudoFakeSampler(faces, weights, seed=1)
    unused = PseudoFakeSampler(faces, weights, seed=1, labelled=labelled, labelled_fraction=0.0)
    for i in range(6):
        a, b = plain.sample(0, i), unused.sample(0, i)
        assert np.array_equal(a.crop, b.crop) and a.manipulation == b.manipulation
    mixed = PseudoFakeSampler(faces, weights, seed=1, labelled=labelled, labelled_fraction=0.5)
    kinds = Counter(mixed.sample(0, i).source != "" for i in range(60))
    assert 15 <= kinds[True] <= 45 and kinds[False] > 0
    pseudo_fakes = [s for s in (mixed.sample(0, i) for i in range(60))
                    if s.label and not s.source]
    assert pseudo_fakes and all(s.mask_known and s.mask.max() > 0 for s in pseudo_fakes)


# ---------------------------------------------------------------- losses with unknown masks


def test_mask_loss_ignores_samples_whose_mask_is_unknown() -> None:
    logits = torch.randn(2, 1, 4, 4)
    masks = torch.zeros(2, 1, 16, 16)
    known = torch.tensor([1.0, 0.0])
    base = mask_loss(logits, masks, known)
    masks[1] = 1.0
    assert torch.isclose(mask_loss(logits, masks, known), base)
    masks[0] = 1.0
    assert not torch.isclose(mask_loss(logits, masks, known), base)


def test_tiny_gate_patch_loss_leaves_out_labelled_fakes() -> None:
    from training.models.tiny_ladeda import TinyLaDeDa

    model = TinyLaDeDa().eval()
    patches = torch.randn(2, 8, 3, 32, 32)
    targets = torch.zeros(2, 8)
    labels = torch.tensor([0.0, 1.0])
    known = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        base = loss_fn(model, patches, targets, labels, known)
        targets[1] = 1.0  # any patch target of the unknown-mask crop is ignored
        assert torch.isclose(loss_fn(model, patches, targets, labels, known), base)
        # but its crop label still counts (the multiple-instance term)
        assert not torch.isclose(loss_fn(model, patches, targets, torch.ones(2), known), base)


# ---------------------------------------------------------------- trainer smoke runs


def _train(branch: str, face_cache: Path, labelled: tuple[str, Path], tmp: Path,
           *extra: str) -> dict:
    from training.cli import main

    spec, root = labelled
    runs = tmp / "runs"
    assert main(["train", "--branch", branch, "--cache-dir", str(face_cache),
                 "--labelled", spec, "--labelled-cache-dir", str(root),
                 "--runs-dir", str(runs), "--models-dir", str(tmp / "models"),
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
                 "--val-samples", "4", "--test-samples", "6", "--no-dev", *extra]) == 0
    run_dir = runs / branch / "default"
    history = json.loads((run_dir / "history.json").read_text())
    assert "val_labelled" in history[0]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_visual_trains_with_labelled_data_and_reports_it_apart(
        face_cache: Path, labelled_cache: tuple[str, Path], tmp_path: Path) -> None:
    metrics = _train("visual", face_cache, labelled_cache, tmp_path, "--labelled-fraction",
                     "0.75")
    assert metrics["test_pseudo_fakes"]["n"] == 6
    labelled = metrics["test_labelled"]
    assert labelled["specs"] == [labelled_cache[0]]
    assert labelled["crop"]["n"] == 6 and labelled["crop"]["n_fake"] == 3
    assert labelled["file_mean"]["n"] == 6  # one crop per image file
    assert 0.0 <= labelled["crop"]["auc"] <= 1.0


@pytest.mark.slow
def test_tiny_gate_trains_with_labelled_data_and_reports_it_apart(
        face_cache: Path, labelled_cache: tuple[str, Path], tmp_path: Path) -> None:
    metrics = _train("tiny_gate", face_cache, labelled_cache, tmp_path)
    assert "patch" in metrics["test_pseudo_fakes"]
    assert metrics["test_labelled"]["crop"]["n"] == 6


@pytest.mark.parametrize("branch, message", [("mri", "1 - SSIM"),
                                             ("temporal", "does not take labelled")])
def test_branches_that_need_a_real_source_refuse_labelled_data(
        branch: str, message: str, tmp_path: Path) -> None:
    from training.cli import main

    with pytest.raises(SystemExit, match=message):
        main(["train", "--branch", branch, "--labelled", f"folders:{tmp_path}",
              "--runs-dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_prepare_builds_only_the_labelled_cache(labelled_layout: Path, tmp_path: Path) -> None:
    from training.cli import main

    spec = f"folders:{labelled_layout}"
    assert main(["prepare", "--no-faces", "--labelled", spec, "--labelled-cache-dir",
                 str(tmp_path), "--limit", "3"]) == 0
    index = json.loads((spec_cache_dir(spec, tmp_path) / "index.json").read_text())
    assert index["files"] == 3
    with pytest.raises(SystemExit, match="unknown kind"):
        main(["prepare", "--no-faces", "--labelled", "kaggle:/x"])


def test_dfdc_layout_keeps_every_video_in_one_split(shared_data: Path, tmp_path: Path) -> None:
    """A DFDC-style metadata.json over the dev crops: every frame of a video and every fake
    made from it form one group, which must land in exactly one split."""
    folder = tmp_path / "dfdc"
    folder.mkdir()
    meta, video_of = {}, {}
    for path in sorted((shared_data / "dev").glob("genconvit__*")):
        (folder / path.name).symlink_to(path)
        parts = path.stem.split("__")[-1].split("_")  # fake: video_original_frame
        fake = "__fake__" in path.name
        video_of[path.name] = parts[1] if fake else parts[0]
        meta[path.name] = {"label": "FAKE" if fake else "REAL",
                           "original": f"{video_of[path.name]}.mp4"}
    (folder / "metadata.json").write_text(json.dumps(meta))
    spec = f"dfdc:{folder}"
    index = json.loads(build_labelled_cache(spec, tmp_path / "cache").read_text())
    split_of_video: dict[str, set[str]] = {}
    for e in index["entries"]:
        name = Path(e["file"]).name
        assert e["group"] == f"dfdc:{video_of[name]}"
        split_of_video.setdefault(video_of[name], set()).add(e["split"])
    assert all(len(s) == 1 for s in split_of_video.values())
    assert any(sum(video_of[n] == v for n in video_of) > 1 for v in split_of_video)
    assert {next(iter(s)) for s in split_of_video.values()} == set(SPLITS)
