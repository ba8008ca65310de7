"""visual 2.2-2.4's stack: the fits read which member carries the label (2.3's per crop, each
file weighing one), a stacked model exported by the trainer (2.3's clipping its member, 2.4's
averaging two seeds' detectors) is served by the real visual service with the torch model's
numbers, and the recipes name their base detectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dfmesh.preprocess.tensors import visual_full_input, visual_input  # noqa: E402
from dfmesh.runtime.branch_inputs import BranchInputs, FrameInput  # noqa: E402
from services.visual.service import VisualServer, VisualSettings  # noqa: E402
from tests.branch_support import face_crops  # noqa: E402
from training.models.meso import MesoInception4, NormalizedInput  # noqa: E402
from training.models.visual import (  # noqa: E402
    DetectorEnsemble,
    StackedVisual,
    VisualDetector,
)
from training.real.features import export_visual  # noqa: E402
from training.real.visual_stack import (  # noqa: E402
    fit_stack,
    fit_stack_crops,
    full_recipe,
    seed_lines,
)
from training.reproduce import RECIPES_DIR  # noqa: E402


def _rows(n: int = 200, seed: int = 0) -> tuple[list[dict], dict[str, float]]:
    """Files whose member score carries the label and whose detector score is noise."""
    rng = np.random.default_rng(seed)
    rows, meso = [], {}
    for i in range(n):
        label = i % 2
        rows.append({"path": f"f{i}", "label": label,
                     "visual": {"prob_fake": float(rng.uniform(0.2, 0.8))}})
        meso[f"f{i}"] = float(rng.normal(4.0 if label else -4.0, 3.0))
    return rows, meso


def _served_logits(model: torch.nn.Module, version: str, crops: list[np.ndarray],
                   repo) -> np.ndarray:
    """Export `model` as the trainer does into `repo` and score `crops` (one per frame)
    through the real visual service; its logits [N, 1]."""
    export_visual(model, {"version": version, "arch": "resnet18", "input_size": 64}, repo,
                  {"training_data": "test", "metrics": {}})
    server = VisualServer(VisualSettings(model_repo=repo, metrics_port=0))
    server.load_model()
    assert server.takes_full_crops()
    prepared = server.preprocess(BranchInputs(frames=[FrameInput(i, 0.5 * i, [c])
                                                      for i, c in enumerate(crops)]))
    return server.predict(prepared.feeds)["logit"]


def test_fit_stack_weighs_the_member_that_carries_the_label() -> None:
    rows, meso = _rows()
    bias, w_detector, w_meso = fit_stack(rows, meso)
    assert w_meso > 0.3 and abs(w_detector) < w_meso and abs(bias) < 1.0


def test_fit_stack_crops_weighs_files_not_crops_and_clips_the_member() -> None:
    rng = np.random.default_rng(0)
    rows, crops = [], {}
    for i in range(120):
        label = i % 2
        n = 300 if i < 4 else 4  # four files with more crops than all the others together,
        # whose member says the opposite: counted per crop, they would flip its sign
        member = rng.normal(-3.0 if (label == 1) == (i < 4) else 3.0, 1.0, n) * 10
        rows.append({"path": f"f{i}", "label": label})
        crops[f"f{i}"] = {"detector": rng.normal(0.0, 1.0, n).tolist(), "meso": member.tolist()}
    bias, w_detector, w_meso = fit_stack_crops(rows, crops, clip=4.0)
    assert w_meso > 0.3 and abs(w_detector) < w_meso
    # each file weighs one, each class half: the balanced files put the bias near zero
    assert abs(bias) < 0.5
    # clipped: the member's +-30 log-odds enter as +-4, so its weight is that of a +-3..4 signal
    assert w_meso * 4.0 < 12.0


def test_stack_clips_its_member_in_torch_and_in_the_served_model(tmp_path, shared_data) -> None:
    torch.manual_seed(0)
    member = NormalizedInput(MesoInception4())
    for layer in member.net.convs():
        torch.nn.init.normal_(layer.weight, std=2.0)  # a member that saturates
    model = StackedVisual(VisualDetector("resnet18").eval(), member, (0.0, 0.0, 1.0),
                          member_clip=0.5).eval()
    crops = face_crops(shared_data, 3)
    with torch.no_grad():
        logit, _ = model(torch.from_numpy(visual_input(crops, 64)),
                         torch.from_numpy(visual_full_input(crops)))
        raw = member(torch.from_numpy(visual_full_input(crops)))
    assert float(raw.abs().max()) > 0.5
    np.testing.assert_allclose(logit.numpy()[:, 0], raw.clamp(-0.5, 0.5).numpy(), atol=1e-6)
    np.testing.assert_allclose(_served_logits(model, "2.3.0", crops, tmp_path), logit.numpy(),
                               atol=2e-2)


def test_exported_stack_is_served_with_the_torch_numbers(tmp_path, shared_data) -> None:
    torch.manual_seed(0)
    model = StackedVisual(VisualDetector("resnet18").eval(), NormalizedInput(MesoInception4()),
                          (0.25, 0.8, 0.05)).eval()
    crops = face_crops(shared_data, 3)
    served = _served_logits(model, "2.2.0", crops, tmp_path)
    with torch.no_grad():
        want, _ = model(torch.from_numpy(visual_input(crops, 64)),
                        torch.from_numpy(visual_full_input(crops)))
    np.testing.assert_allclose(served, want.numpy(), atol=2e-2)


def test_two_seed_stack_averages_its_detectors_and_is_served_so(tmp_path, shared_data) -> None:
    torch.manual_seed(0)
    first, second = VisualDetector("resnet18").eval(), VisualDetector("resnet18").eval()
    member = NormalizedInput(MesoInception4()).eval()
    weights = (0.1, 0.7, 0.2)
    model = StackedVisual(DetectorEnsemble([first, second]), member, weights,
                          member_clip=4.0).eval()
    crops = face_crops(shared_data, 3)
    image = torch.from_numpy(visual_input(crops, 64))
    full = torch.from_numpy(visual_full_input(crops))
    with torch.no_grad():
        logit, embedding = model(image, full)
        (a, emb_a), (b, _) = first(image), second(image)
        meso = member(full).clamp(-4.0, 4.0).unsqueeze(1)
    assert float((a - b).abs().max()) > 1e-3  # two different networks
    np.testing.assert_allclose(logit.numpy(), (0.1 + 0.7 * (a + b) / 2 + 0.2 * meso).numpy(),
                               atol=1e-5)
    # the embedding temporal reads is the first detector's, not a mix of unaligned features
    np.testing.assert_array_equal(embedding.numpy(), emb_a.numpy())
    np.testing.assert_allclose(_served_logits(model, "2.4.0", crops, tmp_path), logit.numpy(),
                               atol=2e-2)


def test_stack_recipes_name_their_base_detectors() -> None:
    one = full_recipe(RECIPES_DIR / "visual-2.3.0.json")
    assert one["bases"] == ["2.1.0"] and one["seed"] == 0
    two = full_recipe(RECIPES_DIR / "visual-2.4.0.json")
    assert two["bases"] == ["2.1.0", "2.1.1"]
    base, other = (json.loads((RECIPES_DIR / f"visual-{v}.json").read_text())
                   for v in two["bases"])
    assert (base["seed"], other["seed"]) == (0, 1)
    # the seeds differ in nothing else: the detectors are one recipe
    differ = {k for k in base.keys() | other.keys() if base.get(k) != other.get(k)}
    assert differ == {"version", "seed", "steps", "why", "status"}


def test_ensemble_needs_a_detector() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DetectorEnsemble([])


def test_seed_lines_score_each_seed_and_their_mean_held_out() -> None:
    """Seed 0's detector carries the label, seed 1's is noise, MesoNet is silent: held out,
    seed 0's stack ranks files well, seed 1's at chance, their mean in between."""
    rng = np.random.default_rng(0)
    rows, crops = [], {}
    for i in range(160):
        label, kind = i % 2, ("image", "video")[(i // 2) % 2]
        good = rng.normal(1.5 if label else -1.5, 1.0, 4)
        noise = rng.normal(0.0, 1.0, 4)
        rows.append({"path": f"f{i}", "label": label, "kind": kind, "fold": i % 4})
        crops[f"f{i}"] = {"detector": ((good + noise) / 2).tolist(),
                          "seeds": [good.tolist(), noise.tolist()], "meso": [0.0] * 4}
    lines = seed_lines(rows, crops, clip=4.0, num_folds=4)
    assert set(lines) == {"seed 0", "seed 1", "mean"}
    for kind in ("image", "video"):
        assert lines["seed 0"][kind] > 0.9
        assert abs(lines["seed 1"][kind] - 0.5) < 0.2
        assert lines["seed 1"][kind] < lines["mean"][kind] < 1.0
