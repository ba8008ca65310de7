"""Clip-level statistics every branch reports, defined once (DESIGN.md, the branches table)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEATURE_COLS: tuple[str, ...] = (
    "tiny_prob_mean", "tiny_prob_max", "tiny_prob_p90", "tiny_num_files", "tiny_num_patches",
    "visual_prob_mean", "visual_prob_max", "visual_prob_p90", "visual_num_faces",
    "audio_prob_fake", "temporal_prob_fake", "sync_prob",
)
"""The 12 fusion features, in the calibrated bundle's feature_cols order."""

BRANCH_FEATURES: dict[str, tuple[str, ...]] = {
    "tiny_gate": FEATURE_COLS[0:5],
    "visual": FEATURE_COLS[5:9],
    "audio": ("audio_prob_fake",),
    "temporal": ("temporal_prob_fake",),
    "sync": ("sync_prob",),
    "mri": ("mri_prob_mean", "mri_prob_max", "mri_prob_p90"),
}
"""Which named statistics each branch returns."""

BRANCHES: tuple[str, ...] = tuple(BRANCH_FEATURES)


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
