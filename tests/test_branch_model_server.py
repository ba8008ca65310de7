"""The model-server base: load with checksum verification, health, readiness, batching, and
the stream -> plain Python translation every branch shares."""

from __future__ import annotations

import asyncio
import shutil

import grpc
import numpy as np
import pytest
from grpc import aio
from prometheus_client import REGISTRY

from deepfake.v1 import media_pb2
from dfmesh.preprocess import waveform
from dfmesh.runtime.branch_inputs import (
    FrameInput,
    assemble_pcm,
    decode_image,
    select_face_crops,
)
from dfmesh.runtime.errors import InvalidInput, LimitExceeded, ModelIntegrityError
from dfmesh.runtime.onnx_session import CPU, CUDA, choose_providers, slice_batches, warmup_shape
from dfmesh.runtime.server import create_server, running, start_service
from services.audio.service import AudioServer, AudioSettings
from services.visual.service import VisualServer, VisualSettings
from tests.branch_support import (
    NOT_SERVING,
    SERVING,
    analyze,
    build_model,
    frame_requests,
    header,
    health_status,
)

BRANCH = "deepfake.v1.BranchService"
CROP = np.full((256, 256, 3), 120, np.uint8)


@pytest.fixture
def visual_repo(tmp_path):
    build_model(tmp_path / "visual" / "1.0.0", "visual", {"image": ["N", 3, 224, 224]},
                {"image": "ReduceMean"}, extra_outputs=("embedding",))
    return tmp_path


def settings(repo, **overrides) -> VisualSettings:
    return VisualSettings(model_repo=repo, metrics_port=0, **overrides)


async def test_not_serving_and_unavailable_until_loaded(visual_repo) -> None:
    service = VisualServer(settings(visual_repo))
    server = await create_server(service, service.settings, port=0)
    try:
        assert await health_status(server.port) == NOT_SERVING
        assert await health_status(server.port, BRANCH) == NOT_SERVING
        with pytest.raises(aio.AioRpcError) as info:
            await analyze(server.port, [header(), *frame_requests([[CROP]])])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in info.value.details()
        await service.load()  # what start_service does before reporting SERVING
        await server.set_serving(True)
        assert service.ready and service.provider == CPU
        assert await health_status(server.port, BRANCH) == SERVING
        result = await analyze(server.port, [header(), *frame_requests([[CROP]])])
        assert result.model.name == "visual-known-function" and result.model.version == "1.0.0"
        assert result.model.provider == CPU
    finally:
        await server.drain_and_stop(0.5)


async def test_tampered_artifact_refuses_to_start(visual_repo, tmp_path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(visual_repo / "visual", tampered / "visual")
    artifact = tampered / "visual" / "1.0.0" / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    service = VisualServer(settings(tampered))
    with pytest.raises(ModelIntegrityError, match="checksum mismatch.*refusing"):
        await start_service(service, service.settings, port=0)
    assert not service.ready and service.session is None


async def test_missing_version_and_wrong_signature_refuse_to_start(visual_repo, tmp_path) -> None:
    with pytest.raises(ModelIntegrityError, match="version 9.9.9 not found"):
        await VisualServer(settings(visual_repo, model_version="9.9.9")).load()
    # A model without the "embedding" output cannot serve visual.
    build_model(tmp_path / "bad" / "visual" / "2.0.0", "visual",
                {"image": ["N", 3, 224, 224]}, {"image": "ReduceMean"})
    with pytest.raises(ModelIntegrityError, match="lacks embedding"):
        await VisualServer(settings(tmp_path / "bad")).load()


async def test_latest_version_is_served_and_reported_in_metrics(visual_repo) -> None:
    build_model(visual_repo / "visual" / "1.10.0", "visual", {"image": ["N", 3, 224, 224]},
                {"image": "ReduceMean"}, extra_outputs=("embedding",), version="1.10.0")
    service = VisualServer(settings(visual_repo))
    async with running(service, service.settings) as server:
        result = await analyze(server.port, [header(), *frame_requests([[CROP], [CROP]])])
    assert result.model.version == "1.10.0"
    assert set(result.timings_ms) >= {"collect", "preprocess", "inference", "total"}
    assert result.timings_ms["total"] >= result.timings_ms["inference"] > 0
    sample = REGISTRY.get_sample_value
    assert sample("deepfake_model_info", {
        "branch": "visual", "model": "visual-known-function", "version": "1.10.0",
        "sha256": result.model.sha256[:12], "provider": CPU}) == 1
    assert sample("deepfake_inference_seconds_count",
                  {"branch": "visual", "model_version": "1.10.0"}) >= 1
    assert sample("deepfake_branch_results_total", {"branch": "visual", "status": "OK"}) >= 1


async def test_requests_are_served_while_another_is_computing(visual_repo) -> None:
    service = VisualServer(settings(visual_repo, max_batch_size=2))
    async with running(service, service.settings) as server:
        many = [header(), *frame_requests([[CROP, CROP]] * 8)]
        results = await asyncio.gather(*(analyze(server.port, many) for _ in range(3)),
                                       health_status(server.port, BRANCH))
    assert results[-1] == SERVING
    assert all(r.features["visual_num_faces"] == 16 for r in results[:3])


def test_provider_choice() -> None:
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    with pytest.raises(ModelIntegrityError, match="onnxruntime-gpu"):
        choose_providers("cuda", [CPU])


def test_slice_batches_keeps_feeds_aligned() -> None:
    feeds = {"a": np.arange(10), "b": np.arange(10) * 2}
    parts = slice_batches(feeds, 4)
    assert [len(p["a"]) for p in parts] == [4, 4, 2]
    assert all((p["b"] == p["a"] * 2).all() for p in parts)


def test_decode_image_rejects_unusable_images() -> None:
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = media_pb2.Image(width=6, height=4, encoding=media_pb2.Image.RAW_RGB8,
                            data=rgb.tobytes())
    assert (decode_image(image, "crop") == rgb).all()
    short = media_pb2.Image(width=6, height=5, encoding=media_pb2.Image.RAW_RGB8,
                            data=rgb.tobytes())
    with pytest.raises(InvalidInput, match="needs 90 bytes, got 72"):
        decode_image(short, "crop")
    garbage = media_pb2.Image(encoding=media_pb2.Image.JPEG, data=b"not a jpeg")
    with pytest.raises(InvalidInput, match="not a decodable JPEG"):
        decode_image(garbage, "crop")
    with pytest.raises(InvalidInput, match="ENCODING_UNSPECIFIED is not supported"):
        decode_image(media_pb2.Image(width=1, height=1, data=b"\0\0\0"), "crop")


def test_assemble_pcm_places_chunks_and_limits_length() -> None:
    pcm = assemble_pcm([(4, np.ones(2, np.float32)), (0, np.full(2, 0.5, np.float32))],
                       16_000, 1.0)
    assert pcm.tolist() == [0.5, 0.5, 0.0, 0.0, 1.0, 1.0]
    with pytest.raises(LimitExceeded, match="at most 1 s"):
        assemble_pcm([(16_000, np.ones(10, np.float32))], 16_000, 1.0)


def test_face_crops_fall_back_to_centre_crops_only_without_any_face() -> None:
    face = np.full((256, 256, 3), 7, np.uint8)
    full = np.zeros((240, 320, 3), np.uint8)
    full[40:200, 80:240] = 200  # holds the centre box: 0.6 x 240 = 144 px around (160, 120)
    with_faces = select_face_crops(
        [FrameInput(0, 0.0, [face, face, face]), FrameInput(1, 0.5, [], full)], 2)
    assert with_faces.labels == ["frame:0/face:0", "frame:0/face:1"]
    assert not with_faces.fallback and with_faces.num_faces == 2
    fallback = select_face_crops([FrameInput(0, 0.0, [], full), FrameInput(1, 0.5)], 2)
    assert fallback.fallback and fallback.num_faces == 0
    assert fallback.labels == ["frame:0/centre"]
    assert fallback.crops[0].shape == (256, 256, 3) and (fallback.crops[0] == 200).all()
    assert select_face_crops([FrameInput(0, 0.0)], 2).crops == []


def test_warmup_shape_fills_dynamic_axes() -> None:
    assert warmup_shape(["batch", 3, "height", "width"], (64, 3, 32, 32)) == [64, 3, 32, 32]
    assert warmup_shape(["N", 3, 224, 224]) == [1, 3, 224, 224]
    assert warmup_shape([1, "T", 512], (1, 16, None)) == [1, 16, 512]


async def test_model_trained_on_other_preprocessing_is_refused(tmp_path) -> None:
    trained_on = {**waveform.PREPROCESSING, "window_samples": 48_000}
    build_model(tmp_path / "audio" / "2.0.0", "audio",
                {"waveform": ["N", 48_000]}, {"waveform": "ReduceMax"},
                preprocessing=trained_on)
    service = AudioServer(AudioSettings(model_repo=tmp_path, metrics_port=0))
    with pytest.raises(ModelIntegrityError,
                       match=r"other preprocessing.*window_samples: model 48000"):
        await service.load()


def test_feeds_that_do_not_fit_the_model_are_a_server_fault(visual_repo) -> None:
    service = VisualServer(settings(visual_repo))
    service.load_model()
    with pytest.raises(ModelIntegrityError, match=r"image is \['N', 3, 224, 224\] but "
                                                  r"preprocessing made \[2, 3, 256, 256\]"):
        service.predict({"image": np.zeros((2, 3, 256, 256), np.float32)})
