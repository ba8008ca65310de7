"""visual against a real server: crop statistics, per-frame embeddings, fallback, bad input."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.preprocess.stats import BRANCH_FEATURES
from dfmesh.preprocess.tensors import visual_input
from dfmesh.runtime.branch_inputs import BranchInputs, FrameInput
from dfmesh.runtime.server import running
from services.visual.service import VisualServer, VisualSettings
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
    build_model(tmp_path / "visual" / "1.0.0", "visual", {"image": ["N", 3, 224, 224]},
                {"image": "ReduceMean"}, extra_outputs=("embedding",))
    settings = VisualSettings(model_repo=tmp_path, metrics_port=0, max_batch_size=3)
    async with running(VisualServer(settings), settings) as running_server:
        yield running_server


async def test_statistics_and_one_embedding_per_frame(server, shared_data) -> None:
    crops = face_crops(shared_data, 7)
    per_frame = [crops[0:2], crops[2:3], [], crops[3:7]]
    result = await analyze(server.port, [header(), *frame_requests(per_frame)])
    tensor = visual_input(crops).astype(np.float64)
    probs = sigmoid(tensor.mean(axis=(1, 2, 3)))
    assert result.status == branch_pb2.OK
    assert set(result.features) == set(BRANCH_FEATURES["visual"])
    assert result.features["visual_num_faces"] == 7
    assert result.features["visual_prob_mean"] == pytest.approx(probs.mean(), abs=2e-5)
    assert result.features["visual_prob_max"] == pytest.approx(probs.max(), abs=2e-5)
    assert result.features["visual_prob_p90"] == pytest.approx(np.percentile(probs, 90), abs=2e-5)
    assert [s.prob_fake for s in result.item_scores] == pytest.approx(probs, abs=2e-5)
    # Frame 2 has no face: embeddings for frames 0, 1, 3 from each frame's first (largest) face.
    assert [e.frame_index for e in result.embeddings] == [0, 1, 3]
    assert [e.timestamp_seconds for e in result.embeddings] == [0.0, 0.5, 1.5]
    channel_means = tensor.mean(axis=(2, 3))
    for embedding, crop_index in zip(result.embeddings, [0, 2, 3], strict=True):
        assert list(embedding.values) == pytest.approx(channel_means[crop_index], abs=2e-5)


async def test_no_face_falls_back_with_zero_faces(server, shared_data) -> None:
    frames = full_frames(shared_data, 2)
    result = await analyze(server.port, [header(), *frame_requests([[], []], frames)])
    assert result.status == branch_pb2.FALLBACK
    assert result.features["visual_num_faces"] == 0
    assert len(result.item_scores) == 2 and len(result.embeddings) == 2
    assert result.item_scores[0].item == "frame:0/centre"


async def test_neither_faces_nor_frames_is_no_input(server) -> None:
    result = await analyze(server.port, [header(), *frame_requests([[]])])
    assert result.status == branch_pb2.NO_INPUT


async def test_undecodable_full_frame_is_invalid_argument(server) -> None:
    frame = media_pb2.SampledFrame(index=4, frame=media_pb2.Image(
        encoding=media_pb2.Image.PNG, data=b"\x89PNG but not really"))
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), media(frame=frame)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frame 4" in info.value.details() and "PNG" in info.value.details()


async def test_shipped_model(shared_data) -> None:
    repo = require_shipped("visual")
    settings = VisualSettings(model_repo=repo, metrics_port=0)
    crops = face_crops(shared_data, 8)
    async with running(VisualServer(settings), settings) as running_server:
        result = await analyze(running_server.port,
                               [header(), *frame_requests([[c] for c in crops])])
    assert result.status == branch_pb2.OK and result.features["visual_num_faces"] == 8
    for name in ("visual_prob_mean", "visual_prob_max", "visual_prob_p90"):
        assert 0.0 <= result.features[name] <= 1.0
    assert len(result.embeddings) == 8
    assert len({len(e.values) for e in result.embeddings}) == 1
    assert len(result.embeddings[0].values) > 1


async def test_stacked_model_reads_the_full_crops(shared_data) -> None:
    """A stacked model (visual 2.2.x) gets `image_full`; its logit moves with that input."""
    repo = require_shipped("visual")
    server = VisualServer(VisualSettings(model_repo=repo, metrics_port=0))
    server.load_model()
    if not server.takes_full_crops():
        pytest.skip("the shipped visual model is not stacked")
    crops = face_crops(shared_data, 3)
    prepared = server.preprocess(BranchInputs(frames=[FrameInput(i, i * 0.5, [c])
                                                      for i, c in enumerate(crops)]))
    assert prepared.feeds["image_full"].shape == (3, 3, 256, 256)
    plain = server.predict(prepared.feeds)["logit"]
    flat = dict(prepared.feeds, image_full=np.zeros_like(prepared.feeds["image_full"]))
    assert not np.allclose(server.predict(flat)["logit"], plain)
