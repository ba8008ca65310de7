"""ONNX exports match their torch models, and the shipped model repository is intact.

Two kinds of check:
- the export function itself: freshly initialized models of every image-side architecture
  go through `training.export.export_onnx` (float16 weight storage included) and must give
  torch's outputs on ONNX Runtime, at several batch sizes, frame counts and patch shapes;
- the shipped files in models/: every manifest's checksum matches its artifact, the
  repository stays under 80 MB, the image-side models honour their tensor contract on real
  crops, and the small ones (tiny_gate, temporal) keep a torch state dict so parity is
  checked on the shipped weights themselves.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from dfmesh.runtime.model_repo import MANIFEST, load_verified, sha256_file  # noqa: E402
from training.export import TensorSpec, export_onnx, load_torch_state  # noqa: E402
from training.models.mri import MRIDetector  # noqa: E402
from training.models.temporal import build_temporal  # noqa: E402
from training.models.tiny_ladeda import TinyLaDeDa  # noqa: E402
from training.models.visual import VisualDetector  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
IMAGE_BRANCHES = ("tiny_gate", "visual", "temporal", "mri")
MAX_REPO_BYTES = 80 * 1024 * 1024


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_outputs(model: torch.nn.Module, *inputs: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model.eval()(*(torch.from_numpy(x) for x in inputs))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _assert_parity(model: torch.nn.Module, session: ort.InferenceSession, name: str,
                   x: np.ndarray, atol: float, rtol: float = 1e-4) -> None:
    expected = _torch_outputs(model, x)
    got = session.run(None, {name: x})
    assert len(got) == len(expected)
    for e, g in zip(expected, got, strict=True):
        assert e.shape == g.shape
        np.testing.assert_allclose(g, e, atol=atol, rtol=rtol)


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- the export function


def test_tiny_ladeda_export_parity_any_patch_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyLaDeDa().eval()
    path = export_onnx(model, (torch.randn(2, 3, 32, 32),), tmp_path / "tiny.onnx",
                       [TensorSpec("patches", ["batch", 3, "height", "width"])],
                       [TensorSpec("logit", ["batch", 1])])
    session = _session(path)
    for shape in ((64, 3, 32, 32), (1, 3, 32, 32), (2, 3, 40, 72)):
        _assert_parity(model, session, "patches", _randn(*shape), atol=1e-5)


def test_visual_export_parity_with_float16_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VisualDetector("resnet18").eval()
    path = export_onnx(model, (torch.randn(1, 3, 224, 224),), tmp_path / "visual.onnx",
                       [TensorSpec("image", ["batch", 3, 224, 224])],
                       [TensorSpec("logit", ["batch", 1]), TensorSpec("embedding", ["batch", 512])],
                       fp16_weights=True)
    assert path.stat().st_size < 25e6  # 11.2M parameters stored as float16
    # the same network with its weights rounded to float16 is what the file computes
    rounded = VisualDetector("resnet18").eval()
    rounded.load_state_dict({k: v.half().float() if v.is_floating_point() and v.numel() >= 1024
                             else v for k, v in model.state_dict().items()})
    session = _session(path)
    for batch in (1, 3):
        _assert_parity(rounded, session, "image", _randn(batch, 3, 224, 224, seed=batch),
                       atol=2e-4, rtol=1e-3)


def test_lite0_visual_export_parity_at_its_trained_size(tmp_path: Path) -> None:
    """EfficientNet-Lite0 from its ImageNet weights, exported as the 2.x visual model is:
    float32 weights match torch tightly; float16 storage stays within 2e-2 (batch norm is
    folded into the convolutions before rounding, so the file rounds the products)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    model = VisualDetector("efficientnet_lite0").eval()
    specs = ([TensorSpec("image", ["batch", 3, 160, 160])],
             [TensorSpec("logit", ["batch", 1]), TensorSpec("embedding", ["batch", 1280])])
    example = (torch.randn(1, 3, 160, 160),)
    full = export_onnx(model, example, tmp_path / "visual32.onnx", *specs)
    half = export_onnx(model, example, tmp_path / "visual16.onnx", *specs, fp16_weights=True)
    assert half.stat().st_size < 12e6  # 4.7M parameters stored as float16
    for batch in (1, 3):
        x = _randn(batch, 3, 160, 160, seed=batch)
        _assert_parity(model, _session(full), "image", x, atol=1e-4, rtol=1e-3)
        _assert_parity(model, _session(half), "image", x, atol=2e-2, rtol=5e-2)


@pytest.mark.parametrize("arch", ["bilstm", "tcn"])
def test_temporal_export_parity_dynamic_batch_and_time(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_temporal(arch, 512).eval()
    path = export_onnx(model, (torch.randn(2, 16, 512),), tmp_path / "temporal.onnx",
                       [TensorSpec("embeddings", ["batch", "time", 512])],
                       [TensorSpec("logit", ["batch", 1])])
    session = _session(path)
    for batch, time in ((1, 16), (3, 5), (1, 1), (2, 40)):
        _assert_parity(model, session, "embeddings", _randn(batch, time, 512, seed=time),
                       atol=1e-5)


def test_mri_export_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MRIDetector().eval()
    path = export_onnx(model, (torch.randn(1, 3, 256, 256),), tmp_path / "mri.onnx",
                       [TensorSpec("image", ["batch", 3, 256, 256])],
                       [TensorSpec("mri_map", ["batch", 1, 256, 256]),
                        TensorSpec("logit", ["batch", 1])])
    session = _session(path)
    for batch in (1, 2):
        _assert_parity(model, session, "image", _randn(batch, 3, 256, 256, seed=batch),
                       atol=1e-5)


# ---------------------------------------------------------------- the shipped repository


def _shipped_version_dirs() -> list[Path]:
    return sorted(p.parent for p in MODELS_DIR.glob(f"*/*/{MANIFEST}"))


def test_every_shipped_manifest_checksum_matches() -> None:
    dirs = _shipped_version_dirs()
    if not dirs:
        pytest.skip("no models in the repository yet")
    for version_dir in dirs:
        manifest = load_verified(MODELS_DIR, version_dir.parent.name, version_dir.name)
        assert manifest.branch == version_dir.parent.name
        assert manifest.version == version_dir.name
        state = manifest.extra.get("torch_state")
        if state:
            assert sha256_file(version_dir / state["file"]) == state["sha256"]


def test_model_repository_stays_under_80_mb() -> None:
    total = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert total < MAX_REPO_BYTES, f"models/ holds {total / 2**20:.1f} MB"


def _shipped(branch: str):
    if not (MODELS_DIR / branch).is_dir():
        pytest.skip(f"no shipped {branch} model")
    return load_verified(MODELS_DIR, branch)


def _dev_crops(shared_data: Path, n: int = 4) -> list[np.ndarray]:
    paths = sorted((shared_data / "dev").glob("*.jpg"))[:n]
    if not paths:
        pytest.skip("no dev crops in the shared data")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def _preprocess(manifest_or_spec) -> object:
    """The preprocess function a manifest (or one input's spec in it) names."""
    spec = getattr(manifest_or_spec, "preprocessing", manifest_or_spec)
    module, _, name = spec["function"].rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("branch", ["visual", "mri"])
def test_shipped_image_models_on_real_crops(branch: str, shared_data: Path) -> None:
    manifest = _shipped(branch)
    session = _session(manifest.artifact_path)
    assert [i.name for i in session.get_inputs()] == [i["name"] for i in manifest.inputs]
    assert [o.name for o in session.get_outputs()] == [o["name"] for o in manifest.outputs]
    size = manifest.preprocessing.get("size")
    crops = _dev_crops(shared_data)
    feeds = {"image": _preprocess(manifest)(crops, *([size] if size else []))}
    for name in [i["name"] for i in manifest.inputs if i["name"] != "image"]:
        # a stacked visual model's second input, made as its manifest names
        feeds[name] = _preprocess(manifest.preprocessing[name])(crops)
    outputs = dict(zip([o["name"] for o in manifest.outputs], session.run(None, feeds),
                       strict=True))
    assert outputs["logit"].shape == (4, 1) and np.isfinite(outputs["logit"]).all()
    if branch == "visual":
        assert outputs["embedding"].shape == (4, manifest.outputs[1]["shape"][1])
    else:
        assert outputs["mri_map"].shape == (4, 1, 256, 256)
        assert outputs["mri_map"].min() >= 0.0 and outputs["mri_map"].max() <= 1.0


def _shipped_torch_model(manifest) -> torch.nn.Module:
    model = load_torch_state(manifest)
    if model is None:
        pytest.skip(f"{manifest.name} keeps no torch state (too large to ship twice)")
    return model


def test_shipped_tiny_gate_parity_on_real_patches(shared_data: Path) -> None:
    manifest = _shipped("tiny_gate")
    from dfmesh.preprocess.patches import tiny_patches_batch

    patches, counts = tiny_patches_batch(_dev_crops(shared_data, 2))
    assert counts == [manifest.preprocessing["patches_per_crop"]] * 2
    _assert_parity(_shipped_torch_model(manifest), _session(manifest.artifact_path), "patches",
                   patches, atol=1e-5)


def test_shipped_temporal_parity_and_any_frame_count() -> None:
    manifest = _shipped("temporal")
    dim = manifest.inputs[0]["shape"][2]
    model, session = _shipped_torch_model(manifest), _session(manifest.artifact_path)
    for time in (16, 3):
        _assert_parity(model, session, "embeddings", np.abs(_randn(1, time, dim, seed=time)),
                       atol=1e-5)
    visual = _shipped("visual")
    assert manifest.extra["visual_model"]["sha256"] == visual.sha256, \
        "temporal was trained on another visual model's embeddings: retrain it"
