"""One analysis: the upload streamed through ingest, media teed to the branches, the gate
first, the rest in parallel under deadlines, then fusion.

How streaming and the gate fit together. Ingest's stream is ordered: ClipInfo, the N
sampled frames, the dense lip-sync window, audio chunks, summary. Each branch gets a Feed
(an asyncio.Queue behind an async generator, which is the branch call's request stream);
the ingest pump routes every packet to the feeds that use it the moment it arrives, and
closes a feed as soon as no packet it uses can follow (the frame branches' feeds close
after the last sampled frame, while ingest still works on the dense window and audio).
With the early exit on, only tiny_gate's call is opened at first; the heavy branches'
feeds just fill up. The gate answers right after the last sampled frame (a ~1K-parameter
model), so holding the heavy branches costs little latency, and on the early exit they
are never called at all and ingest is cancelled (on 2 shared cores a speculative start of
visual, mri, audio and sync would slow the gate and ingest down for work we may throw
away). When the gate does not exit, the held calls open, drain what their feeds hold and
keep streaming. With the early exit off, every call opens at once.

Full frames: ingest is always asked for include_full_frames (DFMESH_FULL_FRAMES), because
whether a clip has faces is only known once its frames arrive and the upload is not kept
for a second pass. Ingest sends a full frame only where it found no face
(full_frames_only_without_faces; the branches use the crops of the others), and the frame
branches get it for their centre-crop fallback. Sending all 16 cost 44 MB (720p) and 100 MB
(1080p) per 10 s clip through ingest -> fusion, about 0.2-0.4 s of CPU in serialization
(bench: mesh vs in-process CPU); ingest's DFMESH_FULL_FRAME_MAX_SIDE bounds their size
where the network is slower than loopback.

Deadlines: a branch's own deadline counts from the moment its input is complete (its feed
closed), so a long ingest does not eat it; the gRPC deadline on the call is that plus the
ingest deadline, so no call can outlive both.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import grpc
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import trace

from deepfake.v1 import branch_pb2, ingest_pb2, media_pb2
from dfmesh import branches as registry
from dfmesh.runtime import metrics
from dfmesh.runtime.errors import (
    DeadlineExceeded,
    DfmeshError,
    InvalidInput,
    LimitExceeded,
    UpstreamUnavailable,
)
from dfmesh.runtime.logging import analysis_id_var
from dfmesh.runtime.tracing import span, tracer
from services.fusion.explain import explain
from services.fusion.fusion import (
    DEFAULT_EARLY_EXIT_THRESHOLD,
    DEFAULT_THRESHOLD,
    FusionBundle,
    decide,
)
from services.fusion.scoring import (
    METHOD_BRANCH,
    Score,
    fusion_features,
    score,
    usable_results,
)
from services.fusion.settings import BRANCH_NAMES, FusionSettings
from services.fusion.upstreams import Upstreams

log = logging.getLogger(__name__)

DEFAULT_NUM_FRAMES = 16
STREAM_ORDER: tuple[str, ...] = tuple(registry.STREAM_ORDER)
BRANCH_INPUTS: dict[str, tuple[str, ...]] = {
    b.name: tuple(b.packets) for b in registry.BRANCHES if b.packets}
"""Which MediaPacket kinds each branch is sent; a branch that depends on another (temporal)
gets that branch's embeddings instead."""

METHOD_PLANS: dict[str, tuple[str, ...]] = {
    "fusion": BRANCH_NAMES,
    **{method: registry.with_dependencies((b,)) for method, b in METHOD_BRANCH.items()},
}
KIND_BRANCHES: dict[int, tuple[str, ...]] = {
    media_pb2.IMAGE: registry.runs_on("IMAGE"),
    media_pb2.AUDIO: registry.runs_on("AUDIO"),
}
KIND_NOTES = {media_pb2.IMAGE: "still image: frame branches only",
              media_pb2.AUDIO: "audio-only file: audio branch only"}
# Progress: ingest's sampled frames move the bar to 50 %, finished branches to 95 %.
EXTRACT_START, EXTRACT_END, MODELS_END = 5.0, 50.0, 95.0


@dataclass(frozen=True)
class AnalysisOptions:
    """What a request may choose; empty/None means the server's configuration decides."""

    fusion_mode: str = ""            # "logreg" | "adaptive"
    method: str = "fusion"           # "fusion" | "plain_frames" | "mri" | "temporal"
    early_exit: bool | None = None
    ingest: media_pb2.IngestOptions | None = None


@dataclass(frozen=True)
class ProgressEvent:
    stage: str   # QUEUED | EXTRACTING_FRAMES | RUNNING_MODELS | FINAL_CLASSIFICATION
    percent: float
    message: str
    branch: str = ""


@dataclass
class BranchOutcome:
    """What one branch contributed: state ok | fallback | no_input | missing | not_run."""

    name: str
    state: str
    result: branch_pb2.BranchResult | None = None
    reason: str = ""
    latency_ms: float = 0.0          # call opened -> result
    after_input_ms: float = 0.0      # input complete -> result: what the branch itself adds


@dataclass
class AnalysisOutcome:
    """The result in plain Python. timings_ms: ingest (stream open to summary), ingest_<stage>
    (ingest's own summary timings), <branch> (from the branch's input being complete to its
    result: what the branch adds on top of ingest), fusion, total."""

    analysis_id: str
    verdict: str                     # DEEPFAKE | AUTHENTIC
    confidence: float
    prob_fake: float
    features: dict[str, float]
    branches: dict[str, BranchOutcome]
    missing_branches: list[str]
    degraded: bool
    early_exit: bool
    explanation: str
    timings_ms: dict[str, float]
    fusion_mode: str
    method: str
    fusion_head: str
    clip: media_pb2.ClipInfo | None
    threshold: float
    from_cache: bool = False
    warnings: list[str] = field(default_factory=list)


class ResultCacheLike(Protocol):
    """services.fusion.cache.ResultCache as the orchestrator uses it."""

    models: Any

    def key(self, clip_sha256: str, options: dict[str, object],
            bundle_sha256: str) -> str | None: ...

    async def get(self, key: str) -> AnalysisOutcome | None: ...

    async def put(self, key: str, outcome: AnalysisOutcome) -> None: ...


class Feed:
    """A branch call's request stream: a header, then whatever is put, until close()."""

    def __init__(self, analysis_id: str) -> None:
        self._queue: asyncio.Queue[branch_pb2.BranchRequest | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.closed_at = 0.0
        self._header = branch_pb2.BranchRequest(
            header=branch_pb2.BranchHeader(analysis_id=analysis_id))

    def put(self, request: branch_pb2.BranchRequest) -> None:
        if not self.closed.is_set():
            self._queue.put_nowait(request)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.closed_at = time.perf_counter()
            self._queue.put_nowait(None)

    async def requests(self) -> AsyncIterator[branch_pb2.BranchRequest]:
        yield self._header
        while (item := await self._queue.get()) is not None:
            yield item


def _without_full_frame(packet: media_pb2.MediaPacket) -> media_pb2.MediaPacket:
    """The frame packet as branches get it: the full frame only where no face was found."""
    frame = packet.frame
    if not frame.faces or not frame.HasField("frame"):
        return packet
    return media_pb2.MediaPacket(frame=media_pb2.SampledFrame(
        index=frame.index, frame_number=frame.frame_number,
        timestamp_seconds=frame.timestamp_seconds, faces=frame.faces))


def _ingest_error(exc: aio.AioRpcError, address: str) -> DfmeshError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry = dict(exc.trailing_metadata() or ()).get("retry-after")
        return LimitExceeded(details, retry_after_seconds=float(retry) if retry else None)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"ingest at {address} did not finish in time")
    if code == grpc.StatusCode.UNAVAILABLE:
        return UpstreamUnavailable(f"ingest service unavailable at {address}: {details}")
    return UpstreamUnavailable(f"ingest at {address} failed with {code.name}: {details}")


class Orchestrator:
    """Runs analyses against ingest and the branches; holds the bundle and the limits."""

    def __init__(self, settings: FusionSettings, upstreams: Upstreams,
                 bundle: FusionBundle, cache: ResultCacheLike | None = None) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.bundle = bundle
        self.cache = cache
        self.active = 0

    @property
    def threshold(self) -> float:
        if self.settings.decision_threshold is not None:
            return self.settings.decision_threshold
        return self.bundle.threshold if self.bundle.threshold is not None else DEFAULT_THRESHOLD

    @property
    def early_exit_threshold(self) -> float:
        if self.settings.early_exit_threshold is not None:
            return self.settings.early_exit_threshold
        if self.bundle.early_exit_threshold is not None:
            return self.bundle.early_exit_threshold
        return DEFAULT_EARLY_EXIT_THRESHOLD

    async def analyze(self, upload: media_pb2.UploadHeader, chunks: AsyncIterator[bytes],
                      options: AnalysisOptions) -> AsyncIterator[ProgressEvent | AnalysisOutcome]:
        """Progress events as work advances, then exactly one AnalysisOutcome."""
        if self.active >= self.settings.max_concurrent_analyses:
            raise LimitExceeded(
                f"fusion is busy with {self.active} analyses (limit "
                f"{self.settings.max_concurrent_analyses}); retry shortly",
                retry_after_seconds=self.settings.busy_retry_seconds)
        if upload.declared_size > self.settings.max_upload_bytes:
            raise LimitExceeded(f"upload of {upload.declared_size} bytes exceeds the limit of "
                                f"{self.settings.max_upload_bytes} bytes")
        events: asyncio.Queue[ProgressEvent | AnalysisOutcome | BaseException] = asyncio.Queue()
        run = _Run(self, upload, chunks, options, events.put_nowait)
        analysis_id_var.set(run.analysis_id)
        self.active += 1
        task = asyncio.create_task(run.run())
        task.add_done_callback(
            lambda t: events.put_nowait(t.exception() or t.result()) if not t.cancelled() else None)
        try:
            yield ProgressEvent("QUEUED", 0.0, "Queued")
            while True:
                item = await events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, AnalysisOutcome):
                    return
        finally:
            self.active -= 1
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


class _Run:
    """The state of one analysis."""

    def __init__(self, orchestrator: Orchestrator, upload: media_pb2.UploadHeader,
                 chunks: AsyncIterator[bytes], options: AnalysisOptions,
                 emit: Callable[[ProgressEvent], None]) -> None:
        self.o = orchestrator
        self.settings = orchestrator.settings
        self.upload = upload
        self.analysis_id = upload.analysis_id or uuid.uuid4().hex
        self.chunks = chunks
        self.method = options.method or "fusion"
        self.mode = options.fusion_mode or self.settings.fusion_mode
        self.early_exit_on = (self.settings.early_exit if options.early_exit is None
                              else options.early_exit) and self.method == "fusion"
        self.ingest_options = media_pb2.IngestOptions()
        if options.ingest is not None:
            self.ingest_options.CopyFrom(options.ingest)
        self.ingest_options.include_full_frames = self.settings.full_frames
        self.ingest_options.full_frames_only_without_faces = True
        self._emit = emit
        self.percent = 0.0
        self.clip: media_pb2.ClipInfo | None = None
        self.plan: tuple[str, ...] = ()
        self.not_run: dict[str, str] = {}
        self.feeds: dict[str, Feed] = {}
        self.outcomes: dict[str, BranchOutcome] = {}
        self.frames_seen = 0
        self.expected_frames = self.ingest_options.num_frames or DEFAULT_NUM_FRAMES
        self.upload_bytes = 0
        self.upload_error: DfmeshError | None = None
        self.early_exit = False
        self.timings: dict[str, float] = {}
        self.ingest_task: asyncio.Task | None = None
        self.branches_task: asyncio.Task | None = None
        self.cache_key: str | None = None
        self.cached: AnalysisOutcome | None = None
        self.span: trace.Span = trace.INVALID_SPAN  # the analysis span, set by run()
        self.trace_context = otel_context.get_current()

    # --- progress ---
    def emit(self, stage: str, percent: float, message: str, branch: str = "") -> None:
        self.percent = max(self.percent, min(percent, 100.0))
        self._emit(ProgressEvent(stage, self.percent, message, branch))

    # --- the whole analysis ---
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
                if self.upload_error is not None:
                    raise self.upload_error
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
        self.emit("FINAL_CLASSIFICATION", MODELS_END, "Final classification")
        with span("fusion.fuse", fusion__mode=self.mode):
            outcome = self._result()
        self.timings["fusion"] = (time.perf_counter() - fusion_start) * 1000
        self.timings["total"] = (time.perf_counter() - start) * 1000
        outcome.timings_ms = dict(self.timings)
        self._record_metrics(outcome)
        if self.o.cache is not None and not outcome.degraded:
            key = self._cache_key()
            if key is not None:
                await self.o.cache.put(key, outcome)
        self.emit("FINAL_CLASSIFICATION", 100.0, "Final classification")
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
        timings = {k: v for k, v in self.timings.items() if k == "ingest"}
        timings["total"] = (time.perf_counter() - start) * 1000
        self.span.set_attribute("from_cache", True)
        # The progress a client shows: each branch's outcome, as the cached result has it.
        ran = [b for b in cached.branches.values() if b.state != "not_run"]
        for done, branch in enumerate(ran, start=1):
            self.emit("RUNNING_MODELS",
                      EXTRACT_END + (MODELS_END - EXTRACT_END) * done / max(len(ran), 1),
                      f"{branch.name} {branch.state.replace('_', ' ')} (cached result)",
                      branch=branch.name)
        self.emit("FINAL_CLASSIFICATION", 100.0, "Final classification (cached result)")
        log.info("analysis answered from the result cache",
                 extra={"verdict": cached.verdict, "total_ms": round(timings["total"])})
        return replace(cached, analysis_id=self.analysis_id, timings_ms=timings,
                       clip=self.clip, from_cache=True)

    # --- ingest ---
    async def _ingest_requests(self) -> AsyncIterator[ingest_pb2.IngestRequest]:
        yield ingest_pb2.IngestRequest(header=ingest_pb2.IngestHeader(
            upload=self.upload, options=self.ingest_options))
        try:
            async for chunk in self.chunks:
                self.upload_bytes += len(chunk)
                if self.upload_bytes > self.settings.max_upload_bytes:
                    raise LimitExceeded(
                        f"upload exceeds the limit of {self.settings.max_upload_bytes} bytes")
                yield ingest_pb2.IngestRequest(data=chunk)
        except DfmeshError as exc:
            # Raising here would only reach gRPC's request consumer: stop ingest instead and
            # let run() report the caller's mistake.
            self.upload_error = exc
            if self.ingest_task is not None:
                self.ingest_task.cancel()

    async def _pump_ingest(self) -> None:
        with span("fusion.ingest"):
            await self._pump_ingest_stream()

    async def _pump_ingest_stream(self) -> None:
        start = time.perf_counter()
        self.emit("EXTRACTING_FRAMES", EXTRACT_START, "Extracting frames")
        call = self.o.upstreams.ingest(self._ingest_requests(),
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
            if self.upload_error is not None:
                raise self.upload_error from None
            raise _ingest_error(exc, self.o.upstreams.ingest_address) from None
        finally:
            self.timings["ingest"] = (time.perf_counter() - start) * 1000
            for feed in self.feeds.values():
                feed.close()
        self.emit("EXTRACTING_FRAMES", EXTRACT_END, "Frames extracted")

    def _route(self, packet: media_pb2.MediaPacket) -> None:
        kind = packet.WhichOneof("payload")
        if kind == "clip_info":
            self._start(packet.clip_info)
        elif self.clip is None:
            raise InvalidInput("ingest stream did not start with ClipInfo")
        if kind == "frame":
            self.frames_seen += 1
            share = min(self.frames_seen / max(self.expected_frames, 1), 1.0)
            self.emit("EXTRACTING_FRAMES", EXTRACT_START + share * (EXTRACT_END - EXTRACT_START),
                      f"Extracting frames ({self.frames_seen}/{self.expected_frames})")
            branch_packet = _without_full_frame(packet)
        else:
            branch_packet = packet
        position = STREAM_ORDER.index(kind) if kind in STREAM_ORDER else len(STREAM_ORDER)
        for name, feed in self.feeds.items():
            inputs = BRANCH_INPUTS.get(name, ())
            if kind in inputs:
                feed.put(branch_pb2.BranchRequest(media=branch_packet))
            elif inputs and position > max(STREAM_ORDER.index(k) for k in inputs):
                feed.close()

    def _start(self, clip: media_pb2.ClipInfo) -> None:
        """ClipInfo arrived: decide which branches run and open their feeds."""
        self.clip = clip
        self.span.set_attributes({
            "clip.kind": media_pb2.MediaKind.Name(clip.kind).lower(),
            "clip.duration_seconds": clip.duration_seconds, "clip.width": clip.width,
            "clip.height": clip.height, "clip.fps": clip.fps, "clip.has_audio": clip.has_audio})
        if clip.kind == media_pb2.IMAGE:
            self.expected_frames = 1
        plan = METHOD_PLANS[self.method]
        allowed = KIND_BRANCHES.get(clip.kind, BRANCH_NAMES)
        for name in BRANCH_NAMES:
            if name not in plan:
                self.not_run[name] = f"not run: method {self.method}"
            elif name not in allowed:
                self.not_run[name] = "not run: " + KIND_NOTES[clip.kind]
        self.plan = tuple(b for b in plan if b in allowed)
        needed = METHOD_BRANCH.get(self.method)
        if not self.plan or (needed is not None and needed not in self.plan):
            kind = media_pb2.MediaKind.Name(clip.kind).lower()
            raise InvalidInput(f"method {self.method} cannot score {kind} files; "
                               f"use method fusion")
        self.feeds = {b: Feed(self.analysis_id) for b in self.plan if b in BRANCH_INPUTS}
        self.branches_task = asyncio.create_task(self._run_branches())

    # --- branches ---
    async def _run_branches(self) -> None:
        # Created from ingest's pump, this task would nest the branches under fusion.ingest:
        # parent them on the analysis span instead (their tasks copy this context).
        with tracer.start_as_current_span("fusion.branches", context=self.trace_context,
                                          attributes={"branches": list(self.plan)}):
            await self._run_branch_plan()

    async def _run_branch_plan(self) -> None:
        heavy = [b for b in self.plan if b in BRANCH_INPUTS]
        dependent = {b: registry.branch(b).depends_on for b in self.plan if b not in heavy}
        if self.early_exit_on and "tiny_gate" in heavy:
            gate = await self._call("tiny_gate", self.feeds["tiny_gate"])
            if self._gate_says_real(gate):
                self.early_exit = True
                for name in heavy[1:]:
                    self.not_run[name] = "not run: early exit"
                for name in dependent:
                    self.not_run.setdefault(name, "not run: early exit")
                assert self.ingest_task is not None
                self.ingest_task.cancel()
                return
            heavy.remove("tiny_gate")
        tasks = {b: asyncio.create_task(self._call(b, self.feeds[b])) for b in heavy}
        for name, upstream in dependent.items():
            tasks[name] = asyncio.create_task(self._dependent(name, upstream,
                                                              tasks.get(upstream)))
        try:
            await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()

    def _gate_says_real(self, gate: BranchOutcome) -> bool:
        """Every patch confidently real: tiny_prob_max below the threshold (faces found)."""
        if gate.state != "ok" or gate.result is None:
            return False
        tiny_max = gate.result.features.get("tiny_prob_max")
        return tiny_max is not None and tiny_max < self.o.early_exit_threshold

    async def _dependent(self, name: str, upstream: str,
                         upstream_task: asyncio.Task | None) -> BranchOutcome:
        """A branch fed by another's per-frame embeddings (temporal on visual's)."""
        source = await upstream_task if upstream_task is not None else None
        if source is None or source.result is None or source.state == "missing":
            return self._record(BranchOutcome(name, "missing",
                                              reason=f"needs {upstream}'s embeddings"))
        if not source.result.embeddings:
            return self._record(BranchOutcome(name, "no_input",
                                              reason=f"{upstream} produced no embeddings"))
        feed = Feed(self.analysis_id)
        for embedding in source.result.embeddings:
            feed.put(branch_pb2.BranchRequest(embedding=embedding))
        feed.close()
        return await self._call(name, feed)

    async def _call(self, name: str, feed: Feed) -> BranchOutcome:
        """One branch call under its deadline; never raises for the branch's failures."""
        with span(f"fusion.call.{name}", branch=name) as current:
            outcome = await self._call_branch(name, feed)
            current.set_attributes({"branch.state": outcome.state, "branch.reason": outcome.reason})
            if outcome.result is not None:
                current.set_attributes({"model.name": outcome.result.model.name,
                                        "model.version": outcome.result.model.version,
                                        "prob_fake": outcome.result.prob_fake})
            return outcome

    async def _call_branch(self, name: str, feed: Feed) -> BranchOutcome:
        start = time.perf_counter()
        deadline = self.settings.branch_deadline(name)
        outcome: BranchOutcome
        if not await self.o.upstreams.serving(name):
            outcome = BranchOutcome(name, "missing", reason="not serving")
            return self._record(outcome, "not_serving")
        call = self.o.upstreams.branch(name, feed.requests(),
                                       timeout=self.settings.ingest_deadline_seconds + deadline)

        async def result() -> branch_pb2.BranchResult:
            return await call

        call_task = asyncio.create_task(result())
        input_done = asyncio.create_task(feed.closed.wait())
        try:
            await asyncio.wait({call_task, input_done}, return_when=asyncio.FIRST_COMPLETED)
            if not call_task.done():
                await asyncio.wait({call_task}, timeout=deadline)
            now = time.perf_counter()
            latency = (now - start) * 1000
            after_input = (now - max(start, feed.closed_at or now)) * 1000
            if not call_task.done():
                call.cancel()
                outcome = BranchOutcome(name, "missing", reason=f"late (over {deadline:g} s)",
                                        latency_ms=latency)
                return self._record(outcome, "late")
            try:
                reply = call_task.result()
            except aio.AioRpcError as exc:
                self.o.upstreams.forget_health(name)
                label = ("unavailable" if exc.code() == grpc.StatusCode.UNAVAILABLE
                         else "late" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                         else "failed")
                log.warning("branch %s left out: %s %s", name, exc.code().name, exc.details())
                outcome = BranchOutcome(name, "missing", latency_ms=latency,
                                        reason=f"{label}: {exc.code().name}")
                return self._record(outcome, label)
            state = {branch_pb2.OK: "ok", branch_pb2.FALLBACK: "fallback",
                     branch_pb2.NO_INPUT: "no_input"}.get(reply.status, "missing")
            outcome = BranchOutcome(name, state, reply, reason=reply.detail, latency_ms=latency,
                                    after_input_ms=after_input)
            return self._record(outcome, state if state != "fallback" else "ok")
        finally:
            input_done.cancel()
            if not call_task.done():
                call_task.cancel()

    def _record(self, outcome: BranchOutcome, label: str = "") -> BranchOutcome:
        self.outcomes[outcome.name] = outcome
        if self.o.cache is not None and outcome.result is not None:
            self.o.cache.models.update(outcome.name, outcome.result.model)
        if outcome.latency_ms:
            self.timings[outcome.name] = outcome.after_input_ms or outcome.latency_ms
            metrics.BRANCH_CALL_SECONDS.labels(outcome.name, label or outcome.state).observe(
                outcome.latency_ms / 1000)
        total = max(len(self.plan), 1)
        done = len(self.outcomes)
        self.emit("RUNNING_MODELS", EXTRACT_END + (MODELS_END - EXTRACT_END) * done / total,
                  f"{outcome.name} {outcome.state.replace('_', ' ')} ({done}/{total})",
                  branch=outcome.name)
        return outcome

    # --- the result ---
    def _result(self) -> AnalysisOutcome:
        branches: dict[str, BranchOutcome] = {}
        for name in BRANCH_NAMES:
            if name in self.outcomes:
                branches[name] = self.outcomes[name]
            else:
                branches[name] = BranchOutcome(
                    name, "not_run" if name in self.not_run else "missing",
                    reason=self.not_run.get(name, "no answer"))
        missing = {b: o.reason for b, o in branches.items() if o.state == "missing"}
        no_input = {b: o.reason or "no input" for b, o in branches.items()
                    if o.state == "no_input"}
        results = {b: o.result for b, o in branches.items() if o.result is not None}
        usable = usable_results(results)
        features = fusion_features(usable)
        threshold = self.o.threshold
        if self.early_exit:
            gate = usable["tiny_gate"]
            fused = Score(gate.features["tiny_prob_max"], "early_exit:tiny_gate", ("tiny_gate",),
                          note=f"early exit: every patch below "
                               f"{self.o.early_exit_threshold:g}")
        else:
            fused = score(usable, bundle=self.o.bundle, mode=self.mode, method=self.method)
        verdict, confidence = decide(fused.prob_fake, threshold)
        if self.early_exit:
            # The gate's threshold is the operator's definition of "confidently real".
            verdict, confidence = "AUTHENTIC", 100.0 * (1.0 - fused.prob_fake)
        if self.clip is not None and self.clip.kind in KIND_NOTES and not fused.note:
            fused = Score(fused.prob_fake, fused.head, fused.used, KIND_NOTES[self.clip.kind])
        probs = {b: r.prob_fake for b, r in usable.items()}
        sync = usable.get("sync")
        text = explain(deepfake=verdict == "DEEPFAKE", probs=probs, used=list(fused.used),
                       sync_prob=sync.features.get("sync_prob") if sync else None,
                       missing=missing, no_input=no_input, note=fused.note)
        return AnalysisOutcome(
            analysis_id=self.analysis_id, verdict=verdict, confidence=confidence,
            prob_fake=fused.prob_fake, features=features, branches=branches,
            missing_branches=list(missing), degraded=bool(missing), early_exit=self.early_exit,
            explanation=text, timings_ms={}, fusion_mode=self.mode, method=self.method,
            fusion_head=fused.head, clip=self.clip, threshold=threshold,
            warnings=[] if self.early_exit else self.o.bundle.calibration_warnings(
                {b: usable[b].model.sha256 for b in fused.used if b in usable}))

    def _record_metrics(self, outcome: AnalysisOutcome) -> None:
        if outcome.early_exit:
            metrics.FUSION_EARLY_EXITS.inc()
        for name in outcome.missing_branches:
            metrics.FUSION_DEGRADED.labels(name).inc()
        metrics.FUSION_VERDICTS.labels(outcome.verdict, outcome.fusion_head.split(":")[0],
                                       str(outcome.degraded).lower()).inc()
        metrics.FUSION_PROB_FAKE.observe(outcome.prob_fake)
        for stage, ms in outcome.timings_ms.items():
            if stage.startswith("ingest_"):
                continue  # ingest exports its own stage metrics
            metrics.STAGE_SECONDS.labels("fusion", stage).observe(ms / 1000)
        log.info("analysis done", extra={"verdict": outcome.verdict, "head": outcome.fusion_head,
                                         "degraded": outcome.degraded,
                                         "total_ms": round(outcome.timings_ms.get("total", 0))})
