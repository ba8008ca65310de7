"""AASIST: the released weights load strictly into our implementation, the export is the torch
model on ONNX Runtime, waveform windows are what the model expects, and the shipped audio
model is the file its manifest describes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfmesh.preprocess import waveform
from dfmesh.runtime.errors import InvalidInput
from dfmesh.runtime.model_repo import load_verified
from tests.branch_support import require_shipped

torch = pytest.importorskip("torch")

from training.models.aasist import VARIANTS, default_weights_dir, load_pretrained  # noqa: E402


@pytest.fixture(scope="module")
def weights_dir():
    path = default_weights_dir()
    if not (path / "AASIST-L.pth").is_file():
        pytest.skip(f"no AASIST weights at {path}")
    torch.set_num_threads(1)
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_released_weights_load_strictly(weights_dir, variant) -> None:
    model = load_pretrained(variant, weights_dir)
    state = torch.load(weights_dir / f"{variant}.pth", map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(state)
    expected = {"AASIST-L": 85_306, "AASIST": 297_866}[variant]
    assert sum(p.numel() for p in model.parameters()) == expected
    with torch.no_grad():
        embedding, logits = model(torch.zeros(2, waveform.WINDOW_SAMPLES))
    assert logits.shape == (2, 2) and embedding.shape[0] == 2
    assert torch.isfinite(logits).all()


def test_export_matches_torch_at_batch_1_and_3(weights_dir, tmp_path) -> None:
    from training.export import onnx_outputs
    from training.models.aasist import FakeLogit
    from training.real.audio import export_audio

    model = load_pretrained("AASIST-L", weights_dir)
    recipe = {"frozen_blocks": 4, "steps": 0}
    version_dir = export_audio(model, "9.9.9", {}, recipe, models_dir=tmp_path)
    manifest = load_verified(tmp_path, "audio", "9.9.9")
    assert manifest.inputs == [{"name": "waveform", "shape": ["N", waveform.WINDOW_SAMPLES],
                                "dtype": "float32"}]
    assert manifest.preprocessing["window_samples"] == waveform.WINDOW_SAMPLES
    rng = np.random.default_rng(1)
    head = FakeLogit(model).eval()
    for batch in (1, 3):
        x = rng.uniform(-0.3, 0.3, (batch, waveform.WINDOW_SAMPLES)).astype(np.float32)
        [got] = onnx_outputs(version_dir / "model.onnx", {"waveform": x})
        with torch.no_grad():
            _, logits = model(torch.from_numpy(x))
        expected = (logits[:, 0] - logits[:, 1]).numpy()[:, None]
        assert got.shape == (batch, 1)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got, head(torch.from_numpy(x)).detach().numpy(), atol=1e-4)


def test_short_clip_is_tiled_into_one_window() -> None:
    pcm = np.arange(1000, dtype=np.float32) / 1000
    [window] = waveform.waveform_windows(pcm)
    assert window.dtype == np.float32 and window.shape == (waveform.WINDOW_SAMPLES,)
    assert np.array_equal(window[:1000], pcm) and np.array_equal(window[1000:2000], pcm)


@pytest.mark.parametrize(("seconds", "max_windows", "count"),
                         [(4.0, 4, 1), (4.0375, 4, 1), (4.04, 4, 2), (10.0, 4, 3), (60.0, 4, 4),
                          (60.0, 2, 2), (10.0, 1, 1)])
def test_window_count_and_spacing(seconds, max_windows, count) -> None:
    pcm = np.random.default_rng(0).uniform(-1, 1, int(seconds * 16_000)).astype(np.float32)
    windows = waveform.waveform_windows(pcm, max_windows)
    assert windows.shape == (count, waveform.WINDOW_SAMPLES) and windows.dtype == np.float32
    starts = waveform.window_starts(max(pcm.size, waveform.WINDOW_SAMPLES), max_windows)
    for window, start in zip(windows, starts, strict=True):
        if pcm.size >= waveform.WINDOW_SAMPLES:
            assert np.array_equal(window, pcm[start:start + waveform.WINDOW_SAMPLES])
    if count > 1:  # first window at the start, last one ends at the clip's end
        assert starts[0] == 0 and starts[-1] == pcm.size - waveform.WINDOW_SAMPLES


def test_windows_refuse_what_is_not_mono_pcm() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        waveform.waveform_windows(np.zeros(0, np.float32))
    with pytest.raises(InvalidInput, match="1-D"):
        waveform.waveform_windows(np.zeros((2, 100), np.float32))
    with pytest.raises(InvalidInput, match="NaN"):
        waveform.waveform_windows(np.array([0.0, np.nan], np.float32))


def test_random_window_is_a_slice_of_the_clip() -> None:
    pcm = np.random.default_rng(0).uniform(-1, 1, 100_000).astype(np.float32)
    window = waveform.random_window(pcm, np.random.default_rng(3))
    start = int(np.flatnonzero(pcm == window[0])[0])
    assert np.array_equal(window, pcm[start:start + waveform.WINDOW_SAMPLES])


def test_shipped_audio_model_is_its_manifest() -> None:
    repo = require_shipped("audio")
    manifest = load_verified(repo, "audio", "latest")  # raises on a checksum mismatch
    if not manifest.name.startswith("audio-aasist"):
        pytest.skip(f"latest audio model is {manifest.name}")
    assert manifest.preprocessing | waveform.PREPROCESSING == manifest.preprocessing
    assert [o["name"] for o in manifest.outputs] == ["logit"]
    assert 0.0 < manifest.extra["decision_threshold"] < 1.0
    assert manifest.extra["export_check"]["max_abs_diff_vs_torch"]["logit"] < 1e-4
    assert json.dumps(manifest.metrics)  # OOF figures are recorded, and plain JSON


def _window_set(n: int = 24):
    from training.real.audio import WindowSet

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    roles = np.where(np.arange(n) % 4 == 3, "pseudo", "clean")
    return WindowSet(rng.normal(0, 1, (n, 24, 23, 265)).astype(np.float16), np.arange(n) // 2,
                     labels, roles, np.full(n, ""), np.full(n, "identity"), [{}] * (n // 2))


def test_back_end_fake_logit_is_the_two_class_cross_entropy(weights_dir) -> None:
    """BCE on the trained view's output is AASIST's cross-entropy over its two logits."""
    from training.models.aasist import BONA_FIDE
    from training.real.audio import BackEndFakeLogit

    model = load_pretrained("AASIST-L", weights_dir).eval()
    net = BackEndFakeLogit(model, 4).eval()
    feats = torch.from_numpy(_window_set().feats[:6].astype(np.float32))
    fake = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.float32)
    with torch.no_grad():
        _, logits = model.back_end(feats, 4)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(net(feats)[:, 0], fake)
        target = torch.where(fake == 1, 1 - BONA_FIDE, BONA_FIDE).long()
        ce = torch.nn.functional.cross_entropy(logits, target)
    assert float(bce) == pytest.approx(float(ce), abs=1e-5)


def test_fine_tune_runs_on_the_shared_loop_with_the_front_end_frozen(weights_dir, tmp_path
                                                                    ) -> None:
    """A few steps move the back end, never the frozen blocks or their batch-norm statistics,
    and the checkpoint the loop leaves is the model it returns."""
    from training.real.audio import load_trained, train_model

    ws = _window_set()
    before = load_pretrained("AASIST-L", weights_dir).state_dict()
    model = train_model(ws, np.arange(8), steps=3, batch=8, frozen_blocks=4,
                        run_dir=tmp_path / "fold0", seed=0)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("first_bn.", "conv_time."))
              or any(k.startswith(f"encoder.{i}.") for i in range(4))]
    assert frozen and any("running_mean" in k for k in frozen)
    for key in frozen:
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in frozen)
    assert torch.load(tmp_path / "fold0" / "checkpoint.pt", weights_only=False)["step"] == 3
    reloaded = load_trained(tmp_path / "fold0", 4).state_dict()
    assert all(torch.equal(reloaded[k], after[k]) for k in after)
