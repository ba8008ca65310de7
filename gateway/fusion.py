"""One Analyze call to the fusion orchestrator: the upload goes out as a header and data
chunks while progress events come back; the call ends with exactly one result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepfake.v1 import media_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from dfmesh.client import STAGE_NAMES, result_to_dict
from gateway.errors import ApiError, error_from_rpc

ProgressHandler = Callable[[dict[str, Any]], Awaitable[None]]


def progress_to_dict(progress: orchestrator_pb2.Progress) -> dict[str, Any]:
    """A Progress event as the JSON the REST API and the SSE stream carry; stageName is the
    first source design's name (Queued, Extracting frames, ...)."""
    return {
        "stage": orchestrator_pb2.Stage.Name(progress.stage),
        "stageName": STAGE_NAMES.get(progress.stage, "Queued"),
        "percent": round(float(progress.percent), 1),
        "message": progress.message,
        "branch": progress.branch,
        "branchState": orchestrator_pb2.BranchState.Name(progress.branch_state)
        .removeprefix("BRANCH_STATE_") if progress.branch_state else "",
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
        result as a dict (dfmesh.client.result_to_dict). Raises ApiError for every failure,
        including an error raised by `chunks` itself (e.g. 413 while counting).

        The header goes first and the data only after fusion's first answer (Queued), as
        dfmesh.client does: a refusal (busy, too large) then arrives as fusion's status
        rather than racing a write (grpc/grpc#36066 turns that race into INTERNAL)."""
        call = self.stub.Analyze(timeout=self.timeout_seconds,
                                 metadata=(("x-analysis-id", analysis_id),))
        header = orchestrator_pb2.AnalyzeHeader(upload=media_pb2.UploadHeader(
            filename=filename, content_type=content_type, declared_size=declared_size,
            analysis_id=analysis_id))
        writer: asyncio.Task | None = None
        result: dict[str, Any] | None = None
        try:
            await call.write(orchestrator_pb2.AnalyzeRequest(header=header))
            while (event := await call.read()) is not aio.EOF:
                if writer is None:
                    writer = asyncio.create_task(self._write(call, chunks))
                if event.HasField("progress"):
                    await on_progress(progress_to_dict(event.progress))
                elif event.HasField("result"):
                    result = result_to_dict(event.result)
        except (asyncio.CancelledError, aio.AioRpcError, asyncio.InvalidStateError) as exc:
            # The writer cancels the call when the upload itself fails (413): report that.
            failed = (writer.exception() if writer is not None and writer.done()
                      and not writer.cancelled() else None)
            if failed is not None:
                raise failed from None
            if isinstance(exc, aio.AioRpcError):
                raise error_from_rpc(exc, self.retry_after_seconds) from None
            if isinstance(exc, asyncio.InvalidStateError):  # the call ended under the header
                raise error_from_rpc(await _status_error(call), self.retry_after_seconds) \
                    from None
            raise
        finally:
            if writer is not None:
                if not writer.done():
                    writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
        if result is None:
            raise ApiError(502, "upstream_error", "the analysis ended without a result")
        return result

    @staticmethod
    async def _write(call: aio.StreamStreamCall, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                await call.write(orchestrator_pb2.AnalyzeRequest(data=chunk))
            await call.done_writing()
        except (aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call already ended; the reader reports its status
        except BaseException:
            call.cancel()
            raise


async def _status_error(call: aio.StreamStreamCall) -> aio.AioRpcError:
    """The call's final status as an AioRpcError (for a call that ended early)."""
    return aio.AioRpcError(await call.code(), await call.initial_metadata(),
                           await call.trailing_metadata(), await call.details())
