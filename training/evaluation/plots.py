"""ROC curves and reliability diagrams as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from training.evaluation.metrics import expected_calibration_error, reliability_bins  # noqa: E402


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """One ROC curve per (labels, probs) entry, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (labels, probs) in curves.items():
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, probs)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, probs):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_plot(series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str,
                     n_bins: int = 15) -> Path:
    """Fraction of fakes against mean P(fake) per bin, one line per series, ECE in legend."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    for name, (labels, probs) in series.items():
        bins = reliability_bins(labels, probs, n_bins)
        used = bins["count"] > 0
        ece = expected_calibration_error(labels, probs, n_bins)
        ax.plot(bins["confidence"][used], bins["fraction_fake"][used], marker="o",
                label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="mean predicted P(fake)", ylabel="fraction fake", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
