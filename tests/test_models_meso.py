"""MesoInception4: the authors' Keras weights load into our PyTorch network, a wrong or
altered file is refused, and the stacked visual model is the stack its manifest states."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from dfmesh.preprocess.tensors import normalize_imagenet

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from training.models.meso import (  # noqa: E402
    MesoInception4,
    NormalizedInput,
    default_weights_dir,
    load_keras,
    load_pretrained,
)
from training.models.visual import StackedVisual, VisualDetector  # noqa: E402


@pytest.fixture(scope="module")
def weights_dir():
    path = default_weights_dir()
    if not (path / "MesoInception_DF.h5").is_file():
        pytest.skip(f"no MesoNet weights at {path}")
    return path


def test_keras_weights_land_where_keras_put_them(weights_dir) -> None:
    model = load_pretrained("MesoInception_DF", weights_dir)
    with h5py.File(weights_dir / "MesoInception_DF.h5", "r") as h5:
        root = h5.get("model_weights", h5)
        kernel = np.asarray(root["conv2d_16"]["conv2d_16"]["kernel:0"])  # the last 5x5 conv
        dense = np.asarray(root["dense_2"]["dense_2"]["kernel:0"]) if "dense_2" in root else None
    np.testing.assert_array_equal(model.conv4.weight.detach().numpy(),
                                  kernel.transpose(3, 2, 0, 1))
    if dense is not None:
        np.testing.assert_array_equal(model.dense2.weight.detach().numpy(), dense.T)
    assert float(model.bn4.running_var.min()) > 0.0


def test_a_meso4_file_is_not_taken_for_meso_inception(weights_dir) -> None:
    with pytest.raises(ValueError, match="not a MesoInception4"):
        load_keras(weights_dir / "Meso4_DF.h5")


def test_a_file_that_differs_from_sha256sums_is_refused(weights_dir, tmp_path) -> None:
    (tmp_path / "mesonet").mkdir()
    shutil.copy(weights_dir / "MesoInception_DF.h5", tmp_path / "mesonet")
    digest = hashlib.sha256((weights_dir / "MesoInception_DF.h5").read_bytes()).hexdigest()
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{digest}  ./mesonet/MesoInception_DF.h5\n")
    load_pretrained("MesoInception_DF", tmp_path / "mesonet")
    sums.write_text(f"{'0' * 64}  ./mesonet/MesoInception_DF.h5\n")
    with pytest.raises(ValueError, match="SHA256SUMS"):
        load_pretrained("MesoInception_DF", tmp_path / "mesonet")


def test_released_network_calls_real_faces_real(weights_dir, shared_data) -> None:
    """Sanity of the port: most real photos of ../shared/data/faces get negative log-odds of
    fake (a network loaded wrongly sits at one value or calls everything fake)."""
    import cv2

    paths = sorted((shared_data / "faces").glob("*.jpg"))[:16]
    if len(paths) < 8:
        pytest.skip("too few real faces")
    crops = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (256, 256))
             for p in paths]
    net = NormalizedInput(load_pretrained("MesoInception_DF", weights_dir)).eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(normalize_imagenet(np.stack(crops)))).numpy()
    assert np.isfinite(logits).all() and logits.std() > 1e-3
    assert (logits < 0).mean() >= 0.75, logits


def test_normalized_input_is_the_unit_scale_network() -> None:
    torch.manual_seed(0)
    net = MesoInception4().eval()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    with torch.no_grad():
        direct = net(torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2))
        wrapped = NormalizedInput(net).eval()(torch.from_numpy(normalize_imagenet(pixels)))
    np.testing.assert_allclose(wrapped.numpy(), direct.numpy(), atol=1e-4)


def test_stacked_visual_is_its_stated_stack() -> None:
    torch.manual_seed(0)
    detector = VisualDetector("resnet18").eval()
    member = NormalizedInput(MesoInception4()).eval()
    model = StackedVisual(detector, member, (0.5, 1.5, -0.25)).eval()
    image, full = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 256, 256)
    with torch.no_grad():
        logit, embedding = model(image, full)
        want_logit, want_embedding = detector(image)
        want = 0.5 + 1.5 * want_logit - 0.25 * member(full).unsqueeze(1)
    torch.testing.assert_close(logit, want)
    torch.testing.assert_close(embedding, want_embedding)
