"""Which logistic-regression head fits the branches an analysis actually has.

The bundle keys its subset heads by the sorted names of their branches joined with "+"
(e.g. "audio+tiny_gate+visual"); the full 5-way head is the bundle's top level. Only the
branches whose features are fusion columns count (dfmesh.branches.LR_BRANCHES): mri takes
part in adaptive fusion but has no LR features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dfmesh.branches import LR_BRANCHES

__all__ = ["FULL_HEAD_KEY", "HEAD_PRECEDENCE", "LR_BRANCHES", "head_key", "head_label",
           "select_head"]
FULL_HEAD_KEY = "+".join(sorted(LR_BRANCHES))
HEAD_PRECEDENCE: tuple[str, ...] = ("visual", "tiny_gate", "audio", "sync", "temporal")
"""Between fitting heads of one size, the one whose branches come first here: a clip's
verdict comes from its faces before its soundtrack (docs/models/fusion.md says why)."""


def head_key(branches: Iterable[str]) -> str:
    """The bundle key of the head over `branches` (LR branches only, sorted, "+"-joined)."""
    return "+".join(sorted(b for b in set(branches) if b in LR_BRANCHES))


def head_label(key: str) -> str:
    """How AnalysisResult.fusion_head names a head: "5way" or "3way:audio+tiny_gate+visual"."""
    n = len(key.split("+")) if key else 0
    return "5way" if key == FULL_HEAD_KEY else f"{n}way:{key}"


def select_head(available: Iterable[str], present: Iterable[str],
                precedence: Sequence[str] = HEAD_PRECEDENCE) -> str | None:
    """The best head for the LR branches in `present`, among the bundle's `available` keys.

    The exact head when the bundle has it; otherwise the largest head whose branches are
    all present; between heads of one size, the one whose branches come first in
    `precedence` (so a clip whose face head and audio head both fit is judged by its
    faces), then by name, so the choice is deterministic. One-branch heads (a calibrated
    single branch, bundles from 2.0.0 on) count like any other; None when no head fits (the
    caller then uses a single branch's own probability).
    """
    present_lr = {b for b in present if b in LR_BRANCHES}
    keys = set(available)
    exact = head_key(present_lr)
    if exact in keys and present_lr:
        return exact
    fitting = [k for k in keys if k and set(k.split("+")) <= present_lr]
    if not fitting:
        return None

    def rank(key: str) -> tuple[int, list[int], str]:
        branches = key.split("+")
        order = sorted(precedence.index(b) if b in precedence else len(precedence)
                       for b in branches)
        return -len(branches), order, key

    return min(fitting, key=rank)
