"""Image-side training: architectures, identity splits, pseudo-fakes, and a smoke run of the
real pipeline (MTCNN cache -> one training step per branch -> ONNX export -> manifest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dfmesh.runtime.model_repo import load_verified  # noqa: E402
from training.data.identities import SPLITS, group_files, split_groups  # noqa: E402
from training.fakes.augment import flip_face, mri_target  # noqa: E402
from training.fakes.registry import MANIPULATIONS, DonorPool, Face, parse_weights  # noqa: E402
from training.fakes.temporal import TEMPORAL_MANIPULATIONS  # noqa: E402
from training.models.mri import MRIDetector  # noqa: E402
from training.models.temporal import build_temporal, fold_temperature  # noqa: E402
from training.models.tiny_ladeda import TinyLaDeDa  # noqa: E402
from training.models.visual import VisualDetector  # noqa: E402

# ---------------------------------------------------------------- architectures


def test_tiny_ladeda_is_about_1_3k_parameters() -> None:
    params = sum(p.numel() for p in TinyLaDeDa().parameters())
    assert 1200 <= params <= 1400


@pytest.mark.parametrize("shape", [(64, 3, 32, 32), (2, 3, 48, 80), (1, 3, 256, 144)])
def test_tiny_ladeda_square_and_non_square(shape: tuple[int, ...]) -> None:
    out = TinyLaDeDa().eval()(torch.randn(shape))
    assert out.shape == (shape[0], 1) and torch.isfinite(out).all()


def test_visual_outputs_logit_embedding_and_training_map() -> None:
    model = VisualDetector("resnet18").eval()
    logit, emb = model(torch.randn(2, 3, 64, 64))
    assert logit.shape == (2, 1) and emb.shape == (2, 512) == (2, model.embedding_dim)
    logit2, _, mask = model.forward_with_mask(torch.randn(2, 3, 64, 64))
    assert logit2.shape == (2, 1) and mask.shape == (2, 1, 4, 4)


def test_efficientnet_option_exposes_embedding() -> None:
    model = VisualDetector("efficientnet_b0").eval()
    logit, emb = model(torch.randn(1, 3, 64, 64))
    assert logit.shape == (1, 1) and emb.shape == (1, 1280)


@pytest.mark.parametrize("arch", ["bilstm", "tcn"])
def test_temporal_models_take_any_length(arch: str) -> None:
    model = build_temporal(arch, 32).eval()
    for t in (1, 5, 16):
        assert model(torch.randn(3, t, 32)).shape == (3, 1)


@pytest.mark.parametrize("arch", ["bilstm", "tcn"])
def test_fold_temperature_divides_the_logit(arch: str) -> None:
    model = build_temporal(arch, 32).eval()
    x = torch.randn(4, 6, 32)
    with torch.no_grad():
        before = model(x)
        fold_temperature(model, 2.5)
        after = model(x)
    assert torch.allclose(after, before / 2.5, atol=1e-6)


def test_mri_detector_map_in_unit_range() -> None:
    with torch.no_grad():
        mri_map, logit = MRIDetector().eval()(torch.randn(2, 3, 64, 64))
    assert mri_map.shape == (2, 1, 64, 64) and logit.shape == (2, 1)
    assert float(mri_map.min()) >= 0.0 and float(mri_map.max()) <= 1.0


# ---------------------------------------------------------------- identities and splits


def test_multi_person_photos_merge_identity_groups() -> None:
    groups = group_files(["faces/kit_harington_john1.jpeg", "faces/rose_leslie_img1.jpg",
                          "faces/knn_examples_test_kit_with_rose.jpg", "faces/obama.jpg",
                          "talking/face_recognition__short_hamilton_clip.mp4",
                          "faces/lin-manuel-miranda.png", "faces/someone_else.jpg"])
    assert groups["faces/kit_harington_john1.jpeg"] == groups["faces/rose_leslie_img1.jpg"]
    assert groups["talking/face_recognition__short_hamilton_clip.mp4"] == \
        groups["faces/lin-manuel-miranda.png"]
    assert len({groups["faces/obama.jpg"], groups["faces/someone_else.jpg"],
                groups["faces/rose_leslie_img1.jpg"]}) == 3


def test_split_groups_is_disjoint_deterministic_and_fills_every_split() -> None:
    sizes = {f"g{i}": (i % 5) + 1 for i in range(30)} | {"deepface_set": 40}
    a, b = split_groups(sizes, seed=3), split_groups(sizes, seed=3)
    assert a == b and set(a) == set(sizes)
    assert a["deepface_set"] == "train"
    counts = {s: sum(sizes[g] for g, sp in a.items() if sp == s) for s in SPLITS}
    total = sum(sizes.values())
    assert counts["val"] > 0.08 * total and counts["test"] > 0.08 * total


# ---------------------------------------------------------------- pseudo-fakes


def _synthetic_face(seed: int, group: str) -> Face:
    """A smooth synthetic 'face' crop with plausible landmark positions (unit tests only;
    the smoke run below uses real faces)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(xx / (20 + 5 * c) + c) * np.cos(yy / 30)
                     for c in range(3)], -1)
    crop = np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)
    landmarks = np.array([[100, 110], [156, 110], [128, 140], [105, 170], [151, 170]], np.float32)
    return Face(crop, landmarks + rng.normal(0, 2, landmarks.shape).astype(np.float32), group)


@pytest.mark.parametrize("name", sorted(parse_weights("sbi,face_swap,gan_upsample,double_jpeg")))
def test_every_manipulation_changes_the_face_inside_its_mask(name: str) -> None:
    face = _synthetic_face(0, "a")
    donors = DonorPool([_synthetic_face(1, "b"), _synthetic_face(2, "a")])
    out = MANIPULATIONS[name](face, np.random.default_rng(7), donors)
    assert out.crop.shape == face.crop.shape and out.crop.dtype == np.uint8
    assert out.mask.shape == (256, 256) and out.mask.min() >= 0.0 and out.mask.max() <= 1.0
    changed = np.abs(out.crop.astype(int) - face.crop.astype(int)).sum(-1) > 0
    assert changed.any()
    assert out.mask[changed].mean() > out.mask[~changed].mean()  # changes sit in the mask
    target = mri_target(out.crop, face.crop)
    assert target[out.mask >= 0.9 * out.mask.max()].mean() > target[out.mask == 0].mean()


def test_reenact_renders_whole_frames_or_pastes_them_back_and_moves_the_mouth_most() -> None:
    from training.fakes.image import smooth_flow

    face = _synthetic_face(0, "a")
    donors = DonorPool([_synthetic_face(1, "b")])
    outs = [MANIPULATIONS["reenact"](face, np.random.default_rng(s), donors) for s in range(12)]
    for out in outs:
        assert out.crop.shape == face.crop.shape and out.crop.dtype == np.uint8
        diff = np.abs(out.crop.astype(int) - face.crop.astype(int)).sum(-1)
        assert diff[out.mask > 0].mean() > 0.5  # changed where it says it changed
    whole = [o for o in outs if o.mask.min() == 1.0]
    pasted = [o for o in outs if o.mask.min() == 0.0]
    assert whole and pasted and len(whole) + len(pasted) == len(outs)
    # the motion field: larger displacements at the mouth than at the crop's corners
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    at_mouth, at_corners = [], []
    for seed in range(20):
        mx, my = smooth_flow((256, 256), face.landmarks, np.random.default_rng(seed), 3.0)
        size = np.hypot(mx - xx, my - yy)
        at_mouth.append(size[160:180, 118:138].mean())
        at_corners.append(np.mean([size[:20, :20].mean(), size[:20, -20:].mean()]))
    assert np.mean(at_mouth) > 1.5 * np.mean(at_corners)


def test_mri_target_is_black_for_identical_faces() -> None:
    face = _synthetic_face(0, "a")
    assert np.abs(mri_target(face.crop, face.crop)).max() < 1e-4


def test_flip_swaps_left_and_right_landmarks() -> None:
    face = _synthetic_face(0, "a")
    crop, lm = flip_face(face.crop, face.landmarks)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    np.testing.assert_array_equal(crop[:, 0], face.crop[:, -1])


def test_unknown_manipulation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown manipulation"):
        parse_weights("sbi=1,no_such_thing=2")


@pytest.mark.parametrize("name", sorted(TEMPORAL_MANIPULATIONS))
def test_temporal_manipulations_keep_sequence_length(name: str) -> None:
    faces = [_synthetic_face(i, "a") for i in range(4)]
    out = TEMPORAL_MANIPULATIONS[name](faces, np.random.default_rng(0),
                                       DonorPool([_synthetic_face(9, "b")]))
    assert len(out) == 4 and all(c.shape == (256, 256, 3) for c in out)
    assert any(np.any(c != f.crop) for c, f in zip(out, faces, strict=True))


# ---------------------------------------------------------------- pipeline smoke run
# (smoke_cache: tests/conftest.py)


def _train(branch: str, cache: Path, tmp: Path, *extra: str) -> Path:
    from training.cli import main

    models = tmp / "models"
    assert main(["train", "--branch", branch, "--cache-dir", str(cache),
                 "--runs-dir", str(tmp / "runs"), "--models-dir", str(models),
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
                 "--val-samples", "4", "--test-samples", "4", "--no-dev", "--export",
                 *extra]) == 0
    return models


@pytest.mark.slow
def test_smoke_tiny_gate_trains_and_exports(smoke_cache: Path, tmp_path: Path) -> None:
    models = _train("tiny_gate", smoke_cache, tmp_path)
    manifest = load_verified(models, "tiny_gate")
    assert manifest.inputs[0]["name"] == "patches"
    assert manifest.preprocessing["patch_size"] == 32
    assert (tmp_path / "runs" / "tiny_gate" / "default" / "last.pt").is_file()


@pytest.mark.slow
def test_smoke_mri_trains_and_exports(smoke_cache: Path, tmp_path: Path) -> None:
    models = _train("mri", smoke_cache, tmp_path, "--classifier-samples", "4",
                    "--classifier-epochs", "1")
    manifest = load_verified(models, "mri")
    assert [o["name"] for o in manifest.outputs] == ["mri_map", "logit"]


@pytest.mark.slow
def test_smoke_visual_then_temporal_on_its_embeddings(smoke_cache: Path, tmp_path: Path) -> None:
    models = _train("visual", smoke_cache, tmp_path)
    visual = load_verified(models, "visual")
    assert visual.extra["weights_dtype"].startswith("float16")
    assert "onnx" in visual.metrics
    # temporal needs clips in every split; the smoke cache has one, so all splits read it
    index = json.loads((smoke_cache / "index.json").read_text())
    for entry in index:
        if entry["category"] == "talking":
            for split in ("val", "test"):
                index.append({**entry, "split": split})
            break
    own_cache = tmp_path / "cache"
    shutil.copytree(smoke_cache, own_cache)
    (own_cache / "index.json").write_text(json.dumps(index))
    from training.cli import main

    assert main(["train", "--branch", "temporal", "--cache-dir", str(own_cache),
                 "--runs-dir", str(tmp_path / "runs"), "--models-dir", str(models),
                 "--epochs", "1", "--frames", "4", "--train-sequences", "4",
                 "--val-sequences", "2", "--test-sequences", "2", "--export"]) == 0
    temporal = load_verified(models, "temporal")
    assert temporal.extra["visual_model"]["sha256"] == visual.sha256
    assert temporal.extra["temperature"]["value"] > 0
    # recalibrating the shipped weights trains nothing and records where they came from
    assert main(["train", "--branch", "temporal", "--cache-dir", str(own_cache),
                 "--runs-dir", str(tmp_path / "runs"), "--models-dir", str(models),
                 "--frames", "4", "--train-sequences", "4", "--val-sequences", "2",
                 "--test-sequences", "2", "--recalibrate", temporal.version,
                 "--export", "--version", "1.0.1"]) == 0
    recalibrated = load_verified(models, "temporal", "1.0.1")
    assert recalibrated.extra["recalibrated_from"] == {"version": temporal.version,
                                                       "sha256": temporal.sha256}
    assert "not retrained" in recalibrated.training_data["weights"]
