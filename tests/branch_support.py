"""Helpers for the branch service tests: small real ONNX models whose outputs are a known
function of their input, BranchRequest streams built from real media, and gRPC calls."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper

from deepfake.v1 import branch_pb2, branch_pb2_grpc, media_pb2
from dfmesh.preprocess.geometry import centre_crop_box, face_crop
from dfmesh.runtime.model_repo import write_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPO_ROOT / "models"
OPSET = 17


# --- test-built ONNX models ---

def _reduce(op: str, source: str, out: str, axes: list[int]) -> list[onnx.NodeProto]:
    """[N, ...] -> [N, 1]: `op` (ReduceMean / ReduceMax) over `axes`, flattened."""
    return [helper.make_node(op, [source], [out + "_r"], axes=axes, keepdims=1),
            helper.make_node("Flatten", [out + "_r"], [out], axis=1)]


def build_model(version_dir: Path, branch: str, inputs: dict[str, list[int | str]],
                reduce_ops: dict[str, str], extra_outputs: Sequence[str] = (),
                version: str = "1.0.0", preprocessing: dict | None = None,
                **manifest_extra: Any) -> Path:
    """An ONNX model whose logit is the sum over inputs of reduce_ops[name](input) over all
    non-batch axes, written with a real manifest. extra_outputs may name "embedding" (the
    per-channel spatial mean, [N, C]) and "mri_map" (sigmoid of the input)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    nodes, terms = [], []
    for name, shape in inputs.items():
        nodes += _reduce(reduce_ops[name], name, f"{name}_term", list(range(1, len(shape))))
        terms.append(f"{name}_term")
    if len(terms) == 1:
        nodes.append(helper.make_node("Identity", terms, ["logit"]))
    else:
        nodes.append(helper.make_node("Sum", terms, ["logit"]))
    first = next(iter(inputs))
    outputs = [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])]
    if "embedding" in extra_outputs:
        nodes += _reduce("ReduceMean", first, "embedding", [2, 3])
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]))
    if "mri_map" in extra_outputs:
        nodes.append(helper.make_node("Sigmoid", [first], ["mri_map"]))
        outputs.append(helper.make_tensor_value_info("mri_map", TensorProto.FLOAT,
                                                     inputs[first]))
    graph = helper.make_graph(
        nodes, f"{branch}_known_function",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, version_dir / "model.onnx")
    write_manifest(
        version_dir, name=f"{branch}-known-function", branch=branch, version=version,
        fmt="onnx", artifact="model.onnx",
        inputs=[{"name": n, "shape": s, "dtype": "float32"} for n, s in inputs.items()],
        outputs=[{"name": o.name, "shape": ["N"], "dtype": "float32"} for o in outputs],
        preprocessing=preprocessing or {"test": "logit = reduction of the input"},
        training_data="none: built by the test", metrics={}, **manifest_extra)
    return version_dir


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def require_shipped(branch: str) -> Path:
    """The shipped model repository, or skip while models/<branch> has no version yet."""
    import pytest

    if not any((SHIPPED_MODELS / branch).glob("*/manifest.json")):
        pytest.skip(f"models/{branch} has no exported version yet (being trained)")
    return SHIPPED_MODELS


# --- real media ---

def face_crops(shared_data: Path, count: int) -> list[np.ndarray]:
    """256x256 RGB crops cut from real photographs in faces/ (their centre, where the
    portrait's face is) with the shared face-crop geometry."""
    crops = []
    for path in sorted((shared_data / "faces").glob("*.jpg"))[:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        crops.append(face_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                               centre_crop_box(w, h, 0.45)))
    return crops


def full_frames(shared_data: Path, count: int) -> list[np.ndarray]:
    """Whole RGB photographs (for the no-face fallback), downscaled to 320 px wide."""
    frames = []
    for path in sorted((shared_data / "faces").glob("*.jpg"))[:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        scale = 320 / bgr.shape[1]
        bgr = cv2.resize(bgr, (320, int(round(bgr.shape[0] * scale))))
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def decode_pcm(path: Path, seconds: float, sample_rate: int = 16_000) -> np.ndarray:
    """Mono float32 PCM of the first `seconds` of a media file, decoded by ffmpeg."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
           "-t", f"{seconds}", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(out, dtype="<f4").copy()


def speech_file(shared_data: Path) -> Path:
    return sorted((shared_data / "speech" / "librispeech").glob("*.flac"))[0]


def talking_clip(shared_data: Path) -> Path:
    return sorted((shared_data / "talking").glob("lipnet__GRID_*.mpg"))[0]


def dense_mouths(clip: Path, seconds: float) -> tuple[list[np.ndarray], list[float]]:
    """96x96 RGB crops of the lower-centre face region (where GRID speakers' mouths are) of
    every frame in the first `seconds` of a talking clip, with their timestamps."""
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    crops, stamps = [], []
    while len(crops) < int(seconds * fps):
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        region = bgr[int(0.55 * h):int(0.85 * h), int(0.35 * w):int(0.65 * w)]
        crops.append(cv2.cvtColor(cv2.resize(region, (96, 96)), cv2.COLOR_BGR2RGB))
        stamps.append(len(stamps) / fps)
    cap.release()
    return crops, stamps


# --- request streams ---

def raw_image(pixels: np.ndarray) -> media_pb2.Image:
    h, w = pixels.shape[:2]
    return media_pb2.Image(width=w, height=h, encoding=media_pb2.Image.RAW_RGB8,
                           data=np.ascontiguousarray(pixels).tobytes())


def header(analysis_id: str = "test") -> branch_pb2.BranchRequest:
    return branch_pb2.BranchRequest(header=branch_pb2.BranchHeader(analysis_id=analysis_id))


def media(**payload: object) -> branch_pb2.BranchRequest:
    return branch_pb2.BranchRequest(media=media_pb2.MediaPacket(**payload))


def frame_requests(crops_per_frame: Sequence[Sequence[np.ndarray]],
                   full: Sequence[np.ndarray | None] = ()) -> list[branch_pb2.BranchRequest]:
    """One SampledFrame per entry (0.5 s apart) with its face crops and optional full frame."""
    out = []
    for i, crops in enumerate(crops_per_frame):
        frame = media_pb2.SampledFrame(
            index=i, frame_number=12 * i, timestamp_seconds=0.5 * i,
            faces=[media_pb2.Face(score=0.99, crop=raw_image(c)) for c in crops])
        if i < len(full) and full[i] is not None:
            frame.frame.CopyFrom(raw_image(full[i]))
        out.append(media(frame=frame))
    return out


def audio_requests(pcm: np.ndarray, sample_rate: int = 16_000,
                   chunk_seconds: float = 1.0) -> list[branch_pb2.BranchRequest]:
    step = int(chunk_seconds * sample_rate)
    return [media(audio=media_pb2.AudioChunk(sample_rate=sample_rate, start_sample=s,
                                             pcm_f32le=pcm[s:s + step].astype("<f4").tobytes()))
            for s in range(0, len(pcm), step)]


def dense_requests(mouths: Sequence[np.ndarray | None],
                   stamps: Sequence[float]) -> list[branch_pb2.BranchRequest]:
    out = []
    for i, (m, t) in enumerate(zip(mouths, stamps, strict=True)):
        dense = media_pb2.DenseFrame(index=i, frame_number=i, timestamp_seconds=t,
                                     face_found=m is not None)
        if m is not None:
            dense.mouth_crop.CopyFrom(raw_image(m))
        out.append(media(dense_frame=dense))
    return out


def clip_info(has_audio: bool) -> branch_pb2.BranchRequest:
    return media(clip_info=media_pb2.ClipInfo(kind=media_pb2.VIDEO, has_video=True,
                                              has_audio=has_audio))


# --- calls ---

async def analyze(port: int, requests: Iterable[branch_pb2.BranchRequest],
                  timeout: float = 30.0) -> branch_pb2.BranchResult:
    """Stream `requests` to BranchService.Analyze on 127.0.0.1:port."""
    async with aio.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = branch_pb2_grpc.BranchServiceStub(channel)

        async def stream():
            for request in requests:
                yield request

        return await stub.Analyze(stream(), timeout=timeout)


async def health_status(port: int, service: str = "") -> int:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return reply.status


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
