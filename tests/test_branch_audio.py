"""audio against a real server: waveform-window scores on real speech, no audio, malformed PCM,
and the shipped AASIST model end to end on a real LibriSpeech file."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.errors import ModelIntegrityError
from dfmesh.preprocess import speech_stats, waveform
from dfmesh.runtime.server import running
from services.audio.service import AudioServer, AudioSettings
from tests.branch_support import (
    analyze,
    audio_requests,
    build_model,
    clip_info,
    decode_pcm,
    header,
    media,
    require_shipped,
    sigmoid,
    speech_file,
)


@pytest.fixture
async def server(tmp_path):
    build_model(tmp_path / "audio" / "2.0.0", "audio",
                {"waveform": ["W", waveform.WINDOW_SAMPLES]}, {"waveform": "ReduceMax"},
                preprocessing=waveform.PREPROCESSING)
    settings = AudioSettings(model_repo=tmp_path, metrics_port=0)
    async with running(AudioServer(settings), settings) as running_server:
        yield running_server


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    pcm = decode_pcm(speech_file(shared_data), seconds=10.0)
    assert pcm.size > 2 * waveform.WINDOW_SAMPLES, "expected a LibriSpeech utterance over 8 s"
    return pcm


async def test_prob_is_the_mean_of_window_scores(server, speech) -> None:
    result = await analyze(server.port, [header(), clip_info(True), *audio_requests(speech)])
    windows = waveform.waveform_windows(speech)
    probs = sigmoid(windows.max(axis=1))
    assert result.status == branch_pb2.OK and len(probs) == 3
    assert set(result.features) == {"audio_prob_fake"}
    assert result.features["audio_prob_fake"] == pytest.approx(probs.mean(), abs=1e-6)
    assert result.prob_fake == result.features["audio_prob_fake"]
    assert [s.item for s in result.item_scores] == ["window:0", "window:1", "window:2"]
    assert [s.prob_fake for s in result.item_scores] == pytest.approx(probs, abs=1e-6)
    starts = waveform.window_starts(speech.size)
    assert [s.timestamp_seconds for s in result.item_scores] == pytest.approx(
        [s / waveform.SAMPLE_RATE for s in starts])


async def test_chunks_out_of_order_give_the_same_answer(server, speech) -> None:
    chunks = audio_requests(speech[: 3 * waveform.SAMPLE_RATE])
    forward = await analyze(server.port, [header(), *chunks])
    backward = await analyze(server.port, [header(), *reversed(chunks)])
    assert forward.prob_fake == backward.prob_fake


async def test_no_audio_is_no_input(server) -> None:
    silent_clip = await analyze(server.port, [header(), clip_info(False)])
    assert silent_clip.status == branch_pb2.NO_INPUT
    assert silent_clip.detail == "the clip has no audio track"
    assert (await analyze(server.port, [header()])).detail == "no audio was sent"


async def test_malformed_pcm_is_invalid_argument(server) -> None:
    odd = media(audio=media_pb2.AudioChunk(sample_rate=16_000, pcm_f32le=b"\0" * 4001))
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), odd])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4001 bytes is not a whole number of float32 samples" in info.value.details()
    wrong_rate = audio_requests(np.zeros(44_100, np.float32), sample_rate=44_100)
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(server.port, [header(), *wrong_rate])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "16000 Hz, got 44100" in info.value.details()


async def test_shipped_model(speech) -> None:
    repo = require_shipped("audio")
    settings = AudioSettings(model_repo=repo, metrics_port=0)
    async with running(AudioServer(settings), settings) as running_server:
        result = await analyze(running_server.port, [header(), *audio_requests(speech)])
    assert result.status == branch_pb2.OK and len(result.item_scores) == 3
    assert 0.0 <= result.features["audio_prob_fake"] <= 1.0
    assert result.model.name.startswith("audio-aasist")


def _head(seed: int = 0) -> speech_stats.StatisticsHead:
    rng = np.random.default_rng(seed)
    n = len(speech_stats.FEATURE_NAMES)
    return speech_stats.StatisticsHead(rng.normal(size=n), rng.uniform(0.5, 2.0, n),
                                       rng.normal(0, 0.1, n), 0.3,
                                       {"bias": -0.2, "aasist": 0.8, "statistics": 0.6})


async def test_statistics_head_is_stacked_with_the_windows(tmp_path, speech) -> None:
    head = _head()
    build_model(tmp_path / "audio" / "2.1.0", "audio",
                {"waveform": ["W", waveform.WINDOW_SAMPLES]}, {"waveform": "ReduceMax"},
                version="2.1.0", preprocessing=waveform.PREPROCESSING,
                statistics_head=head.to_manifest())
    settings = AudioSettings(model_repo=tmp_path, metrics_port=0)
    async with running(AudioServer(settings), settings) as running_server:
        result = await analyze(running_server.port,
                               [header(), clip_info(True), *audio_requests(speech)])
    windows_mean = float(sigmoid(waveform.waveform_windows(speech).max(axis=1)).mean())
    expected = head.prob_fake(windows_mean, speech_stats.speech_statistics(speech))
    assert result.status == branch_pb2.OK
    assert result.features["audio_prob_fake"] == pytest.approx(expected, abs=1e-5)
    assert abs(expected - windows_mean) > 1e-3, "the head must change the answer"
    assert [s.prob_fake for s in result.item_scores] == pytest.approx(
        sigmoid(waveform.waveform_windows(speech).max(axis=1)), abs=1e-6)


async def test_a_head_for_other_features_is_refused(tmp_path) -> None:
    wrong = _head().to_manifest() | {"features": ["something", "else"]}
    build_model(tmp_path / "audio" / "2.1.0", "audio",
                {"waveform": ["W", waveform.WINDOW_SAMPLES]}, {"waveform": "ReduceMax"},
                version="2.1.0", preprocessing=waveform.PREPROCESSING, statistics_head=wrong)
    server = AudioServer(AudioSettings(model_repo=tmp_path, metrics_port=0))
    with pytest.raises(ModelIntegrityError, match="statistics_head"):
        server.load_model()
