"""A small async client for the orchestrator: stream a file up, follow progress, get the result.

    async with Client("127.0.0.1:50051") as client:
        async for event in client.analyze("clip.mp4"):
            if isinstance(event, Progress):
                print(event.stage, event.percent)
            else:
                print(result_to_dict(event))

The upload goes in 1 MiB chunks as it is read; nothing buffers the whole file.
"""

from __future__ import annotations

import asyncio
import mimetypes
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from grpc import aio

from deepfake.v1 import branch_pb2, media_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from dfmesh.runtime.config import MiB, default_address

CHUNK_BYTES = MiB
DEFAULT_TIMEOUT_SECONDS = 600.0
METHODS = {"fusion": orchestrator_pb2.FUSION, "plain_frames": orchestrator_pb2.PLAIN_FRAMES,
           "mri": orchestrator_pb2.MRI, "temporal": orchestrator_pb2.TEMPORAL}
FUSION_MODES = {"logreg": orchestrator_pb2.LOGREG, "adaptive": orchestrator_pb2.ADAPTIVE}
_MAX_MESSAGE_BYTES = 64 * MiB


@dataclass(frozen=True)
class Progress:
    """One progress event: stage name as the REST API shows it, percent 0-100."""

    stage: str
    percent: float
    message: str
    branch: str = ""
    branch_state: str = ""   # with branch: OK, FALLBACK, NO_INPUT, MISSING or NOT_RUN


STAGE_NAMES = {orchestrator_pb2.QUEUED: "Queued",
               orchestrator_pb2.EXTRACTING_FRAMES: "Extracting frames",
               orchestrator_pb2.RUNNING_MODELS: "Running models",
               orchestrator_pb2.FINAL_CLASSIFICATION: "Final classification"}


def analyze_options(method: str = "fusion", fusion: str | None = None,
                    early_exit: bool | None = None) -> orchestrator_pb2.AnalyzeOptions:
    """AnalyzeOptions from plain names; None leaves the choice to the server."""
    options = orchestrator_pb2.AnalyzeOptions(method=METHODS[method])
    if fusion is not None:
        options.fusion_mode = FUSION_MODES[fusion]
    if early_exit is not None:
        options.early_exit = (orchestrator_pb2.EARLY_EXIT_ENABLED if early_exit
                              else orchestrator_pb2.EARLY_EXIT_DISABLED)
    return options


def header_request(path: Path, options: orchestrator_pb2.AnalyzeOptions,
                   analysis_id: str = "") -> orchestrator_pb2.AnalyzeRequest:
    """The first message: file name, content type, declared size, options."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader(
        upload=media_pb2.UploadHeader(filename=path.name, content_type=content_type,
                                      declared_size=path.stat().st_size,
                                      analysis_id=analysis_id),
        options=options))


async def _send_file(call: aio.StreamStreamCall, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, CHUNK_BYTES):
            await call.write(orchestrator_pb2.AnalyzeRequest(data=chunk))
    await call.done_writing()


def progress_from_pb(progress: orchestrator_pb2.Progress) -> Progress:
    state = (_enum_name(orchestrator_pb2.BranchState, progress.branch_state, "BRANCH_STATE_")
             if progress.branch_state else "")
    return Progress(STAGE_NAMES.get(progress.stage, "Queued"), progress.percent,
                    progress.message, progress.branch, state)


class Client:
    """A channel to the orchestrator (DFMESH_FUSION_ADDR or 127.0.0.1:50051 by default)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or default_address("fusion")
        self.channel = aio.insecure_channel(self.address, options=[
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)])
        self.stub = orchestrator_pb2_grpc.OrchestratorServiceStub(self.channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def analyze(self, path: str | Path, *, method: str = "fusion",
                      fusion: str | None = None, early_exit: bool | None = None,
                      analysis_id: str = "", timeout: float = DEFAULT_TIMEOUT_SECONDS,
                      ) -> AsyncIterator[Progress | orchestrator_pb2.AnalysisResult]:
        """Progress events, then the AnalysisResult. gRPC errors (aio.AioRpcError) propagate
        with the server's status code and message.

        The header goes first and the data only after the server's first answer (Queued):
        a refusal (busy, too large) then arrives as the server's status, not as a failed
        write (grpc/grpc#36066: a write racing an early server status can replace it with
        INTERNAL)."""
        path = Path(path)
        call = self.stub.Analyze(timeout=timeout)
        await call.write(header_request(path, analyze_options(method, fusion, early_exit),
                                        analysis_id or uuid.uuid4().hex))
        sender: asyncio.Task | None = None
        try:
            while (event := await call.read()) is not aio.EOF:
                if sender is None:
                    sender = asyncio.create_task(_send_file(call, path))
                if event.HasField("progress"):
                    yield progress_from_pb(event.progress)
                else:
                    yield event.result
            if sender is not None:
                await sender
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            call.cancel()

    async def analyze_result(self, path: str | Path, **kwargs: Any,
                             ) -> orchestrator_pb2.AnalysisResult:
        """Just the result (progress events are dropped)."""
        result = None
        async for event in self.analyze(path, **kwargs):
            if isinstance(event, orchestrator_pb2.AnalysisResult):
                result = event
        if result is None:
            raise RuntimeError("the orchestrator ended the stream without a result")
        return result


def _enum_name(enum: Any, value: int, prefix: str = "") -> str:
    return enum.Name(value).removeprefix(prefix)


def branch_to_dict(report: orchestrator_pb2.BranchReport, missing: bool) -> dict[str, Any]:
    """status: OK, FALLBACK, NO_INPUT, MISSING (down, failed, late) or NOT_RUN (early exit,
    method, or a file kind the branch does not apply to): the report's state; from its
    branch status and the missing list where a server older than the state sent none."""
    if report.state != orchestrator_pb2.BRANCH_STATE_UNSPECIFIED:
        status = _enum_name(orchestrator_pb2.BranchState, report.state, "BRANCH_STATE_")
    elif report.status != branch_pb2.BRANCH_STATUS_UNSPECIFIED:
        status = branch_pb2.BranchStatus.Name(report.status)
    else:
        status = "MISSING" if missing else "NOT_RUN"
    return {"status": status, "prob": report.prob_fake, "features": dict(report.features),
            "modelVersion": report.model.version, "model": report.model.name,
            "detail": report.detail, "latencyMs": report.latency_ms}


def result_to_dict(result: orchestrator_pb2.AnalysisResult) -> dict[str, Any]:
    """The JSON shape `dfmesh analyze --json` prints (and the gateway can return)."""
    verdict = {orchestrator_pb2.DEEPFAKE: "Deepfake", orchestrator_pb2.AUTHENTIC: "Authentic"}
    return {
        "verdict": verdict.get(result.verdict, "Unknown"),
        "confidence": result.confidence,
        "probFake": result.prob_fake,
        "features": dict(result.features),
        "branches": {name: branch_to_dict(r, name in result.missing_branches)
                     for name, r in sorted(result.branches.items())},
        "missingBranches": list(result.missing_branches),
        "degraded": result.degraded,
        "earlyExit": result.early_exit,
        "fromCache": result.from_cache,
        "warnings": list(result.warnings),
        "explanation": result.explanation,
        "timingsMs": dict(result.timings_ms),
        "analysisId": result.analysis_id,
        "traceId": result.trace_id,
        "fusionHead": result.fusion_head,
        "fusionMode": _enum_name(orchestrator_pb2.FusionMode, result.fusion_mode).lower(),
        "method": _enum_name(orchestrator_pb2.Method, result.method).lower(),
        "threshold": result.threshold,
        "clip": MessageToDict(result.clip) if result.HasField("clip") else None,
    }
