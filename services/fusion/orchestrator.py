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

The parts: request (the options resolved), plan (which branches), routing (feeds and which
packets go where), gate (the early exit), branch_call (one call under its deadline), ledger
(outcomes, timings, progress), cached (the result cache), assemble (the result), spans,
progress, outcome (the types and enums). run.AnalysisRun coordinates them for one analysis;
this module admits analyses (Orchestrator).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from deepfake.v1 import media_pb2
from dfmesh.errors import LimitExceeded
from dfmesh.runtime.logging import analysis_id_var
from services.fusion.cached import ResultCacheLike
from services.fusion.fusion import DEFAULT_EARLY_EXIT_THRESHOLD, DEFAULT_THRESHOLD, FusionBundle
from services.fusion.outcome import (
    AnalysisOptions,
    AnalysisOutcome,
    BranchOutcome,
    ProgressEvent,
    Stage,
)
from services.fusion.run import AnalysisRun
from services.fusion.settings import FusionSettings
from services.fusion.upstreams import Upstreams

__all__ = ["AnalysisOptions", "AnalysisOutcome", "BranchOutcome", "Orchestrator",
           "ProgressEvent"]


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
        run = AnalysisRun(self, upload, chunks, options, events.put_nowait)
        analysis_id_var.set(run.analysis_id)
        self.active += 1
        task = asyncio.create_task(run.run())
        task.add_done_callback(
            lambda t: events.put_nowait(t.exception() or t.result()) if not t.cancelled() else None)
        try:
            yield ProgressEvent(Stage.QUEUED, 0.0, "Queued")
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
