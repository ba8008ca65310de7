"""Every branch's preprocessing runs on the synthetic warm-up inputs (so the first real
request does not pay for first-use set-up such as librosa's numba kernels), with the
test-built models of tests/fusion_support."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfmesh.runtime.branch_inputs import synthetic_inputs
from services.audio.service import AudioServer, AudioSettings
from services.mri.service import MriServer, MriSettings
from services.sync.service import SyncServer, SyncSettings
from services.temporal.service import TemporalServer, TemporalSettings
from services.tiny_gate.service import TinyGateServer, TinyGateSettings
from services.visual.service import VisualServer, VisualSettings
from tests.fusion_support import build_test_repo

SERVERS = {"tiny_gate": (TinyGateServer, TinyGateSettings),
           "visual": (VisualServer, VisualSettings), "audio": (AudioServer, AudioSettings),
           "temporal": (TemporalServer, TemporalSettings), "sync": (SyncServer, SyncSettings),
           "mri": (MriServer, MriSettings)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_test_repo(root, prefer_shipped=False)
    return root


@pytest.mark.parametrize("branch", list(SERVERS))
async def test_warm_up_inputs_go_through_preprocessing(repo: Path, branch: str) -> None:
    server_cls, settings_cls = SERVERS[branch]
    model = server_cls(settings_cls(model_repo=repo, metrics_port=0))
    await model.load()
    output = await model.analyze(synthetic_inputs(model.input_shape))
    assert output.status == "OK", output.detail
    assert output.item_scores
