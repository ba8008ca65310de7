"""tiny_gate against a real server: patch statistics, fallback, no input, bad input."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.preprocess.geometry import FACE_CROP_SIZE, centre_crop_box, crop_square
from dfmesh.preprocess.patches import tiny_patches_batch
from dfmesh.preprocess.stats import BRANCH_FEATURES
from dfmesh.runtime.server import running
from services.tiny_gate.service import TinyGateServer, TinyGateSettings
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
    build_model(tmp_path / "tiny_gate" / "1.0.0", "tiny_gate",
                {"patches": ["N", 3, 32, 32]}, {"patches": "ReduceMean"})
    settings = TinyGateSettings(model_repo=tmp_path, metrics_port=0, max_batch_size=100)
    async with running(TinyGateServer(settings), settings) as running_server:
        yield running_server


def expected_patch_probs(crops: list[np.ndarray]) -> np.ndarray:
    patches, _ = tiny_patches_batch(crops)
    return sigmoid(patches.astype(np.float64).mean(axis=(1, 2, 3)))


async def test_statistics_over_every_patch_of_every_crop(server, shared_data) -> None:
    crops = face_crops(shared_data, 5)
    result = await analyze(server.port, [header(), *frame_requests([crops[:2], crops[2:3],
                                                                     crops[3:]])])
    probs = expected_patch_probs(crops)
    assert result.status == branch_pb2.OK and result.branch == "tiny_gate"
    assert set(result.features) == set(BRANCH_FEATURES["tiny_gate"])
    assert result.features["tiny_num_files"] == 5
    assert result.features["tiny_num_patches"] == 5 * 64 == probs.size
    assert result.features["tiny_prob_mean"] == pytest.approx(probs.mean(), abs=2e-5)
    assert result.features["tiny_prob_max"] == pytest.approx(probs.max(), abs=2e-5)
    assert result.features["tiny_prob_p90"] == pytest.approx(np.percentile(probs, 90), abs=2e-5)
    assert result.prob_fake == pytest.approx(probs.mean(), abs=2e-5)
    assert [s.item for s in result.item_scores] == [
        "frame:0/face:0", "frame:0/face:1", "frame:1/face:0", "frame:2/face:0", "frame:2/face:1"]
    per_crop = probs.reshape(5, 64).mean(axis=1)
    assert [s.prob_fake for s in result.item_scores] == pytest.approx(per_crop, abs=2e-5)
    assert [s.frame_index for s in result.item_scores] == [0, 0, 1, 2, 2]


async def test_no_face_falls_back_to_centre_crops(server, shared_data) -> None:
    frames = full_frames(shared_data, 3)
    result = await analyze(server.port, [header(), *frame_requests([[], [], []], frames)])
    crops = [crop_square(f, centre_crop_box(f.shape[1], f.shape[0]), FACE_CROP_SIZE)
             for f in frames]
    assert result.status == branch_pb2.FALLBACK and "centre crops" in result.detail
    assert result.features["tiny_num_files"] == 3
    assert result.features["tiny_prob_max"] == pytest.approx(
        expected_patch_probs(crops).max(), abs=2e-5)


async def test_neither_faces_nor_frames_is_no_input(server) -> None:
    result = await analyze(server.port, [header(), *frame_requests([[], []])])
    assert result.status == branch_pb2.NO_INPUT and "no face crops" in result.detail
    assert dict(result.features) == {}


async def test_malformed_crop_is_invalid_argument(server) -> None:
    bad = media_pb2.SampledFrame(index=0, faces=[media_pb2.Face(crop=media_pb2.Image(
        width=256, height=256, encoding=media_pb2.Image.RAW_RGB8, data=b"\0" * 1000))])
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), media(frame=bad)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frame 0 face 0 crop" in info.value.details()
    assert "196608 bytes" in info.value.details()


async def test_shipped_model(shared_data) -> None:
    repo = require_shipped("tiny_gate")
    settings = TinyGateSettings(model_repo=repo, metrics_port=0)
    async with running(TinyGateServer(settings), settings) as running_server:
        crops = face_crops(shared_data, 8)
        result = await analyze(running_server.port,
                               [header(), *frame_requests([[c] for c in crops])])
    assert result.status == branch_pb2.OK
    assert result.features["tiny_num_files"] == 8
    assert result.features["tiny_num_patches"] == 8 * 64
    for name in ("tiny_prob_mean", "tiny_prob_max", "tiny_prob_p90"):
        assert 0.0 <= result.features[name] <= 1.0
    assert result.features["tiny_prob_max"] >= result.features["tiny_prob_p90"]
    assert result.features["tiny_prob_max"] >= result.features["tiny_prob_mean"]
    assert result.model.version and len(result.model.sha256) == 64
