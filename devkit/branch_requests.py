"""BranchRequest streams (header, frames with face crops, audio chunks, dense mouth
frames, clip info) and the call that streams one to a branch service on loopback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from grpc import aio

from deepfake.v1 import branch_pb2, branch_pb2_grpc, media_pb2


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
