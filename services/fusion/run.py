"""The coordinator of one analysis: ingest pumped (ingest_pump), the branches planned when
the clip is described, the gate first, the rest in parallel, the dependents after what they
depend on, then the result. The decisions live in request, plan, routing, gate,
branch_call, ledger, cached, assemble and spans; this module only sequences them (see
orchestrator's docstring)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace

from deepfake.v1 import media_pb2
from dfmesh.errors import DfmeshError, InvalidInput
from dfmesh.runtime.tracing import span, tracer
from services.fusion import gate, spans
from services.fusion.assemble import assemble, record_metrics, replay_cached
from services.fusion.branch_call import call_branch
from services.fusion.cached import AnalysisCache
from services.fusion.ingest_pump import IngestPump
from services.fusion.ledger import Ledger
from services.fusion.outcome import (
    AnalysisOptions,
    AnalysisOutcome,
    BranchOutcome,
    ProgressEvent,
    Stage,
)
from services.fusion.plan import BranchPlan, plan_branches
from services.fusion.progress import MODELS_END, Progress
from services.fusion.request import cache_options, resolve_options
from services.fusion.routing import Feed, Feeds, dependent_outcome, embeddings_feed
from services.fusion.upload import UploadForwarder

if TYPE_CHECKING:
    from services.fusion.orchestrator import Orchestrator


class AnalysisRun:
    """One analysis while it runs: its tasks and plan; what it learns is in `ledger`."""

    def __init__(self, orchestrator: Orchestrator, upload: media_pb2.UploadHeader,
                 chunks: AsyncIterator[bytes], options: AnalysisOptions,
                 emit: Callable[[ProgressEvent], None]) -> None:
        o = self.o = orchestrator
        self.analysis_id = upload.analysis_id or uuid.uuid4().hex
        self.options = resolve_options(o.settings, options)
        self.progress = Progress(emit)
        self.cache = AnalysisCache(o.cache, cache_options(
            self.options, threshold=o.threshold, early_exit_threshold=o.early_exit_threshold),
            o.bundle.sha256)
        self.ledger = Ledger(self.progress, self.options.expected_frames, self.cache.models)
        self.plan, self.feeds, self.early_exit = BranchPlan(()), Feeds(self.analysis_id), False
        self.upload = UploadForwarder(upload, self.options.ingest, chunks,
                                      o.settings.max_upload_bytes, self._stop_ingest)
        self.ingest = IngestPump(o.upstreams, o.settings.ingest_deadline_seconds, self.upload,
                                 self.cache, self.ledger, self.feeds, self._start)
        self.ingest_task: asyncio.Task | None = None
        self.branches_task: asyncio.Task | None = None
        self.span: trace.Span = trace.INVALID_SPAN  # the analysis span, set by run()
        self.trace_context = otel_context.get_current()

    async def run(self) -> AnalysisOutcome:
        opts = self.options
        with span("fusion.analysis", analysis__id=self.analysis_id, method=opts.method,
                  fusion__mode=opts.mode, early_exit__enabled=opts.early_exit) as current:
            self.span, self.trace_context = current, otel_context.get_current()
            outcome = await self._run()
            current.set_attributes(spans.result_attributes(outcome))
            return outcome

    async def _run(self) -> AnalysisOutcome:
        start = time.perf_counter()
        self.ingest_task = asyncio.create_task(self.ingest.pump())
        try:
            await asyncio.wait({self.ingest_task})
            if self.ingest_task.cancelled():  # a refused upload, the early exit, or ours
                if self.upload.error is not None:
                    raise self.upload.error
                if not self.early_exit:
                    raise asyncio.CancelledError
            elif (exc := self.ingest_task.exception()) is not None:
                raise exc
            if self.ingest.cached is not None:
                self.span.set_attribute("from_cache", True)
                return replay_cached(
                    self.ingest.cached, self.progress, analysis_id=self.analysis_id,
                    clip=self.ingest.clip, ingest_ms=self.ledger.timings.get("ingest"),
                    total_ms=(time.perf_counter() - start) * 1000)
            if self.branches_task is None:
                raise InvalidInput("ingest ended without describing the clip")
            await self.branches_task
        finally:
            await self._stop_all()
        return await self._finish(start)

    async def _stop_all(self) -> None:
        """Whatever still runs of ingest and the branches is cancelled, the feeds closed."""
        assert self.ingest_task is not None
        if not self.ingest_task.done():
            self.ingest_task.cancel()
        self.feeds.close()
        if self.branches_task is not None and not self.branches_task.done():
            self.branches_task.cancel()
            await asyncio.gather(self.branches_task, return_exceptions=True)

    async def _finish(self, start: float) -> AnalysisOutcome:
        fusion_start, o, clip = time.perf_counter(), self.o, self.ingest.clip
        self.progress(Stage.FINAL_CLASSIFICATION, MODELS_END, "Final classification")
        with span("fusion.fuse", fusion__mode=self.options.mode):
            outcome = assemble(
                analysis_id=self.analysis_id, outcomes=self.ledger.outcomes,
                not_run=self.plan.not_run, bundle=o.bundle, mode=self.options.mode,
                method=self.options.method, threshold=o.threshold, early_exit=self.early_exit,
                early_exit_threshold=o.early_exit_threshold, clip=clip)
        timings = self.ledger.timings
        timings["fusion"] = (time.perf_counter() - fusion_start) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        outcome.timings_ms = dict(timings)
        record_metrics(outcome)
        await self.cache.store(clip, outcome)
        self.progress(Stage.FINAL_CLASSIFICATION, 100.0, "Final classification")
        return outcome

    def _stop_ingest(self, _: DfmeshError) -> None:
        """The upload was refused: stop ingest; run() reports the caller's mistake."""
        if self.ingest_task is not None:
            self.ingest_task.cancel()

    def _start(self, clip: media_pb2.ClipInfo) -> None:
        """ClipInfo arrived: decide which branches run and open their feeds."""
        self.span.set_attributes(spans.clip_attributes(clip))
        self.plan = plan_branches(self.options.method, clip.kind)
        self.ledger.plan(self.plan.run, clip.kind)
        self.feeds.open(self.plan.fed)
        self.branches_task = asyncio.create_task(self._run_branches())

    async def _run_branches(self) -> None:
        # Created from ingest's pump, this task would nest the branches under fusion.ingest:
        # parent them on the analysis span instead (their tasks copy this context).
        with tracer.start_as_current_span("fusion.branches", context=self.trace_context,
                                          attributes={"branches": list(self.plan.run)}):
            fed = list(self.plan.fed)
            if gate.gate_first(self.plan, self.options.early_exit):
                outcome = await self._call(gate.GATE, self.feeds[gate.GATE])
                if gate.gate_says_real(outcome, self.o.early_exit_threshold):
                    self.early_exit = True
                    self.plan.not_run.update(gate.skipped_by_early_exit(self.plan))
                    assert self.ingest_task is not None
                    self.ingest_task.cancel()
                    return
                fed.remove(gate.GATE)
            tasks = {b: asyncio.create_task(self._call(b, self.feeds[b])) for b in fed}
            for name, upstream in self.plan.dependents.items():
                tasks[name] = asyncio.create_task(self._dependent(name, upstream,
                                                                  tasks.get(upstream)))
            try:
                await asyncio.gather(*tasks.values())
            finally:
                for task in tasks.values():
                    task.cancel()

    async def _dependent(self, name: str, upstream: str,
                         upstream_task: asyncio.Task | None) -> BranchOutcome:
        """A branch fed by another's per-frame embeddings (temporal on visual's)."""
        source = await upstream_task if upstream_task is not None else None
        if (skipped := dependent_outcome(name, upstream, source)) is not None:
            return self.ledger.record(skipped)
        assert source is not None and source.result is not None
        return await self._call(name, embeddings_feed(self.analysis_id, source.result))

    async def _call(self, name: str, feed: Feed) -> BranchOutcome:
        """One branch call under its deadline; never raises for the branch's failures."""
        with span(f"fusion.call.{name}", branch=name) as current:
            outcome, label = await call_branch(
                self.o.upstreams, name, feed, deadline=self.o.settings.branch_deadline(name),
                stream_deadline=self.o.settings.ingest_deadline_seconds)
            current.set_attributes(spans.branch_attributes(outcome))
            return self.ledger.record(outcome, label)
