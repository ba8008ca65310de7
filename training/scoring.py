"""The held-out numbers every branch reports (AUC, accuracy, F1, log-loss at threshold 0.5) and
the Brier-fitted temperature that fusion and the temporal export put on a logit."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from training.evaluation.metrics import logit, sigmoid

__all__ = ["TEMPERATURE_BOUNDS", "binary_metrics", "fit_temperature", "sigmoid"]


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


TEMPERATURE_BOUNDS = (0.05, 20.0)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """T > 0 minimizing the Brier score of sigmoid(logit(p) / T); 1.0 without both classes."""
    y = np.asarray(labels, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 1.0
    z = logit(probs)

    def brier(log_t: float) -> float:
        return float(np.mean((sigmoid(z / np.exp(log_t)) - y) ** 2))

    best = minimize_scalar(brier, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded")
    return float(np.exp(best.x))
