"""The ingest gRPC service: protobuf in and out around `pipeline.ingest_upload`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import numpy as np
import torch
from grpc import aio

from deepfake.v1 import ingest_pb2, ingest_pb2_grpc, media_pb2
from dfmesh.runtime.errors import DfmeshError, NotReady
from dfmesh.runtime.logging import analysis_id_var
from dfmesh.runtime.server import BaseService
from dfmesh.runtime.tracing import annotate
from services.ingest.faces import FaceCrops, FaceDetector
from services.ingest.limits import IngestSlots
from services.ingest.pipeline import ingest_upload
from services.ingest.rejections import BadRequest
from services.ingest.results import (
    AudioResult,
    ClipFacts,
    DenseResult,
    IngestResult,
    SampledResult,
    SummaryResult,
    UploadRequest,
)
from services.ingest.settings import IngestSettings
from services.ingest.spool import extension_hint

log = logging.getLogger(__name__)

SERVICE_NAME = "deepfake.v1.IngestService"


def rgb_image(pixels: np.ndarray) -> media_pb2.Image:
    """An HxWx3 uint8 array as a RAW_RGB8 Image."""
    h, w = pixels.shape[:2]
    return media_pb2.Image(width=w, height=h, encoding=media_pb2.Image.RAW_RGB8,
                           data=np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())


def face_message(face: FaceCrops) -> media_pb2.Face:
    det = face.detection
    return media_pb2.Face(
        box=media_pb2.BoundingBox(x1=det.box.x1, y1=det.box.y1, x2=det.box.x2, y2=det.box.y2),
        score=det.score,
        landmarks=[media_pb2.Point(x=float(x), y=float(y)) for x, y in det.landmarks],
        crop=rgb_image(face.crop), mouth_crop=rgb_image(face.mouth))


def to_packet(result: IngestResult) -> media_pb2.MediaPacket:
    """One pipeline result as a MediaPacket."""
    match result:
        case ClipFacts(probe=p):
            return media_pb2.MediaPacket(clip_info=media_pb2.ClipInfo(
                analysis_id=result.analysis_id, kind=media_pb2.MediaKind.Value(p.kind.value),
                container=p.container, video_codec=p.video_codec, audio_codec=p.audio_codec,
                duration_seconds=p.duration_seconds, fps=p.fps, width=p.width, height=p.height,
                frame_count=p.frame_count, has_video=p.kind.value != "AUDIO",
                has_audio=p.has_audio, audio_sample_rate=p.audio_sample_rate,
                transcoded=result.transcoded, sha256=result.sha256,
                size_bytes=result.size_bytes))
        case SampledResult():
            frame = media_pb2.SampledFrame(
                index=result.index, frame_number=result.frame_number,
                timestamp_seconds=result.timestamp_seconds,
                faces=[face_message(f) for f in result.faces])
            if result.full_frame is not None:
                frame.frame.CopyFrom(rgb_image(result.full_frame))
            return media_pb2.MediaPacket(frame=frame)
        case DenseResult():
            dense = media_pb2.DenseFrame(
                index=result.index, frame_number=result.frame_number,
                timestamp_seconds=result.timestamp_seconds, face_found=result.mouth is not None)
            if result.mouth is not None:
                dense.mouth_crop.CopyFrom(rgb_image(result.mouth))
            return media_pb2.MediaPacket(dense_frame=dense)
        case AudioResult():
            return media_pb2.MediaPacket(audio=media_pb2.AudioChunk(
                sample_rate=result.sample_rate, start_sample=result.start_sample,
                pcm_f32le=result.pcm_f32le))
        case SummaryResult():
            return media_pb2.MediaPacket(summary=media_pb2.IngestSummary(
                num_frames=result.num_frames, num_frames_with_face=result.num_frames_with_face,
                num_dense_frames=result.num_dense_frames,
                audio_num_samples=result.audio_num_samples,
                dense_start_seconds=result.dense_start_seconds,
                dense_end_seconds=result.dense_end_seconds, notes=result.notes,
                timings_ms=result.timings_ms))
    raise TypeError(f"unexpected ingest result {type(result).__name__}")


def upload_request(header: ingest_pb2.IngestHeader) -> UploadRequest:
    return UploadRequest(
        filename=header.upload.filename, declared_size=header.upload.declared_size,
        analysis_id=header.upload.analysis_id, num_frames=header.options.num_frames,
        dense_window_seconds=header.options.dense_window_seconds,
        include_full_frames=header.options.include_full_frames,
        full_frames_only_without_faces=header.options.full_frames_only_without_faces)


class UploadStream:
    """The client's request stream: the header, then data chunks."""

    def __init__(self, requests: AsyncIterator[ingest_pb2.IngestRequest]) -> None:
        self._requests = aiter(requests)
        self.finished = False

    async def header(self) -> ingest_pb2.IngestHeader:
        first = await anext(self._requests, None)
        if first is None:
            self.finished = True
        if first is None or first.WhichOneof("payload") != "header":
            raise BadRequest("the first message must be an IngestHeader "
                             "(file name, options), then the file as data chunks")
        return first.header

    async def chunks(self) -> AsyncIterator[bytes]:
        """The data payloads after the header; a second header is an error."""
        async for request in self._requests:
            if request.WhichOneof("payload") != "data":
                raise BadRequest("only the first message may be an IngestHeader; "
                                 "send the file as data chunks after it")
            yield request.data
        self.finished = True

    async def drain(self, max_bytes: int, max_seconds: float) -> None:
        """Read and drop what the client is still sending, within bounds.

        A grpc.aio client that is still writing when the server ends the call reports
        INTERNAL instead of the server's status (grpc/grpc#36066); once the client has
        finished sending, it reports the real code and message.
        """
        if self.finished or max_bytes <= 0 or max_seconds <= 0:
            return

        async def discard() -> None:
            received = 0
            async for request in self._requests:
                received += request.ByteSize()
                if received > max_bytes:
                    return

        with contextlib.suppress(Exception):
            await asyncio.wait_for(discard(), max_seconds)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, service: IngestService) -> None:
        self.service = service
        settings = service.settings
        self.slots = IngestSlots(settings.max_concurrent_ingests, settings.busy_retry_seconds)

    async def Ingest(self, request_iterator: AsyncIterator[ingest_pb2.IngestRequest],
                     context: aio.ServicerContext) -> AsyncIterator[media_pb2.MediaPacket]:
        settings = self.service.settings
        stream = UploadStream(request_iterator)
        try:
            async for packet in self._ingest(stream):
                yield packet
        except DfmeshError:
            await stream.drain(settings.reject_drain_bytes, settings.reject_drain_seconds)
            raise

    async def _ingest(self, stream: UploadStream) -> AsyncIterator[media_pb2.MediaPacket]:
        detector = self.service.detector
        if detector is None:
            raise NotReady("ingest is still loading its face detector; retry shortly",
                           retry_after_seconds=1.0)
        with self.slots.acquire():
            request = upload_request(await stream.header())
            if request.analysis_id:
                analysis_id_var.set(request.analysis_id)
            annotate(analysis__id=request.analysis_id)
            # The client's file name stays out of the logs (it can carry personal data).
            log.info("ingest started", extra={"extension": extension_hint(request.filename),
                                               "declared_size": request.declared_size})
            async for result in ingest_upload(request, stream.chunks(), self.service.settings,
                                              detector):
                yield to_packet(result)


class IngestService(BaseService):
    """Decodes uploads into frames, faces, mouth crops and audio; SERVING once MTCNN is warm."""

    name = "ingest"
    health_names = (SERVICE_NAME,)

    def __init__(self, settings: IngestSettings, detector: FaceDetector | None = None) -> None:
        self.settings = settings
        self._preloaded = detector
        self.detector: FaceDetector | None = None

    def register(self, server: aio.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(self), server)

    async def load(self) -> None:
        torch.set_num_threads(self.settings.torch_threads)
        s = self.settings
        detector = self._preloaded
        if detector is None:
            detector = await asyncio.to_thread(
                FaceDetector, s.detect_max_side, s.min_face_size, s.min_face_score,
                s.max_faces_per_frame, s.mtcnn_backend, s.torch_threads)
        await asyncio.to_thread(detector.warm_up)
        self.detector = detector
