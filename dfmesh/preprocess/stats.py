"""Clip-level statistics every branch reports, defined once (DESIGN.md, the branches table);
the names each branch reports and the fusion columns come from `dfmesh.branches`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfmesh.branches import BRANCH_FEATURES, BRANCH_NAMES, FEATURE_COLS

# The feature columns and each branch's statistics are declared in the branch registry.
BRANCHES = BRANCH_NAMES

__all__ = ["BRANCHES", "BRANCH_FEATURES", "FEATURE_COLS", "PROB_EPS", "column_logits",
           "prob_summary"]


def prob_summary(prefix: str, probs: Sequence[float] | np.ndarray) -> dict[str, float]:
    """`{prefix}_prob_mean`, `_max` and `_p90` (linear interpolation) of per-item probabilities.

    Raises ValueError on an empty sequence: a branch with nothing to score reports NO_INPUT
    instead of inventing numbers.
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"no scores to summarize for {prefix}")
    return {
        f"{prefix}_prob_mean": float(arr.mean()),
        f"{prefix}_prob_max": float(arr.max()),
        f"{prefix}_prob_p90": float(np.percentile(arr, 90)),
    }


PROB_EPS = 1e-4


def column_logits(x: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """The chosen probability columns of `x` as log-odds (clipped to [1e-4, 1 - 1e-4]).

    The first step of every fusion head since 2.0.0 (a FunctionTransformer in the bundle,
    so the arithmetic lives here, torch-free, for the fusion service and the trainer alike):
    heads read probabilities as evidence on the logit scale and skip the count features."""
    p = np.clip(np.asarray(x, dtype=np.float64)[:, list(columns)], PROB_EPS, 1.0 - PROB_EPS)
    return np.log(p / (1.0 - p))
