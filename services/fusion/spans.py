"""The attributes an analysis's trace spans carry, from the clip, a branch's outcome and the
result (pure: dicts for span.set_attributes)."""

from __future__ import annotations

from deepfake.v1 import media_pb2
from services.fusion.outcome import AnalysisOutcome, BranchOutcome

Attributes = dict[str, str | bool | int | float | list[str]]


def clip_attributes(clip: media_pb2.ClipInfo) -> Attributes:
    return {"clip.kind": media_pb2.MediaKind.Name(clip.kind).lower(),
            "clip.duration_seconds": clip.duration_seconds, "clip.width": clip.width,
            "clip.height": clip.height, "clip.fps": clip.fps, "clip.has_audio": clip.has_audio}


def branch_attributes(outcome: BranchOutcome) -> Attributes:
    """A branch call's state and reason, and with a result its model and score."""
    attributes: Attributes = {"branch.state": outcome.state, "branch.reason": outcome.reason}
    if outcome.result is not None:
        attributes.update({"model.name": outcome.result.model.name,
                           "model.version": outcome.result.model.version,
                           "prob_fake": outcome.result.prob_fake})
    return attributes


def result_attributes(outcome: AnalysisOutcome) -> Attributes:
    return {"verdict": outcome.verdict, "prob_fake": outcome.prob_fake,
            "fusion.head": outcome.fusion_head, "early_exit": outcome.early_exit,
            "degraded": outcome.degraded, "missing_branches": list(outcome.missing_branches)}
