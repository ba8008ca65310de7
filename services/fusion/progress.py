"""Progress as a client sees it: the stage, a percentage that never goes back, a message
(pure arithmetic; the coordinator decides when). Ingest's sampled frames move the bar to
50 %, finished branches to 95 %."""

from __future__ import annotations

from collections.abc import Callable

from services.fusion.outcome import ProgressEvent, Stage

EXTRACT_START, EXTRACT_END, MODELS_END = 5.0, 50.0, 95.0


def frames_percent(seen: int, expected: int) -> float:
    return EXTRACT_START + min(seen / max(expected, 1), 1.0) * (EXTRACT_END - EXTRACT_START)


def models_percent(done: int, total: int) -> float:
    return EXTRACT_END + (MODELS_END - EXTRACT_END) * done / max(total, 1)


class Progress:
    """Emits ProgressEvents through `emit`, the percentage clamped to [previous, 100]."""

    def __init__(self, emit: Callable[[ProgressEvent], None]) -> None:
        self._emit = emit
        self.percent = 0.0

    def __call__(self, stage: Stage, percent: float, message: str, branch: str = "",
                 branch_state: str = "") -> None:
        self.percent = max(self.percent, min(percent, 100.0))
        self._emit(ProgressEvent(stage, self.percent, message, branch, branch_state))
