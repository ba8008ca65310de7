"""The coordinator of one analysis: the upload streamed through ingest, packets routed to
the planned branches' feeds, the gate first, the rest in parallel, the dependents after
what they depend on, then the result. The decisions live in plan, routing, branch_call,
assemble and progress; this module only sequences them (see orchestrator's docstring)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import trace

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.errors import DfmeshError, InvalidInput
from dfmesh.runtime import metrics
from dfmesh.runtime.tracing import span, tracer
from services.fusion.assemble import assemble, record_metrics, replay_cached
from services.fusion.branch_call import call_branch, gate_says_real, ingest_error
from services.fusion.outcome import (
    AnalysisOptions,
    AnalysisOutcome,
    BranchOutcome,
    BranchState,
    Method,
    ProgressEvent,
    Stage,
)
from services.fusion.plan import BranchPlan, plan_branches
from services.fusion.progress import (
    EXTRACT_END,
    EXTRACT_START,
    MODELS_END,
    Progress,
    frames_percent,
    models_percent,
)
from services.fusion.routing import Feed, embeddings_feed, route, without_full_frame
from services.fusion.upload import UploadForwarder

if TYPE_CHECKING:
    from services.fusion.orchestrator import Orchestrator

log = logging.getLogger(__name__)

DEFAULT_NUM_FRAMES = 16


class AnalysisRun:
    """The state of one analysis while it runs."""

    def __init__(self, orchestrator: Orchestrator, upload: media_pb2.UploadHeader,
                 chunks: AsyncIterator[bytes], options: AnalysisOptions,
                 emit: Callable[[ProgressEvent], None]) -> None:
        self.o = orchestrator
        self.settings = orchestrator.settings
        self.analysis_id = upload.analysis_id or uuid.uuid4().hex
        self.method = options.method or Method.FUSION
        self.mode = options.fusion_mode or self.settings.fusion_mode
        self.early_exit_on = (self.settings.early_exit if options.early_exit is None
                              else options.early_exit) and self.method == Method.FUSION
        self.ingest_options = media_pb2.IngestOptions()
        if options.ingest is not None:
            self.ingest_options.CopyFrom(options.ingest)
        self.ingest_options.include_full_frames = self.settings.full_frames
        self.ingest_options.full_frames_only_without_faces = True
        self.upload = UploadForwarder(upload, self.ingest_options, chunks,
                                      self.settings.max_upload_bytes, self._stop_ingest)
        self.progress = Progress(emit)
        self.clip: media_pb2.ClipInfo | None = None
        self.plan = BranchPlan(())
        self.feeds: dict[str, Feed] = {}
        self.outcomes: dict[str, BranchOutcome] = {}
        self.frames_seen = 0
        self.expected_frames = self.ingest_options.num_frames or DEFAULT_NUM_FRAMES
        self.early_exit = False
        self.timings: dict[str, float] = {}
        self.ingest_task: asyncio.Task | None = None
        self.branches_task: asyncio.Task | None = None
        self.cached: AnalysisOutcome | None = None
        self.span: trace.Span = trace.INVALID_SPAN  # the analysis span, set by run()
        self.trace_context = otel_context.get_current()

    async def run(self) -> AnalysisOutcome:
        with span("fusion.analysis", analysis__id=self.analysis_id, method=self.method,
                  fusion__mode=self.mode, early_exit__enabled=self.early_exit_on) as current:
            self.span, self.trace_context = current, otel_context.get_current()
            outcome = await self._run()
            current.set_attributes({
                "verdict": outcome.verdict, "prob_fake": outcome.prob_fake,
                "fusion.head": outcome.fusion_head, "early_exit": outcome.early_exit,
                "degraded": outcome.degraded,
                "missing_branches": list(outcome.missing_branches)})
            return outcome

    async def _run(self) -> AnalysisOutcome:
        start = time.perf_counter()
        self.ingest_task = asyncio.create_task(self._pump_ingest())
        try:
            await asyncio.wait({self.ingest_task})
            if self.ingest_task.cancelled():
                if self.upload.error is not None:
                    raise self.upload.error
                if not self.early_exit:
                    raise asyncio.CancelledError
            elif (exc := self.ingest_task.exception()) is not None:
                raise exc
            if self.cached is not None:
                return self._cached_result(self.cached, start)
            if self.branches_task is None:
                raise InvalidInput("ingest ended without describing the clip")
            await self.branches_task
        finally:
            if not self.ingest_task.done():
                self.ingest_task.cancel()
            for feed in self.feeds.values():
                feed.close()
            if self.branches_task is not None and not self.branches_task.done():
                self.branches_task.cancel()
                await asyncio.gather(self.branches_task, return_exceptions=True)
        fusion_start = time.perf_counter()
        self.progress(Stage.FINAL_CLASSIFICATION, MODELS_END, "Final classification")
        with span("fusion.fuse", fusion__mode=self.mode):
            outcome = assemble(
                analysis_id=self.analysis_id, outcomes=self.outcomes, not_run=self.plan.not_run,
                bundle=self.o.bundle, mode=self.mode, method=self.method,
                threshold=self.o.threshold, early_exit=self.early_exit,
                early_exit_threshold=self.o.early_exit_threshold, clip=self.clip)
        self.timings["fusion"] = (time.perf_counter() - fusion_start) * 1000
        self.timings["total"] = (time.perf_counter() - start) * 1000
        outcome.timings_ms = dict(self.timings)
        record_metrics(outcome)
        if self.o.cache is not None and not outcome.degraded:
            key = self._cache_key()
            if key is not None:
                await self.o.cache.put(key, outcome)
        self.progress(Stage.FINAL_CLASSIFICATION, 100.0, "Final classification")
        return outcome

    # --- the result cache ---
    def _cache_key(self) -> str | None:
        assert self.o.cache is not None
        if self.clip is None:
            return None
        opts = self.ingest_options
        options = {"method": self.method, "mode": self.mode, "early_exit": self.early_exit_on,
                   "early_exit_threshold": self.o.early_exit_threshold,
                   "threshold": self.o.threshold, "num_frames": opts.num_frames,
                   "dense_window_seconds": round(opts.dense_window_seconds, 6),
                   "full_frames": opts.include_full_frames}
        return self.o.cache.key(self.clip.sha256, options, self.o.bundle.sha256)

    async def _look_up_cache(self, clip: media_pb2.ClipInfo) -> bool:
        """True (and self.cached set) when this clip's result is in the cache."""
        if self.o.cache is None:
            return False
        self.clip = clip
        key = self._cache_key()
        found = await self.o.cache.get(key) if key is not None else None
        metrics.FUSION_CACHE_LOOKUPS.labels("hit" if found else "miss").inc()
        self.cached = found
        return found is not None

    def _cached_result(self, cached: AnalysisOutcome, start: float) -> AnalysisOutcome:
        self.span.set_attribute("from_cache", True)
        total_ms = (time.perf_counter() - start) * 1000
        return replay_cached(cached, self.progress, analysis_id=self.analysis_id,
                             clip=self.clip, ingest_ms=self.timings.get("ingest"),
                             total_ms=total_ms)

    # --- ingest ---
    def _stop_ingest(self, _: DfmeshError) -> None:
        """The upload was refused: stop ingest; run() reports the caller's mistake."""
        if self.ingest_task is not None:
            self.ingest_task.cancel()

    async def _pump_ingest(self) -> None:
        with span("fusion.ingest"):
            await self._pump_ingest_stream()

    async def _pump_ingest_stream(self) -> None:
        start = time.perf_counter()
        self.progress(Stage.EXTRACTING_FRAMES, EXTRACT_START, "Extracting frames")
        call = self.o.upstreams.ingest(self.upload.requests(),
                                       timeout=self.settings.ingest_deadline_seconds)
        try:
            async for packet in call:
                if packet.HasField("clip_info") and await self._look_up_cache(packet.clip_info):
                    call.cancel()  # the same upload was analysed before: ingest can stop
                    return
                self._route(packet)
                if packet.HasField("summary"):
                    self.timings.update({f"ingest_{k}": v
                                         for k, v in packet.summary.timings_ms.items()})
        except asyncio.CancelledError:
            call.cancel()
            raise
        except aio.AioRpcError as exc:
            if self.upload.error is not None:
                raise self.upload.error from None
            retry = dict(exc.trailing_metadata() or ()).get("retry-after")
            raise ingest_error(exc.code(), exc.details() or "", retry,
                               self.o.upstreams.ingest_address) from None
        finally:
            self.timings["ingest"] = (time.perf_counter() - start) * 1000
            for feed in self.feeds.values():
                feed.close()
        self.progress(Stage.EXTRACTING_FRAMES, EXTRACT_END, "Frames extracted")

    def _route(self, packet: media_pb2.MediaPacket) -> None:
        kind = packet.WhichOneof("payload")
        if kind == "clip_info":
            self._start(packet.clip_info)
        elif self.clip is None:
            raise InvalidInput("ingest stream did not start with ClipInfo")
        if kind == "frame":
            self.frames_seen += 1
            self.progress(Stage.EXTRACTING_FRAMES,
                          frames_percent(self.frames_seen, self.expected_frames),
                          f"Extracting frames ({self.frames_seen}/{self.expected_frames})")
            packet = without_full_frame(packet)
        send, close = route(kind, self.feeds)
        for name in send:
            self.feeds[name].put(branch_pb2.BranchRequest(media=packet))
        for name in close:
            self.feeds[name].close()

    def _start(self, clip: media_pb2.ClipInfo) -> None:
        """ClipInfo arrived: decide which branches run and open their feeds."""
        self.clip = clip
        self.span.set_attributes({
            "clip.kind": media_pb2.MediaKind.Name(clip.kind).lower(),
            "clip.duration_seconds": clip.duration_seconds, "clip.width": clip.width,
            "clip.height": clip.height, "clip.fps": clip.fps, "clip.has_audio": clip.has_audio})
        if clip.kind == media_pb2.IMAGE:
            self.expected_frames = 1
        self.plan = plan_branches(self.method, clip.kind)
        self.feeds = {b: Feed(self.analysis_id) for b in self.plan.fed}
        self.branches_task = asyncio.create_task(self._run_branches())

    # --- branches ---
    async def _run_branches(self) -> None:
        # Created from ingest's pump, this task would nest the branches under fusion.ingest:
        # parent them on the analysis span instead (their tasks copy this context).
        with tracer.start_as_current_span("fusion.branches", context=self.trace_context,
                                          attributes={"branches": list(self.plan.run)}):
            await self._run_branch_plan()

    async def _run_branch_plan(self) -> None:
        fed = list(self.plan.fed)
        if self.early_exit_on and "tiny_gate" in fed:
            gate = await self._call("tiny_gate", self.feeds["tiny_gate"])
            if gate_says_real(gate, self.o.early_exit_threshold):
                self.early_exit = True
                for name in [*fed[1:], *self.plan.dependents]:
                    self.plan.not_run.setdefault(name, "not run: early exit")
                assert self.ingest_task is not None
                self.ingest_task.cancel()
                return
            fed.remove("tiny_gate")
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
        if source is None or source.result is None or source.state is BranchState.MISSING:
            return self._record(BranchOutcome(name, BranchState.MISSING,
                                              reason=f"needs {upstream}'s embeddings"))
        if not source.result.embeddings:
            return self._record(BranchOutcome(name, BranchState.NO_INPUT,
                                              reason=f"{upstream} produced no embeddings"))
        return await self._call(name, embeddings_feed(self.analysis_id, source.result))

    async def _call(self, name: str, feed: Feed) -> BranchOutcome:
        """One branch call under its deadline; never raises for the branch's failures."""
        with span(f"fusion.call.{name}", branch=name) as current:
            outcome, label = await call_branch(
                self.o.upstreams, name, feed, deadline=self.settings.branch_deadline(name),
                stream_deadline=self.settings.ingest_deadline_seconds)
            self._record(outcome, label)
            current.set_attributes({"branch.state": outcome.state, "branch.reason": outcome.reason})
            if outcome.result is not None:
                current.set_attributes({"model.name": outcome.result.model.name,
                                        "model.version": outcome.result.model.version,
                                        "prob_fake": outcome.result.prob_fake})
            return outcome

    def _record(self, outcome: BranchOutcome, label: str = "") -> BranchOutcome:
        self.outcomes[outcome.name] = outcome
        if self.o.cache is not None and outcome.result is not None:
            self.o.cache.models.update(outcome.name, outcome.result.model)
        if outcome.latency_ms:
            self.timings[outcome.name] = outcome.after_input_ms or outcome.latency_ms
            metrics.BRANCH_CALL_SECONDS.labels(outcome.name, label or outcome.state).observe(
                outcome.latency_ms / 1000)
        total, done = max(len(self.plan.run), 1), len(self.outcomes)
        self.progress(Stage.RUNNING_MODELS, models_percent(done, total),
                      f"{outcome.name} {outcome.state.replace('_', ' ')} ({done}/{total})",
                      branch=outcome.name, branch_state=outcome.state)
        return outcome
