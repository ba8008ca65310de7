"""What an analysis knows so far (no calls, no clock of its own): each branch's outcome, the
timings, and the progress and metrics they mean. The coordinator hands it what happens;
the result is assembled from it."""

from __future__ import annotations

from typing import Protocol

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.runtime import metrics
from services.fusion.outcome import BranchOutcome, Stage
from services.fusion.progress import Progress, frames_percent, models_percent


class ModelLog(Protocol):
    """services.fusion.cache.ModelView as the ledger feeds it: the models branches serve."""

    def update(self, branch: str, model: branch_pb2.ModelInfo) -> None: ...


class Ledger:
    """Outcomes by branch, timings in ms by stage or branch, and the progress of both."""

    def __init__(self, progress: Progress, expected_frames: int,
                 models: ModelLog | None = None) -> None:
        self.progress = progress
        self.expected_frames = expected_frames
        self.models = models
        self.planned: tuple[str, ...] = ()
        self.frames_seen = 0
        self.outcomes: dict[str, BranchOutcome] = {}
        self.timings: dict[str, float] = {}

    def plan(self, planned: tuple[str, ...], kind: int) -> None:
        """The branches this analysis runs, once the clip's kind is known (an image is one
        frame)."""
        self.planned = planned
        if kind == media_pb2.IMAGE:
            self.expected_frames = 1

    def frame(self) -> None:
        """One more sampled frame arrived from ingest."""
        self.frames_seen += 1
        self.progress(Stage.EXTRACTING_FRAMES,
                      frames_percent(self.frames_seen, self.expected_frames),
                      f"Extracting frames ({self.frames_seen}/{self.expected_frames})")

    def ingest_summary(self, summary: media_pb2.IngestSummary) -> None:
        """Ingest's own stage timings, as ingest_<stage>."""
        self.timings.update({f"ingest_{k}": v for k, v in summary.timings_ms.items()})

    def record(self, outcome: BranchOutcome, label: str = "") -> BranchOutcome:
        """A branch finished: its outcome, the model it served, its time (from its input
        being complete when known), its call metric under `label` (else its state), and
        the progress event that names its state."""
        self.outcomes[outcome.name] = outcome
        if self.models is not None and outcome.result is not None:
            self.models.update(outcome.name, outcome.result.model)
        if outcome.latency_ms:
            self.timings[outcome.name] = outcome.after_input_ms or outcome.latency_ms
            metrics.BRANCH_CALL_SECONDS.labels(outcome.name, label or outcome.state).observe(
                outcome.latency_ms / 1000)
        total, done = max(len(self.planned), 1), len(self.outcomes)
        self.progress(Stage.RUNNING_MODELS, models_percent(done, total),
                      f"{outcome.name} {outcome.state.replace('_', ' ')} ({done}/{total})",
                      branch=outcome.name, branch_state=outcome.state)
        return outcome
