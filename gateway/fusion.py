"""One Analyze call to the fusion orchestrator: the upload goes out as a header and data
chunks while progress events come back; the call ends with exactly one result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepfake.v1 import branch_pb2, media_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from gateway.errors import ApiError, error_from_rpc

STAGE_NAMES: dict[int, str] = {
    orchestrator_pb2.STAGE_UNSPECIFIED: "Queued",
    orchestrator_pb2.QUEUED: "Queued",
    orchestrator_pb2.EXTRACTING_FRAMES: "Extracting frames",
    orchestrator_pb2.RUNNING_MODELS: "Running models",
    orchestrator_pb2.FINAL_CLASSIFICATION: "Final classification",
}
"""The first source design's stage names, which existing clients show."""

ProgressHandler = Callable[[dict[str, Any]], Awaitable[None]]


def progress_to_dict(progress: orchestrator_pb2.Progress) -> dict[str, Any]:
    """A Progress event as the JSON the REST API and the SSE stream carry."""
    return {
        "stage": orchestrator_pb2.Stage.Name(progress.stage),
        "stageName": STAGE_NAMES.get(progress.stage, "Running models"),
        "percent": round(float(progress.percent), 1),
        "message": progress.message,
        "branch": progress.branch,
    }


def result_to_dict(result: orchestrator_pb2.AnalysisResult) -> dict[str, Any]:
    """An AnalysisResult as camelCase JSON: verdict and confidence first (the first source
    design's keys), then the full breakdown."""
    branches = {}
    for name, report in result.branches.items():
        branches[name] = {
            "status": branch_pb2.BranchStatus.Name(report.status),
            "probFake": report.prob_fake,
            "features": dict(report.features),
            "model": {"name": report.model.name, "version": report.model.version,
                      "sha256": report.model.sha256, "provider": report.model.provider},
            "detail": report.detail,
            "latencyMs": report.latency_ms,
        }
    clip = result.clip
    return {
        "verdict": {orchestrator_pb2.DEEPFAKE: "Deepfake",
                    orchestrator_pb2.AUTHENTIC: "Authentic"}.get(result.verdict, "Unknown"),
        "confidence": round(result.confidence, 2),
        "probFake": result.prob_fake,
        "threshold": result.threshold,
        "features": dict(result.features),
        "branches": branches,
        "missingBranches": list(result.missing_branches),
        "degraded": result.degraded,
        "earlyExit": result.early_exit,
        "explanation": result.explanation,
        "timingsMs": dict(result.timings_ms),
        "fusionMode": orchestrator_pb2.FusionMode.Name(result.fusion_mode),
        "fusionHead": result.fusion_head,
        "analysisId": result.analysis_id,
        "traceId": result.trace_id,
        "clip": {
            "kind": media_pb2.MediaKind.Name(clip.kind), "container": clip.container,
            "durationSeconds": clip.duration_seconds, "fps": clip.fps,
            "width": clip.width, "height": clip.height,
            "hasVideo": clip.has_video, "hasAudio": clip.has_audio,
            "transcoded": clip.transcoded, "sizeBytes": clip.size_bytes,
        },
    }


class FusionClient:
    """Calls the orchestrator over one shared channel."""

    def __init__(self, channel: aio.Channel, *, timeout_seconds: float,
                 retry_after_seconds: int) -> None:
        self.channel = channel
        self.stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.timeout_seconds = timeout_seconds
        self.retry_after_seconds = retry_after_seconds

    async def serving(self, timeout_seconds: float) -> bool:
        """True when fusion's gRPC health check answers SERVING."""
        try:
            reply = await self.health.Check(health_pb2.HealthCheckRequest(service=""),
                                            timeout=timeout_seconds)
        except aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def analyze(self, *, analysis_id: str, filename: str, content_type: str,
                      declared_size: int, chunks: AsyncIterator[bytes],
                      on_progress: ProgressHandler) -> dict[str, Any]:
        """Stream `chunks` to fusion, pass each progress event to `on_progress`, return the
        result as a dict. Raises ApiError for every failure, including an error raised by
        `chunks` itself (e.g. 413 while counting)."""
        call = self.stub.Analyze(timeout=self.timeout_seconds,
                                 metadata=(("x-analysis-id", analysis_id),))
        header = orchestrator_pb2.AnalyzeHeader(upload=media_pb2.UploadHeader(
            filename=filename, content_type=content_type, declared_size=declared_size,
            analysis_id=analysis_id))
        writer = asyncio.create_task(self._write(call, header, chunks))
        result: dict[str, Any] | None = None
        try:
            while (event := await call.read()) is not aio.EOF:
                if event.HasField("progress"):
                    await on_progress(progress_to_dict(event.progress))
                elif event.HasField("result"):
                    result = result_to_dict(event.result)
        except asyncio.CancelledError:
            # The writer cancels the call when the upload itself fails; report that.
            if writer.done() and not writer.cancelled() and writer.exception() is not None:
                raise writer.exception() from None
            raise
        except aio.AioRpcError as exc:
            if writer.done() and not writer.cancelled() and writer.exception() is not None:
                raise writer.exception() from None
            raise error_from_rpc(exc, self.retry_after_seconds) from None
        finally:
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        if result is None:
            raise ApiError(502, "upstream_error", "the analysis ended without a result")
        return result

    @staticmethod
    async def _write(call: aio.StreamStreamCall, header: orchestrator_pb2.AnalyzeHeader,
                     chunks: AsyncIterator[bytes]) -> None:
        try:
            await call.write(orchestrator_pb2.AnalyzeRequest(header=header))
            async for chunk in chunks:
                await call.write(orchestrator_pb2.AnalyzeRequest(data=chunk))
            await call.done_writing()
        except (aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call already ended; the reader reports its status
        except BaseException:
            call.cancel()
            raise

