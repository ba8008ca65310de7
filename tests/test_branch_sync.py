"""sync against a real server on a real talking clip: window scores, missing mouths or
audio, malformed dense frames."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2
from dfmesh.preprocess import mouth
from dfmesh.runtime.server import running
from services.sync.service import SyncServer, SyncSettings
from tests.branch_support import (
    analyze,
    audio_requests,
    build_model,
    clip_info,
    decode_pcm,
    dense_mouths,
    dense_requests,
    header,
    require_shipped,
    sigmoid,
    talking_clip,
)

SECONDS = 2.5


@pytest.fixture
async def server(tmp_path):
    build_model(tmp_path / "sync" / "1.0.0", "sync",
                {"mouth": ["N", mouth.WINDOW_FRAMES, mouth.MOUTH_SIZE, mouth.MOUTH_SIZE],
                 "audio": ["N", mouth.N_MELS, mouth.MEL_FRAMES]},
                {"mouth": "ReduceMax", "audio": "ReduceMean"})
    settings = SyncSettings(model_repo=tmp_path, metrics_port=0)
    async with running(SyncServer(settings), settings) as running_server:
        yield running_server


@pytest.fixture(scope="module")
def talking(shared_data) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    clip = talking_clip(shared_data)
    crops, stamps = dense_mouths(clip, SECONDS)
    return crops, stamps, decode_pcm(clip, SECONDS)


async def test_sync_prob_is_the_mean_in_sync_probability(server, talking) -> None:
    crops, stamps, pcm = talking
    result = await analyze(server.port, [header(), *dense_requests(crops, stamps),
                                         *audio_requests(pcm)])
    mouths, audio = mouth.sync_inputs(crops, stamps, pcm)
    in_sync = sigmoid(mouths.max(axis=(1, 2, 3)).astype(np.float64)
                      + audio.mean(axis=(1, 2), dtype=np.float64))
    assert result.status == branch_pb2.OK and len(in_sync) > 10
    assert dict(result.features) == pytest.approx({"sync_prob": in_sync.mean()}, abs=1e-5)
    assert result.prob_fake == pytest.approx(1.0 - result.features["sync_prob"])
    assert [s.prob_fake for s in result.item_scores] == pytest.approx(1.0 - in_sync, abs=1e-5)
    centres = mouth.window_centres(np.array(stamps), pcm.size / mouth.SAMPLE_RATE)
    assert [s.timestamp_seconds for s in result.item_scores] == pytest.approx(centres)


async def test_frames_without_a_face_drop_their_windows(server, talking) -> None:
    crops, stamps, pcm = talking
    holed = [None if 20 <= i < 30 else c for i, c in enumerate(crops)]
    full = await analyze(server.port, [header(), *dense_requests(crops, stamps),
                                       *audio_requests(pcm)])
    result = await analyze(server.port, [header(), *dense_requests(holed, stamps),
                                         *audio_requests(pcm)])
    assert result.status == branch_pb2.OK
    assert 0 < len(result.item_scores) < len(full.item_scores)


async def test_no_mouths_or_no_audio_is_no_input(server, talking) -> None:
    crops, stamps, pcm = talking
    no_face = await analyze(server.port, [header(), *dense_requests([None] * len(stamps), stamps),
                                          *audio_requests(pcm)])
    assert no_face.status == branch_pb2.NO_INPUT and "no mouth crops" in no_face.detail
    no_audio = await analyze(server.port, [header(), clip_info(False),
                                           *dense_requests(crops, stamps)])
    assert no_audio.status == branch_pb2.NO_INPUT and "no audio track" in no_audio.detail


async def test_repeated_timestamps_are_invalid_argument(server, talking) -> None:
    crops, stamps, pcm = talking
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), *dense_requests(crops[:10], [0.0] * 10),
                                    *audio_requests(pcm)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "strictly increasing" in info.value.details()


async def test_shipped_model(talking) -> None:
    repo = require_shipped("sync")
    crops, stamps, pcm = talking
    settings = SyncSettings(model_repo=repo, metrics_port=0)
    async with running(SyncServer(settings), settings) as running_server:
        result = await analyze(running_server.port, [header(), *dense_requests(crops, stamps),
                                                     *audio_requests(pcm)])
    assert result.status == branch_pb2.OK
    assert 0.0 <= result.features["sync_prob"] <= 1.0
    assert result.prob_fake == pytest.approx(1.0 - result.features["sync_prob"])
