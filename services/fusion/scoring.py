"""From the branch results an analysis has to one fused probability (pure; no server).

Which branches count: those that answered OK or FALLBACK. LOGREG uses the head that fits
the LR branches present (services.fusion.heads); with one LR branch left its own
probability is the answer. ADAPTIVE fuses every present branch, mri included. The methods
PLAIN_FRAMES, MRI and TEMPORAL take one branch's probability as the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deepfake.v1 import branch_pb2
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.errors import UpstreamUnavailable
from services.fusion.fusion import FusionBundle, adaptive_fuse
from services.fusion.heads import LR_BRANCHES, head_key, head_label, select_head

USABLE = (branch_pb2.OK, branch_pb2.FALLBACK)
METHOD_BRANCH = {"plain_frames": "visual", "mri": "mri", "temporal": "temporal"}


@dataclass(frozen=True)
class Score:
    """A fused probability, the head that produced it and the branches it used."""

    prob_fake: float
    head: str
    used: tuple[str, ...]
    note: str = ""


def usable_results(results: Mapping[str, branch_pb2.BranchResult],
                   ) -> dict[str, branch_pb2.BranchResult]:
    """The results a score may use: status OK or FALLBACK."""
    return {b: r for b, r in results.items() if r.status in USABLE}


def fusion_features(usable: Mapping[str, branch_pb2.BranchResult]) -> dict[str, float]:
    """The 12 fusion features the usable branches provided (FEATURE_COLS order)."""
    merged = {k: v for r in usable.values() for k, v in r.features.items()}
    return {c: float(merged[c]) for c in FEATURE_COLS if c in merged}


def _complete_lr_branches(usable: Mapping[str, branch_pb2.BranchResult]) -> list[str]:
    return [b for b in LR_BRANCHES
            if b in usable and all(f in usable[b].features for f in BRANCH_FEATURES[b])]


def score(usable: Mapping[str, branch_pb2.BranchResult], *, bundle: FusionBundle,
          mode: str, method: str) -> Score:
    """The fused P(fake) for `usable` results; raises UpstreamUnavailable when no branch
    the method needs produced a score."""
    if method in METHOD_BRANCH:
        branch = METHOD_BRANCH[method]
        if branch not in usable:
            raise UpstreamUnavailable(
                f"method {method} needs the {branch} branch, which produced no score")
        return Score(usable[branch].prob_fake, f"method:{method}", (branch,))
    if not usable:
        raise UpstreamUnavailable("no detection branch produced a score for this clip")
    if mode == "adaptive":
        probs = {b: usable[b].prob_fake for b in sorted(usable)}
        p, _ = adaptive_fuse(probs, bundle.adaptive_temperatures)
        return Score(p, "adaptive:" + "+".join(probs), tuple(probs))
    present = _complete_lr_branches(usable)
    key = select_head(bundle.heads, present)
    if key is not None:
        note = ""
        if key != head_key(present):
            note = (f"no head for {head_key(present)} in the bundle; "
                    f"used {head_label(key)}")
        head = bundle.heads[key]
        return Score(head.probability(fusion_features(usable)), head_label(key), head.reads,
                     note)
    single = present[0] if len(present) == 1 else ("mri" if "mri" in usable else None)
    if single is None:
        raise UpstreamUnavailable(
            "no fusion head fits the branches that answered: "
            + ", ".join(sorted(usable)))
    return Score(usable[single].prob_fake, f"1way:{single}", (single,))
