"""The audio statistics head's training: C chosen by grouped cross-validation, a stacker that
weighs AASIST and the statistics, and a head the audio service can load and apply."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

pytest.importorskip("torch")

from dfmesh.preprocess import speech_stats  # noqa: E402
from training.real import audio_stats  # noqa: E402

N = len(speech_stats.FEATURE_NAMES)


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """300 files of 6 sources, 3 copies each (the file plus a little channel noise);
    features 0-7 carry the label, every source shifts all features (its channel)."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], 150)
    groups = np.repeat([f"source{i}" for i in range(6)], 50)
    shift = np.repeat(rng.normal(0, 0.2, (6, 1, N)), 50, axis=0)
    x = rng.normal(0, 1, (300, 1, N)) + rng.normal(0, 0.2, (300, 3, N)) + shift
    x[:, :, :8] += 1.0 * y[:, None, None]
    return x, y, groups


def test_head_fitted_on_some_sources_ranks_another() -> None:
    x, y, groups = _data()
    train = groups != "source5"
    mean, scale, model, c = audio_stats.fit_statistics_head(
        x[train], y[train], groups[train], [0.01, 0.1, 1.0], inner_folds=3)
    assert c in (0.01, 0.1, 1.0)
    test = ~train
    logits = model.decision_function((x[test, 0] - mean) / scale)
    assert roc_auc_score(y[test], logits) > 0.8
    assert set(np.argsort(-np.abs(model.coef_[0]))[:4]) <= set(range(8))


def test_stacker_and_head_round_trip_into_the_service_arithmetic() -> None:
    x, y, groups = _data(1)
    mean, scale, model, _ = audio_stats.fit_statistics_head(x, y, groups, [0.1], 3)
    stat_logit = model.decision_function((x[:, 0] - mean) / scale)
    uninformative_aasist = np.full(len(y), 0.5) + np.random.default_rng(2).normal(0, 0.01, len(y))
    stack = audio_stats.fit_stacker(uninformative_aasist, stat_logit, y)
    assert stack["statistics"] > 0.5 and abs(stack["aasist"]) < stack["statistics"]
    head = speech_stats.StatisticsHead.from_manifest(
        audio_stats.make_head(mean, scale, model, stack).to_manifest())
    probs = [head.prob_fake(float(a), x[i, 0]) for i, a in enumerate(uninformative_aasist)]
    assert roc_auc_score(y, probs) > 0.9
