"""mri against a real server: crop statistics from the classifier logit, fallback, bad input."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.preprocess.stats import BRANCH_FEATURES
from dfmesh.preprocess.tensors import mri_input
from dfmesh.runtime.server import running
from services.mri.service import MriServer, MriSettings
from tests.branch_support import (
    analyze,
    build_model,
    face_crops,
    frame_requests,
    full_frames,
    header,
    media,
    require_shipped,
    sigmoid,
)


@pytest.fixture
async def server(tmp_path):
    build_model(tmp_path / "mri" / "1.0.0", "mri", {"image": ["N", 3, 256, 256]},
                {"image": "ReduceMean"}, extra_outputs=("mri_map",))
    settings = MriSettings(model_repo=tmp_path, metrics_port=0)
    async with running(MriServer(settings), settings) as running_server:
        yield running_server


async def test_statistics_from_known_scores(server, shared_data) -> None:
    crops = face_crops(shared_data, 6)
    result = await analyze(server.port, [header(), *frame_requests([[c] for c in crops])])
    probs = sigmoid(mri_input(crops).astype(np.float64).mean(axis=(1, 2, 3)))
    assert result.status == branch_pb2.OK
    assert set(result.features) == set(BRANCH_FEATURES["mri"])
    assert result.features["mri_prob_mean"] == pytest.approx(probs.mean(), abs=2e-5)
    assert result.features["mri_prob_max"] == pytest.approx(probs.max(), abs=2e-5)
    assert result.features["mri_prob_p90"] == pytest.approx(np.percentile(probs, 90), abs=2e-5)
    assert [s.item for s in result.item_scores] == [f"frame:{i}/face:0" for i in range(6)]
    assert [s.prob_fake for s in result.item_scores] == pytest.approx(probs, abs=2e-5)


async def test_no_face_falls_back_and_nothing_is_no_input(server, shared_data) -> None:
    fallback = await analyze(server.port,
                             [header(), *frame_requests([[]], full_frames(shared_data, 1))])
    assert fallback.status == branch_pb2.FALLBACK and len(fallback.item_scores) == 1
    nothing = await analyze(server.port, [header()])
    assert nothing.status == branch_pb2.NO_INPUT


async def test_grayscale_crop_of_wrong_size_is_invalid_argument(server) -> None:
    bad = media_pb2.SampledFrame(index=0, faces=[media_pb2.Face(crop=media_pb2.Image(
        width=10, height=10, encoding=media_pb2.Image.RAW_GRAY8, data=b"\0" * 99))])
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), media(frame=bad)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RAW_GRAY8 10x10 needs 100 bytes, got 99" in info.value.details()


async def test_shipped_model(shared_data) -> None:
    repo = require_shipped("mri")
    settings = MriSettings(model_repo=repo, metrics_port=0)
    crops = face_crops(shared_data, 4)
    async with running(MriServer(settings), settings) as running_server:
        result = await analyze(running_server.port,
                               [header(), *frame_requests([[c] for c in crops])])
    assert result.status == branch_pb2.OK and len(result.item_scores) == 4
    for name in BRANCH_FEATURES["mri"]:
        assert 0.0 <= result.features[name] <= 1.0
