"""Micro-batching: the batcher's joining, splitting and error isolation on a plain function,
then real branch servers on loopback (test-built ONNX models with known outputs, real face
crops) answering concurrent requests from shared session runs exactly as they answer them
one at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from deepfake.v1 import branch_pb2
from dfmesh.runtime.batching import MicroBatcher
from dfmesh.runtime.server import running
from services.temporal.service import TemporalServer, TemporalSettings
from services.visual.service import VisualServer, VisualSettings
from tests.branch_support import analyze, build_model, face_crops, frame_requests, header
from tests.fusion_support import EMBEDDING_SIZE


def row_sums(calls: list[int]):
    """A model stand-in: one output row per input row; refuses NaN rows."""
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["x"]
        calls.append(len(x))
        if np.isnan(x).any():
            raise ValueError("NaN in the input")
        return {"y": x.reshape(len(x), -1).sum(axis=1, keepdims=True)}
    return run


async def test_concurrent_requests_share_one_run_and_get_their_own_rows() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(row_sums(calls), window_seconds=0.2, max_rows=64)
    inputs = [np.full((n, 3), float(n)) for n in (1, 2, 3, 4)]
    outputs = await asyncio.gather(*(batcher.predict({"x": x}) for x in inputs))
    assert calls == [10]
    for x, out in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(out["y"], x.sum(axis=1, keepdims=True))
    assert (batcher.session_runs, batcher.requests_served) == (1, 4)


async def test_full_batch_goes_at_once_and_other_shapes_wait_for_their_own() -> None:
    calls: list[int] = []
    # An hour-long window: a full batch that waited for it would never finish here.
    batcher = MicroBatcher(row_sums(calls), window_seconds=3600.0, max_rows=4)
    results = await asyncio.wait_for(asyncio.gather(batcher.predict({"x": np.ones((2, 3))}),
                                                    batcher.predict({"x": np.ones((2, 3))})),
                                     timeout=300)
    assert calls == [4] and all(r["y"].shape == (2, 1) for r in results)
    calls.clear()
    batcher.window_seconds = 0.05
    a, b = await asyncio.gather(batcher.predict({"x": np.ones((1, 3))}),
                                batcher.predict({"x": np.ones((1, 5))}))
    assert sorted(calls) == [1, 1] and a["y"][0, 0] == 3 and b["y"][0, 0] == 5


async def test_a_failing_request_fails_alone() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(row_sums(calls), window_seconds=0.2, max_rows=64)
    bad = np.ones((2, 3))
    bad[1, 1] = np.nan
    good, failed, other = await asyncio.gather(
        batcher.predict({"x": np.ones((1, 3))}), batcher.predict({"x": bad}),
        batcher.predict({"x": np.full((3, 3), 2.0)}), return_exceptions=True)
    assert isinstance(failed, ValueError)
    np.testing.assert_array_equal(good["y"], [[3.0]])
    np.testing.assert_array_equal(other["y"], [[6.0]] * 3)
    assert calls[0] == 6  # the joined run was tried first, then each request alone


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    build_model(tmp_path / "visual" / "1.0.0", "visual", {"image": ["N", 3, 224, 224]},
                {"image": "ReduceMean"}, extra_outputs=("embedding",))
    build_model(tmp_path / "temporal" / "1.0.0", "temporal",
                {"embeddings": [1, "T", EMBEDDING_SIZE]}, {"embeddings": "ReduceMean"})
    return tmp_path


async def test_visual_server_batches_concurrent_requests(repo: Path, shared_data: Path) -> None:
    crops = face_crops(shared_data, 8)
    streams = [[header(f"a{i}"), *frame_requests([[c] for c in crops[i:i + 1 + i % 3]])]
               for i in range(4)]
    settings = VisualSettings(model_repo=repo, metrics_port=0, batch_window_ms=300,
                              max_concurrent_inferences=4, max_batch_size=16)
    async with running(VisualServer(settings), settings) as server:
        model = server.service
        assert isinstance(model, VisualServer) and model.batcher is not None
        alone = [await analyze(server.port, s) for s in streams]
        runs_before = model.batcher.session_runs
        together = await asyncio.gather(*(analyze(server.port, s) for s in streams))
        shared_runs = model.batcher.session_runs - runs_before
    assert shared_runs < len(streams)
    for a, b in zip(alone, together, strict=True):
        assert b.status == branch_pb2.OK
        assert [s.prob_fake for s in b.item_scores] == pytest.approx(
            [s.prob_fake for s in a.item_scores], abs=1e-6)
        assert b.prob_fake == pytest.approx(a.prob_fake, abs=1e-6)
        np.testing.assert_allclose([list(e.values) for e in b.embeddings],
                                   [list(e.values) for e in a.embeddings], atol=1e-6)


async def test_fixed_batch_axis_is_not_batched(repo: Path) -> None:
    settings = TemporalSettings(model_repo=repo, metrics_port=0)
    async with running(TemporalServer(settings), settings) as server:
        assert server.service.batcher is None
