"""The evaluation metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluation.metrics import (
    binary_report,
    expected_calibration_error,
    reliability_bins,
    tpr_at_fpr,
)
from training.fusion.fit import adaptive_fuse
from training.scoring import fit_temperature

LABELS = [0, 0, 1, 1]
PROBS = [0.1, 0.4, 0.35, 0.8]


def test_binary_report_matches_hand_computed_values() -> None:
    report = binary_report(LABELS, PROBS)
    assert report["auc"] == pytest.approx(0.75)          # 3 of 4 (fake, real) pairs ordered
    assert report["accuracy"] == pytest.approx(0.75)     # predictions 0, 0, 0, 1
    assert report["f1"] == pytest.approx(2 / 3)          # precision 1, recall 1/2
    assert report["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    expected_ll = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert report["log_loss"] == pytest.approx(expected_ll)
    assert report["confusion"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert report["tpr_at_1pct_fpr"] == pytest.approx(0.5)  # only 0.8 clears every real


def test_ece_with_one_sample_per_bin_is_the_mean_gap() -> None:
    # 15 bins: 0.1 -> bin 1, 0.4 -> 6, 0.35 -> 5, 0.8 -> 12; gaps 0.1, 0.4, 0.65, 0.2
    assert expected_calibration_error(LABELS, PROBS) == pytest.approx(1.35 / 4)


def test_ece_of_a_calibrated_bin_is_zero_and_edges_are_inclusive() -> None:
    labels = [1, 0, 1, 0, 1]
    probs = [0.6] * 5   # 60 % fakes at confidence 0.6
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0)
    bins = reliability_bins([1], [1.0])
    assert bins["count"][-1] == 1 and bins["count"].sum() == 1


def test_tpr_at_fpr_and_single_class() -> None:
    assert tpr_at_fpr([0, 1, 1], [0.2, 0.9, 0.1]) == pytest.approx(0.5)
    assert math.isnan(binary_report([1, 1], [0.2, 0.9])["auc"])


def test_temperature_recovers_a_known_scaling() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=20000)
    labels = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    overconfident = 1 / (1 + np.exp(-3.0 * z))       # logits 3x too large
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.1)


def test_adaptive_fusion_weights_by_confidence() -> None:
    # c = 0.8 and 0.2 -> weights 0.8, 0.2 -> 0.8 * 0.9 + 0.2 * 0.4
    assert adaptive_fuse({"visual": 0.9, "audio": 0.4}, {}) == pytest.approx(0.8)
    assert adaptive_fuse({"visual": 0.5, "audio": 0.5}, {}) == pytest.approx(0.5)


def test_report_tables_end_with_the_confusion_matrix() -> None:
    from training.evaluation.report import table

    lines = table({"head": binary_report(LABELS, PROBS)}, "method")
    assert lines[0].endswith("| TN / FP / FN / TP |")
    assert lines[1].count("|---") == lines[0].count("|") - 1
    assert lines[2].endswith("| 2 / 0 / 1 / 1 |")


def test_grid_plots_draw_one_panel_per_group(tmp_path) -> None:
    cv2 = pytest.importorskip("cv2")
    from training.evaluation.plots import reliability_grid, roc_grid

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 30)
    series = {"a": (labels, np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1)),
              "b": (labels, rng.random(60))}
    one = cv2.imread(str(roc_grid({"only": series}, tmp_path / "one.png")))
    three = cv2.imread(str(reliability_grid({"x": series, "y": series, "z": series},
                                            tmp_path / "three.png")))
    assert one.shape[:2] == (550, 605)          # 5.5 x 5 inches at 110 dpi
    assert three.shape[:2] == (1100, 1210)      # a 2 x 2 grid, the fourth panel blank
