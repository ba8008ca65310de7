"""temporal against a real server: sequence score, too few frames, mismatched embeddings; the
shipped model is fed the shipped visual model's embeddings of real face crops."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2
from dfmesh.runtime.server import running
from services.temporal.service import TemporalServer, TemporalSettings
from services.visual.service import VisualServer, VisualSettings
from tests.branch_support import (
    analyze,
    build_model,
    face_crops,
    frame_requests,
    header,
    require_shipped,
    sigmoid,
)

PAIRED_VISUAL = "a" * 64


def embedding_requests(values: np.ndarray, order: list[int] | None = None, source: str = ""
                       ) -> list[branch_pb2.BranchRequest]:
    order = order if order is not None else list(range(len(values)))
    return [branch_pb2.BranchRequest(embedding=branch_pb2.FrameEmbedding(
        frame_index=i, timestamp_seconds=0.5 * i, values=values[i].tolist(),
        source_model_sha256=source)) for i in order]


@pytest.fixture
async def server(tmp_path):
    build_model(tmp_path / "temporal" / "1.0.0", "temporal",
                {"embeddings": [1, "T", 4]}, {"embeddings": "ReduceMean"},
                visual_model={"name": "visual-test", "version": "1.0.0",
                              "sha256": PAIRED_VISUAL})
    settings = TemporalSettings(model_repo=tmp_path, metrics_port=0)
    async with running(TemporalServer(settings), settings) as running_server:
        yield running_server


async def test_sequence_probability_in_frame_order(server) -> None:
    values = np.random.default_rng(0).normal(0.3, 1.0, (6, 4)).astype(np.float32)
    result = await analyze(server.port, [header(), *embedding_requests(values, [3, 0, 5, 1, 4, 2])])
    expected = sigmoid(values.astype(np.float64).mean())
    assert result.status == branch_pb2.OK
    assert dict(result.features) == pytest.approx({"temporal_prob_fake": expected}, abs=1e-6)
    assert result.prob_fake == pytest.approx(expected, abs=1e-6)
    assert [s.item for s in result.item_scores] == ["frames:0-5"]


async def test_embeddings_of_the_paired_visual_are_scored(server) -> None:
    values = np.ones((3, 4), dtype=np.float32)
    result = await analyze(server.port, [header(), *embedding_requests(values,
                                                                       source=PAIRED_VISUAL)])
    assert result.status == branch_pb2.OK


async def test_embeddings_of_another_visual_are_no_input(server) -> None:
    values = np.ones((3, 4), dtype=np.float32)
    result = await analyze(server.port, [header(), *embedding_requests(values, source="b" * 64)])
    assert result.status == branch_pb2.NO_INPUT
    assert "bbbbbbbbbbbb" in result.detail and "aaaaaaaaaaaa" in result.detail
    assert not result.features


async def test_fewer_than_two_embeddings_is_no_input(server) -> None:
    one = await analyze(server.port, [header(), *embedding_requests(np.ones((1, 4)))])
    assert one.status == branch_pb2.NO_INPUT and "at least 2" in one.detail


async def test_wrong_embedding_size_is_invalid_argument(server) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), *embedding_requests(np.ones((3, 5)))])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes 4 values per frame" in info.value.details()


async def test_shipped_model_on_visual_embeddings(shared_data) -> None:
    require_shipped("visual")
    repo = require_shipped("temporal")
    crops = face_crops(shared_data, 8)
    visual_settings = VisualSettings(model_repo=repo, metrics_port=0)
    async with running(VisualServer(visual_settings), visual_settings) as visual:
        seen = await analyze(visual.port, [header(), *frame_requests([[c] for c in crops])])
    settings = TemporalSettings(model_repo=repo, metrics_port=0)
    async with running(TemporalServer(settings), settings) as temporal:
        result = await analyze(temporal.port, [header(), *(
            branch_pb2.BranchRequest(embedding=e) for e in seen.embeddings)])
    assert result.status == branch_pb2.OK, result.detail
    assert {e.source_model_sha256 for e in seen.embeddings} == {seen.model.sha256}
    assert 0.0 <= result.features["temporal_prob_fake"] <= 1.0
