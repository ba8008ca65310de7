"""OrchestratorService.Analyze: protobuf in and out, the work in services.fusion.orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from grpc import aio

from deepfake.v1 import branch_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from dfmesh.runtime.errors import DfmeshError, InvalidInput, NotReady
from dfmesh.runtime.tracing import current_trace_id
from services.fusion.orchestrator import (
    AnalysisOptions,
    AnalysisOutcome,
    BranchOutcome,
    Orchestrator,
    ProgressEvent,
)

DRAIN_MAX_BYTES = 64 * 2**20
DRAIN_MAX_SECONDS = 5.0
MODES = {orchestrator_pb2.LOGREG: "logreg", orchestrator_pb2.ADAPTIVE: "adaptive"}
MODE_ENUMS = {v: k for k, v in MODES.items()}
METHODS = {orchestrator_pb2.FUSION: "fusion", orchestrator_pb2.PLAIN_FRAMES: "plain_frames",
           orchestrator_pb2.MRI: "mri", orchestrator_pb2.TEMPORAL: "temporal"}
METHOD_ENUMS = {v: k for k, v in METHODS.items()}
EARLY_EXIT = {orchestrator_pb2.EARLY_EXIT_ENABLED: True,
              orchestrator_pb2.EARLY_EXIT_DISABLED: False}


def options_from_pb(options: orchestrator_pb2.AnalyzeOptions) -> AnalysisOptions:
    return AnalysisOptions(
        fusion_mode=MODES.get(options.fusion_mode, ""),
        method=METHODS.get(options.method, "fusion"),
        early_exit=EARLY_EXIT.get(options.early_exit),
        ingest=options.ingest if options.HasField("ingest") else None)


def state_to_pb(state: str) -> str:
    """A BranchState ("no_input") by its proto enum name (BRANCH_STATE_NO_INPUT)."""
    return f"BRANCH_STATE_{(state or 'unspecified').upper()}"


def progress_to_pb(event: ProgressEvent) -> orchestrator_pb2.AnalyzeEvent:
    return orchestrator_pb2.AnalyzeEvent(progress=orchestrator_pb2.Progress(
        stage=orchestrator_pb2.Stage.Value(event.stage), percent=event.percent,
        message=event.message, branch=event.branch,
        branch_state=state_to_pb(event.branch_state)))


def branch_report(outcome: BranchOutcome) -> orchestrator_pb2.BranchReport:
    report = orchestrator_pb2.BranchReport(detail=outcome.reason, latency_ms=outcome.latency_ms,
                                           state=state_to_pb(outcome.state))
    if outcome.result is not None:
        report.status = outcome.result.status
        report.prob_fake = outcome.result.prob_fake
        report.features.update(outcome.result.features)
        report.model.CopyFrom(outcome.result.model)
    else:
        report.status = branch_pb2.BRANCH_STATUS_UNSPECIFIED
    return report


def result_to_pb(outcome: AnalysisOutcome, trace_id: str) -> orchestrator_pb2.AnalyzeEvent:
    result = orchestrator_pb2.AnalysisResult(
        analysis_id=outcome.analysis_id,
        verdict=orchestrator_pb2.Verdict.Value(outcome.verdict),
        confidence=outcome.confidence, prob_fake=outcome.prob_fake,
        features=outcome.features,
        branches={name: branch_report(o) for name, o in outcome.branches.items()},
        missing_branches=outcome.missing_branches, degraded=outcome.degraded,
        early_exit=outcome.early_exit, explanation=outcome.explanation,
        timings_ms=outcome.timings_ms, fusion_mode=MODE_ENUMS[outcome.fusion_mode],
        method=METHOD_ENUMS[outcome.method], fusion_head=outcome.fusion_head,
        trace_id=trace_id, threshold=outcome.threshold, from_cache=outcome.from_cache,
        warnings=outcome.warnings)
    if outcome.clip is not None:
        result.clip.CopyFrom(outcome.clip)
    return orchestrator_pb2.AnalyzeEvent(result=result)


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Registered before the bundle is loaded; `orchestrator` is set once it is."""

    def __init__(self, orchestrator: Orchestrator | None = None) -> None:
        self.orchestrator = orchestrator

    async def Analyze(self, request_iterator: AsyncIterator[orchestrator_pb2.AnalyzeRequest],
                      context: aio.ServicerContext) -> AsyncIterator[orchestrator_pb2.AnalyzeEvent]:
        orchestrator = self.orchestrator
        if orchestrator is None:
            raise NotReady("fusion is still loading its bundle")
        first = None
        async for request in request_iterator:
            first = request
            break
        if first is None or not first.HasField("header"):
            raise InvalidInput("the first AnalyzeRequest must carry the AnalyzeHeader")
        header = first.header

        async def chunks() -> AsyncIterator[bytes]:
            async for request in request_iterator:
                if not request.HasField("data"):
                    raise InvalidInput("only data chunks may follow the AnalyzeHeader")
                yield request.data

        trace_id = current_trace_id()
        try:
            async for event in orchestrator.analyze(header.upload, chunks(),
                                                    options_from_pb(header.options)):
                if isinstance(event, ProgressEvent):
                    yield progress_to_pb(event)
                else:
                    yield result_to_pb(event, trace_id)
        except DfmeshError:
            await drain(request_iterator)
            raise


async def drain(requests: AsyncIterator[orchestrator_pb2.AnalyzeRequest]) -> None:
    """Read and drop what the caller is still sending, within bounds, before failing the
    call: a grpc.aio client still writing when the server ends the call reports INTERNAL
    instead of the server's status (grpc/grpc#36066), as ingest's UploadStream.drain."""
    async def discard() -> None:
        received = 0
        async for request in requests:
            received += request.ByteSize()
            if received > DRAIN_MAX_BYTES:
                return

    with contextlib.suppress(Exception):
        await asyncio.wait_for(discard(), DRAIN_MAX_SECONDS)
