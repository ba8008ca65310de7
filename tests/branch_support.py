"""Helpers for the branch service tests: the shared kit (devkit: known-function ONNX models,
real media, BranchRequest streams, the branch call) and what only tests need (skips,
health answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.branch_requests import (
    analyze,
    audio_requests,
    clip_info,
    dense_requests,
    frame_requests,
    header,
    media,
    raw_image,
)
from devkit.known_models import OPSET, SHIPPED_MODELS, build_model
from devkit.media import (
    decode_pcm,
    dense_mouths,
    face_crops,
    full_frames,
    speech_file,
    talking_clip,
)
from dfmesh.runtime.config import REPO_ROOT

__all__ = ["NOT_SERVING", "OPSET", "REPO_ROOT", "SERVING", "SHIPPED_MODELS", "analyze",
           "audio_requests", "build_model", "clip_info", "decode_pcm", "dense_mouths",
           "dense_requests", "face_crops", "frame_requests", "full_frames", "header",
           "health_status", "media", "raw_image", "require_shipped", "sigmoid", "speech_file",
           "talking_clip"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def require_shipped(branch: str) -> Path:
    """The shipped model repository, or skip while models/<branch> has no version yet."""
    import pytest

    if not any((SHIPPED_MODELS / branch).glob("*/manifest.json")):
        pytest.skip(f"models/{branch} has no exported version yet (being trained)")
    return SHIPPED_MODELS


async def health_status(port: int, service: str = "") -> int:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return reply.status


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
