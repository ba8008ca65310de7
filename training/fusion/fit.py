"""Fit the fusion heads, their temperatures and the adaptive per-branch temperatures.

Heads: for the full 5-way set of LR branches and every 2-, 3- and 4-way subset, a Pipeline
(StandardScaler, LogisticRegression(class_weight="balanced")) over the subset's features in
FEATURE_COLS order, fitted on the train split. Temperature T per head: minimizes the Brier
score of sigmoid(logit(p) / T) on the validation split. Adaptive fusion: per branch
(mri included), T_i minimizes the Brier score of the branch's own prob_fake on validation
rows that are real or manipulated in that branch's modality (a branch is not asked to see
fakes it cannot see). The test split is never touched here.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from dfmesh.branches import LR_BRANCHES
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from training.evaluation.metrics import logit, sigmoid
from training.scoring import fit_temperature

MANIFEST_IO: dict[str, list[dict]] = {
    "inputs": [{"name": c, "shape": [1], "dtype": "float64"} for c in FEATURE_COLS],
    "outputs": [{"name": "prob_fake", "shape": [1], "dtype": "float64"}],
}
"""A fusion bundle's manifest inputs and outputs (every release writes the same)."""
FUSION_ARITHMETIC: dict[str, str] = {
    "features": "dfmesh.preprocess.stats.FEATURE_COLS, as the branch services report them",
    "calibration": "p_cal = sigmoid(logit(p) / T)",
    "adaptive": "c_i = |p_i - 0.5| * 2 on temperature-scaled branch probabilities",
}
"""What a fusion bundle's manifest says of its arithmetic (services/fusion/fusion.py)."""
ADAPTIVE_BRANCHES: tuple[str, ...] = (*LR_BRANCHES, "mri")
BRANCH_SEES: dict[str, tuple[str, ...]] = {
    "tiny_gate": ("visual", "temporal", "visual_audio"),
    "visual": ("visual", "temporal", "visual_audio"),
    "mri": ("visual", "temporal", "visual_audio"),
    "temporal": ("visual", "temporal", "visual_audio"),
    "audio": ("audio", "visual_audio"),
    "sync": ("lipsync",),
}
"""The fake versions each branch's modality can show (training.fusion.dataset.VERSIONS)."""


def head_key(branches: Sequence[str]) -> str:
    return "+".join(sorted(branches))


def head_columns(branches: Sequence[str]) -> list[str]:
    """The features of `branches`, in FEATURE_COLS order."""
    wanted = {c for b in branches for c in BRANCH_FEATURES[b]}
    return [c for c in FEATURE_COLS if c in wanted]


def subsets(branches: Sequence[str] = LR_BRANCHES) -> list[tuple[str, ...]]:
    """Every subset of two or more branches (the full set last)."""
    return [c for k in range(2, len(branches) + 1) for c in combinations(branches, k)]


def feature_matrix(rows: list[dict], cols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """X [n, len(cols)] and y over the rows that have every column."""
    keep = [r for r in rows if all(r["features"].get(c) is not None for c in cols)]
    x = np.array([[r["features"][c] for c in cols] for r in keep], dtype=np.float64)
    y = np.array([r["label"] for r in keep], dtype=int)
    return x.reshape(len(keep), len(cols)), y


def make_head_model(c: float = 1.0) -> Pipeline:
    return Pipeline([("scale", StandardScaler()),
                     ("lr", LogisticRegression(class_weight="balanced", C=c, max_iter=2000))])


def fit_head(branches: Sequence[str], train: list[dict], val: list[dict]) -> dict:
    """One head: model, feature_cols, temperature (fitted on val), branches, counts."""
    cols = head_columns(branches)
    x, y = feature_matrix(train, cols)
    if len(np.unique(y)) < 2:
        raise ValueError(f"head {head_key(branches)}: train rows lack a class ({len(y)} rows)")
    model = make_head_model().fit(x, y)
    xv, yv = feature_matrix(val, cols)
    temperature = fit_temperature(model.predict_proba(xv)[:, 1], yv) if len(yv) else 1.0
    return {"model": model, "feature_cols": cols, "temperature": temperature,
            "branches": sorted(branches), "n_train": int(len(y)), "n_val": int(len(yv))}


def branch_rows(rows: list[dict], branch: str) -> tuple[np.ndarray, np.ndarray]:
    """(prob_fake, label) of rows that are real or fake in `branch`'s modality."""
    keep = [r for r in rows if r["prob_fake"].get(branch) is not None
            and (r["label"] == 0 or r["version"] in BRANCH_SEES[branch])]
    return (np.array([r["prob_fake"][branch] for r in keep], dtype=np.float64),
            np.array([r["label"] for r in keep], dtype=int))


def fit_adaptive_temperatures(val: list[dict]) -> dict[str, float]:
    """Per-branch T_i for confidence-adaptive fusion (see module docstring)."""
    out = {}
    for branch in ADAPTIVE_BRANCHES:
        probs, labels = branch_rows(val, branch)
        if len(labels):
            out[branch] = fit_temperature(probs, labels)
    return out


def calibrated(head: dict, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(p_cal, labels) of a fitted head over the rows that have its features."""
    x, y = feature_matrix(rows, head["feature_cols"])
    if not len(y):
        return np.zeros(0), y
    p = head["model"].predict_proba(x)[:, 1]
    return sigmoid(logit(p) / head["temperature"]), y


def adaptive_fuse(probs: dict[str, float], temperatures: dict[str, float]) -> float:
    """DESIGN.md's confidence-adaptive fusion (the same arithmetic as services/fusion)."""
    cal = {b: float(sigmoid(logit(p) / temperatures.get(b, 1.0))) for b, p in probs.items()}
    conf = {b: abs(p - 0.5) * 2.0 for b, p in cal.items()}
    total = sum(conf.values())
    if total <= 0:
        return float(np.mean(list(cal.values())))
    return float(sum(conf[b] / total * cal[b] for b in cal))


def adaptive_probs(rows: list[dict], temperatures: dict[str, float],
                   branches: Sequence[str] = ADAPTIVE_BRANCHES) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive fused P(fake) of every row over the branches it has."""
    probs, labels = [], []
    for r in rows:
        present = {b: r["prob_fake"][b] for b in branches if r["prob_fake"].get(b) is not None}
        if present:
            probs.append(adaptive_fuse(present, temperatures))
            labels.append(r["label"])
    return np.array(probs), np.array(labels, dtype=int)


def fit_bundle(train: list[dict], val: list[dict], threshold: float = 0.5) -> dict:
    """The fusion bundle dict the fusion service loads (services/fusion/fusion.py)."""
    heads = {head_key(s): fit_head(s, train, val) for s in subsets()}
    full = heads[head_key(LR_BRANCHES)]
    if full["feature_cols"] != list(FEATURE_COLS):
        raise AssertionError("the 5-way head must use FEATURE_COLS in order")
    return {"model": full["model"], "feature_cols": list(FEATURE_COLS),
            "temperature": full["temperature"], "heads": heads,
            "adaptive": {"temperatures": fit_adaptive_temperatures(val)},
            "threshold": threshold}
