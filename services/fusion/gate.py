"""The gate (pure): tiny_gate, the cheap branch called alone first when the early exit is on;
when every patch it scored is confidently real the analysis ends there, the other branches
are not run, and the gate's own score is the answer."""

from __future__ import annotations

from deepfake.v1 import branch_pb2
from services.fusion.outcome import BranchOutcome, BranchState
from services.fusion.plan import BranchPlan
from services.fusion.scoring import Score

GATE = "tiny_gate"
GATE_FEATURE = "tiny_prob_max"
"""The gate's statistic the early exit compares with its threshold."""
EARLY_EXIT_REASON = "not run: early exit"


def gate_first(plan: BranchPlan, early_exit: bool) -> bool:
    """Whether the gate is called alone before the others (early exit on, gate planned)."""
    return early_exit and GATE in plan.fed


def gate_says_real(gate: BranchOutcome, threshold: float) -> bool:
    """Every patch confidently real: tiny_prob_max below the threshold (faces found)."""
    if gate.state is not BranchState.OK or gate.result is None:
        return False
    tiny_max = gate.result.features.get(GATE_FEATURE)
    return tiny_max is not None and tiny_max < threshold


def skipped_by_early_exit(plan: BranchPlan) -> dict[str, str]:
    """Every planned branch but the gate, with the reason it was not run."""
    return {name: EARLY_EXIT_REASON for name in plan.run if name != GATE}


def early_exit_score(gate: branch_pb2.BranchResult, threshold: float) -> Score:
    """The gate's result as the analysis's score: its largest patch probability."""
    return Score(gate.features[GATE_FEATURE], f"early_exit:{GATE}", (GATE,),
                 note=f"early exit: every patch below {threshold:g}")
