"""Binary detection metrics, defined once for training reports, fusion and EVALUATION.md.

Labels are 1 = fake (spoof, out of sync, manipulated), probabilities are P(fake); decisions
use `threshold` (0.5 unless stated). AUC and TPR@FPR are NaN where one class is missing.
ECE uses `n_bins` equal-width bins over [0, 1] (the last bin includes 1.0) and weighs each
bin's |accuracy - confidence| gap by its share of samples, with confidence = P(fake) and
accuracy = fraction of fakes in the bin (the reliability-diagram convention for P(class 1)).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    roc_auc_score,
    roc_curve,
)

EPS = 1e-7


def _arrays(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=int).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), 0.0, 1.0)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} probabilities")
    return y, p


def expected_calibration_error(labels, probs, n_bins: int = 15) -> float:
    """ECE over `n_bins` equal-width probability bins."""
    y, p = _arrays(labels, probs)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(ece)


def reliability_bins(labels, probs, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, fraction of fakes and count (empty bins have count 0, NaN)."""
    y, p = _arrays(labels, probs)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(bins, weights=p, minlength=n_bins) / count
        frac = np.bincount(bins, weights=y, minlength=n_bins) / count
    return {"confidence": conf, "fraction_fake": frac, "count": count,
            "edges": np.linspace(0.0, 1.0, n_bins + 1)}


def tpr_at_fpr(labels, probs, max_fpr: float = 0.01) -> float:
    """Highest true-positive rate reachable with false-positive rate <= max_fpr."""
    y, p = _arrays(labels, probs)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def binary_report(labels, probs, threshold: float = 0.5, n_bins: int = 15) -> dict:
    """Every number EVALUATION.md reports for one set of predictions."""
    y, p = _arrays(labels, probs)
    both = len(np.unique(y)) == 2
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "n": int(y.size), "n_fake": int(y.sum()),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "log_loss": float(log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, pos_label=1)) if y.size else float("nan"),
        "ece": expected_calibration_error(y, p, n_bins),
        "tpr_at_1pct_fpr": tpr_at_fpr(y, p, 0.01),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "threshold": threshold,
    }


def sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logit(p) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(q / (1.0 - q))
