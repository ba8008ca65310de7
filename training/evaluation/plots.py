"""ROC curves and reliability diagrams as PNG files (matplotlib, Agg backend): one panel, or a
grid of panels (one per group of heads)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from training.evaluation.metrics import expected_calibration_error, reliability_bins  # noqa: E402

Series = dict[str, tuple[np.ndarray, np.ndarray]]
"""name -> (labels, probs)"""


def draw_roc(ax, curves: Series, title: str) -> None:
    """One ROC curve per (labels, probs) entry, AUC in the legend."""
    for name, (labels, probs) in curves.items():
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, probs)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, probs):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=7)


def draw_reliability(ax, series: Series, title: str, n_bins: int = 15) -> None:
    """Fraction of fakes against mean P(fake) per bin, one line per series, ECE in legend."""
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    for name, (labels, probs) in series.items():
        bins = reliability_bins(labels, probs, n_bins)
        used = bins["count"] > 0
        ece = expected_calibration_error(labels, probs, n_bins)
        ax.plot(bins["confidence"][used], bins["fraction_fake"][used], marker="o",
                markersize=3, label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="mean predicted P(fake)", ylabel="fraction fake", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=7)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(curves: Series, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    draw_roc(ax, curves, title)
    return _save(fig, path)


def reliability_plot(series: Series, path: Path, title: str, n_bins: int = 15) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    draw_reliability(ax, series, title, n_bins)
    return _save(fig, path)


def _grid(panels: dict[str, Series], path: Path, draw: Callable) -> Path:
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 5 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels.items(), strict=False):
        draw(ax, series, title)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return _save(fig, path)


def roc_grid(panels: dict[str, Series], path: Path) -> Path:
    """One ROC panel per entry of `panels` (title -> series)."""
    return _grid(panels, path, draw_roc)


def reliability_grid(panels: dict[str, Series], path: Path) -> Path:
    """One reliability panel per entry of `panels` (title -> series), 15 bins."""
    return _grid(panels, path, draw_reliability)
