"""The held-out numbers every branch reports: AUC, accuracy, F1, log-loss (threshold 0.5)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Metrics of fake probabilities against labels (1 = fake); AUC is NaN with one class."""
    y = np.asarray(labels, dtype=int)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "n_fake": int(y.sum()),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "f1": float(f1_score(y, p >= 0.5, zero_division=0)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
    }


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
