"""visual 2.2's stack: the fit reads which member carries the label, and a stacked model
exported by the trainer is served by the real visual service with the torch model's numbers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dfmesh.preprocess.tensors import visual_full_input, visual_input  # noqa: E402
from dfmesh.runtime.branch_inputs import BranchInputs, FrameInput  # noqa: E402
from services.visual.service import VisualServer, VisualSettings  # noqa: E402
from tests.branch_support import face_crops  # noqa: E402
from training.models.meso import MesoInception4, NormalizedInput  # noqa: E402
from training.models.visual import StackedVisual, VisualDetector  # noqa: E402
from training.real.features import export_visual  # noqa: E402
from training.real.visual_stack import fit_stack  # noqa: E402


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


def test_fit_stack_weighs_the_member_that_carries_the_label() -> None:
    rows, meso = _rows()
    bias, w_detector, w_meso = fit_stack(rows, meso)
    assert w_meso > 0.3 and abs(w_detector) < w_meso and abs(bias) < 1.0


def test_exported_stack_is_served_with_the_torch_numbers(tmp_path, shared_data) -> None:
    torch.manual_seed(0)
    model = StackedVisual(VisualDetector("resnet18").eval(), NormalizedInput(MesoInception4()),
                          (0.25, 0.8, 0.05)).eval()
    recipe = {"version": "2.2.0", "arch": "resnet18", "input_size": 64}
    export_visual(model, recipe, tmp_path, {"training_data": "test", "metrics": {}})
    server = VisualServer(VisualSettings(model_repo=tmp_path, metrics_port=0))
    server.load_model()
    assert server.takes_full_crops()
    crops = face_crops(shared_data, 3)
    prepared = server.preprocess(BranchInputs(frames=[FrameInput(i, 0.5 * i, [c])
                                                      for i, c in enumerate(crops)]))
    served = server.predict(prepared.feeds)["logit"]
    with torch.no_grad():
        want, _ = model(torch.from_numpy(visual_input(crops, 64)),
                        torch.from_numpy(visual_full_input(crops)))
    np.testing.assert_allclose(served, want.numpy(), atol=2e-2)
