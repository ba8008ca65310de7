"""What an analysis reports, in plain Python: the enums for states, verdicts, modes, methods
and stages, the request's options, progress events, each branch's outcome and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from deepfake.v1 import branch_pb2, media_pb2


class BranchState(StrEnum):
    """What one branch contributed to an analysis."""

    OK = "ok"
    FALLBACK = "fallback"    # scored, from centre crops where no face was found
    NO_INPUT = "no_input"    # nothing it could score (no face, no speech)
    MISSING = "missing"      # down, not serving, failing or late
    NOT_RUN = "not_run"      # not asked: method, media kind or the gate's early exit

    @classmethod
    def of_status(cls, status: int) -> BranchState:
        """The state a branch's reply status gives (an unknown status counts as missing)."""
        states: dict[int, BranchState] = {branch_pb2.OK: cls.OK, branch_pb2.FALLBACK: cls.FALLBACK,
                                          branch_pb2.NO_INPUT: cls.NO_INPUT}
        return states.get(status, cls.MISSING)


class Verdict(StrEnum):
    DEEPFAKE = "DEEPFAKE"
    AUTHENTIC = "AUTHENTIC"


class FusionMode(StrEnum):
    LOGREG = "logreg"
    ADAPTIVE = "adaptive"


class Method(StrEnum):
    """How the probability is made: fused from every branch, or one branch's own."""

    FUSION = "fusion"
    PLAIN_FRAMES = "plain_frames"
    MRI = "mri"
    TEMPORAL = "temporal"


class Stage(StrEnum):
    QUEUED = "QUEUED"
    EXTRACTING_FRAMES = "EXTRACTING_FRAMES"
    RUNNING_MODELS = "RUNNING_MODELS"
    FINAL_CLASSIFICATION = "FINAL_CLASSIFICATION"


@dataclass(frozen=True)
class AnalysisOptions:
    """What a request may choose; empty/None means the server's configuration decides."""

    fusion_mode: str = ""            # FusionMode, or "" for the server's
    method: str = Method.FUSION
    early_exit: bool | None = None
    ingest: media_pb2.IngestOptions | None = None


@dataclass(frozen=True)
class ProgressEvent:
    stage: str   # a Stage
    percent: float
    message: str
    branch: str = ""
    branch_state: str = ""           # with `branch`: a BranchState


@dataclass
class BranchOutcome:
    """What one branch contributed (`state`: a BranchState) and why, with its timings."""

    name: str
    state: str
    result: branch_pb2.BranchResult | None = None
    reason: str = ""
    latency_ms: float = 0.0          # call opened -> result
    after_input_ms: float = 0.0      # input complete -> result: what the branch itself adds

    def __post_init__(self) -> None:
        self.state = BranchState(self.state)


@dataclass
class AnalysisOutcome:
    """The result in plain Python. timings_ms: ingest (stream open to summary), ingest_<stage>
    (ingest's own summary timings), <branch> (from the branch's input being complete to its
    result: what the branch adds on top of ingest), fusion, total."""

    analysis_id: str
    verdict: str                     # a Verdict
    confidence: float
    prob_fake: float
    features: dict[str, float]
    branches: dict[str, BranchOutcome]
    missing_branches: list[str]
    degraded: bool
    early_exit: bool
    explanation: str
    timings_ms: dict[str, float]
    fusion_mode: str                 # a FusionMode
    method: str                      # a Method
    fusion_head: str
    clip: media_pb2.ClipInfo | None
    threshold: float
    from_cache: bool = False
    warnings: list[str] = field(default_factory=list)
