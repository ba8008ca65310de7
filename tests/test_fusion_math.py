"""Fusion arithmetic, pure and fast: LR heads with temperature, adaptive fusion, feature
order, head selection, scoring over branch results, and the bundle's integrity checks."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from deepfake.v1 import branch_pb2
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.config import REPO_ROOT
from dfmesh.runtime.errors import ModelIntegrityError, UpstreamUnavailable
from dfmesh.runtime.model_repo import load_verified, write_manifest
from services.fusion.explain import explain
from services.fusion.fusion import (
    EPS,
    adaptive_fuse,
    bundle_from_dict,
    calibrate,
    decide,
    load_bundle,
)
from services.fusion.heads import FULL_HEAD_KEY, LR_BRANCHES, head_key, head_label, select_head
from services.fusion.scoring import fusion_features, score, usable_results

SHIPPED_REPO = REPO_ROOT / "models"


def _cols(branches: tuple[str, ...]) -> list[str]:
    wanted = {c for b in branches for c in BRANCH_FEATURES[b]}
    return [c for c in FEATURE_COLS if c in wanted]


def _fit(cols: list[str], rng: np.random.Generator) -> LogisticRegression:
    """A real LR on synthetic clip features where fakes have higher branch scores."""
    n = 200
    y = rng.integers(0, 2, n)
    x = rng.normal(0.3 + 0.4 * y[:, None], 0.2, size=(n, len(cols)))
    return LogisticRegression(max_iter=500).fit(x, y)


def _subsets(min_size: int = 2, max_size: int = 4) -> list[tuple[str, ...]]:
    sizes = range(min_size, max_size + 1)
    return [s for k in sizes for s in itertools.combinations(LR_BRANCHES, k)]


@pytest.fixture(scope="module")
def bundle_dict() -> dict:
    rng = np.random.default_rng(7)
    heads = {}
    for subset in _subsets():
        cols = _cols(subset)
        heads[head_key(subset)] = {"model": _fit(cols, rng), "feature_cols": cols,
                                   "temperature": 1.0 + 0.1 * len(heads)}
    return {"model": _fit(list(FEATURE_COLS), rng), "feature_cols": list(FEATURE_COLS),
            "temperature": 1.7, "heads": heads, "threshold": 0.5,
            "adaptive": {"temperatures": {"visual": 2.0, "audio": 0.5}}}


@pytest.fixture(scope="module")
def bundle(bundle_dict):
    return bundle_from_dict(bundle_dict)


def _features(seed: int = 0) -> dict[str, float]:
    r = random.Random(seed)
    return {c: r.uniform(0.0, 1.0) for c in FEATURE_COLS}


def _expected(model: LogisticRegression, x: list[float], temperature: float) -> float:
    """sigmoid(logit(p_raw) / T) computed from the LR's coefficients, independently."""
    z = float(np.dot(model.coef_[0], x) + model.intercept_[0])
    p_raw = min(max(1 / (1 + math.exp(-z)), EPS), 1 - EPS)
    return 1 / (1 + math.exp(-math.log(p_raw / (1 - p_raw)) / temperature))


def test_full_head_reproduces_temperature_scaled_lr(bundle, bundle_dict) -> None:
    for seed in range(5):
        features = _features(seed)
        x = [features[c] for c in FEATURE_COLS]
        expected = _expected(bundle_dict["model"], x, bundle_dict["temperature"])
        assert bundle.full.probability(features) == pytest.approx(expected, abs=1e-9)
        assert bundle.full.raw_probability(features) == pytest.approx(
            bundle_dict["model"].predict_proba([x])[0, 1], abs=1e-12)


def test_temperature_moves_probability_toward_half(bundle) -> None:
    features = _features(3)
    raw = bundle.full.raw_probability(features)
    calibrated = bundle.full.probability(features)
    assert abs(calibrated - 0.5) < abs(raw - 0.5)  # T = 1.7 > 1 softens
    assert (calibrated - 0.5) * (raw - 0.5) > 0


def test_raw_probability_is_clipped_before_logit() -> None:
    assert calibrate(1.0, 2.0) == pytest.approx(1 / (1 + math.exp(-math.log((1 - EPS) / EPS) / 2)))
    assert calibrate(0.0, 1.0) == pytest.approx(EPS)
    assert math.isfinite(calibrate(1.0, 0.1))


def test_every_subset_head_uses_its_own_columns_and_temperature(bundle, bundle_dict) -> None:
    features = _features(11)
    for subset in _subsets():
        key = head_key(subset)
        spec = bundle_dict["heads"][key]
        x = [features[c] for c in spec["feature_cols"]]
        assert bundle.heads[key].probability(features) == pytest.approx(
            _expected(spec["model"], x, spec["temperature"]), abs=1e-9)


def test_feature_order_follows_feature_cols_not_dict_order(bundle) -> None:
    features = _features(5)
    shuffled_keys = list(features)
    random.Random(1).shuffle(shuffled_keys)
    permuted = {k: features[k] for k in shuffled_keys}
    assert list(permuted) != list(features)
    assert bundle.full.probability(permuted) == bundle.full.probability(features)
    # The order matters to the model: swapping two columns' values changes the answer.
    swapped = dict(features, tiny_prob_mean=features["sync_prob"],
                   sync_prob=features["tiny_prob_mean"])
    assert bundle.full.probability(swapped) != pytest.approx(bundle.full.probability(features))


def test_head_needs_its_features() -> None:
    rng = np.random.default_rng(0)
    data = {"model": _fit(list(FEATURE_COLS), rng), "feature_cols": list(FEATURE_COLS),
            "temperature": 1.0}
    head = bundle_from_dict(data).full
    with pytest.raises(KeyError, match="sync_prob"):
        head.probability({c: 0.5 for c in FEATURE_COLS if c != "sync_prob"})


def test_bundle_with_other_feature_order_is_refused(bundle_dict) -> None:
    reordered = dict(bundle_dict, feature_cols=list(reversed(FEATURE_COLS)))
    with pytest.raises(ModelIntegrityError, match="FEATURE_COLS"):
        bundle_from_dict(reordered)


def test_bundle_with_badly_keyed_head_is_refused(bundle_dict) -> None:
    heads = dict(bundle_dict["heads"])
    heads["visual+tiny_gate"] = heads["tiny_gate+visual"]
    with pytest.raises(ModelIntegrityError, match="sorted"):
        bundle_from_dict(dict(bundle_dict, heads=heads))


def test_head_with_foreign_features_is_refused(bundle_dict) -> None:
    heads = dict(bundle_dict["heads"])
    heads["audio+sync"] = dict(heads["audio+sync"], feature_cols=["audio_prob_fake",
                                                                   "visual_prob_max"])
    with pytest.raises(ModelIntegrityError, match="outside"):
        bundle_from_dict(dict(bundle_dict, heads=heads))


def _write_repo(root: Path, data: dict, training_data: object = "synthetic (test)") -> Path:
    version_dir = root / "fusion" / "1.0.0"
    version_dir.mkdir(parents=True)
    joblib.dump(data, version_dir / "fusion.joblib")
    write_manifest(version_dir, name="fusion-logreg", branch="fusion", version="1.0.0",
                   fmt="joblib", artifact="fusion.joblib", inputs=[], outputs=[],
                   preprocessing={}, training_data=training_data, metrics={})
    return version_dir


def test_bundle_warns_about_branch_models_it_was_not_fitted_on(tmp_path: Path,
                                                               bundle_dict) -> None:
    _write_repo(tmp_path, bundle_dict, {"scored_with": {
        "visual": "visual-resnet18:1.1.0:" + "a" * 12, "audio": "audio-cqcc:1.0.0:" + "b" * 12,
        "sync": None}})
    loaded = load_bundle(tmp_path)
    assert loaded.fitted_on == {"visual": "visual-resnet18:1.1.0:" + "a" * 12,
                                "audio": "audio-cqcc:1.0.0:" + "b" * 12}
    assert loaded.calibration_warnings({"visual": "a" * 64, "audio": "b" * 64,
                                        "sync": "c" * 64}) == []
    [warning] = loaded.calibration_warnings({"visual": "d" * 64, "audio": "b" * 64})
    assert warning.startswith("visual served model dddddddddddd")
    assert "visual-resnet18:1.1.0:aaaaaaaaaaaa" in warning
    # same ONNX file, another version (audio 2.1.0 adds a head to 2.0.0's file): warned
    served = {"visual": "a" * 64, "audio": "b" * 64}
    assert loaded.calibration_warnings(served, {"visual": "1.1.0", "audio": "1.0.0"}) == []
    [warning] = loaded.calibration_warnings(served, {"visual": "1.1.0", "audio": "2.1.0"})
    assert warning.startswith("audio served model bbbbbbbbbbbb (version 2.1.0), but")


def test_shipped_release_is_consistent() -> None:
    """The shipped bundle was fitted on exactly the branch models shipped beside it, and the
    shipped temporal model on the shipped visual model's embeddings."""
    if not (SHIPPED_REPO / "fusion").is_dir():
        pytest.skip(f"no shipped fusion bundle under {SHIPPED_REPO / 'fusion'} yet")
    bundle = load_bundle(SHIPPED_REPO)
    manifests = {b: load_verified(SHIPPED_REPO, b) for b in bundle.fitted_on}
    assert set(bundle.fitted_on) >= {"tiny_gate", "visual", "audio", "temporal", "sync"}
    assert bundle.calibration_warnings({b: m.sha256 for b, m in manifests.items()},
                                       {b: m.version for b, m in manifests.items()}) == []
    temporal = load_verified(SHIPPED_REPO, "temporal")
    assert temporal.extra["visual_model"]["sha256"] == load_verified(SHIPPED_REPO, "visual").sha256


def test_load_bundle_verifies_checksum_before_unpickling(tmp_path: Path, bundle_dict) -> None:
    version_dir = _write_repo(tmp_path, bundle_dict)
    loaded = load_bundle(tmp_path)
    assert loaded.version == "1.0.0" and len(loaded.sha256) == 64
    assert loaded.full.probability(_features(2)) == pytest.approx(
        bundle_from_dict(bundle_dict).full.probability(_features(2)))
    # Bytes that are not a pickle at all: the checksum must stop them first.
    (version_dir / "fusion.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        load_bundle(tmp_path)


def test_shipped_bundle_when_present() -> None:
    if not (SHIPPED_REPO / "fusion").is_dir():
        pytest.skip(f"no shipped fusion bundle under {SHIPPED_REPO / 'fusion'} yet")
    shipped = load_bundle(SHIPPED_REPO)
    raw = joblib.load(next((SHIPPED_REPO / "fusion").glob(f"{shipped.version}/*.joblib")))
    assert tuple(raw["feature_cols"]) == FEATURE_COLS
    features = _features(9)
    x = np.array([[features[c] for c in FEATURE_COLS]])
    p_raw = min(max(float(raw["model"].predict_proba(x)[0, 1]), EPS), 1 - EPS)
    expected = 1 / (1 + math.exp(-math.log(p_raw / (1 - p_raw)) / float(raw["temperature"])))
    assert shipped.full.probability(features) == pytest.approx(expected, abs=1e-9)
    for key in shipped.heads:
        assert key == FULL_HEAD_KEY or len(key.split("+")) in (1, 2, 3, 4)
    # from 2.0.0 an audio file (the audio branch alone) gets a calibrated one-branch head
    assert select_head(shipped.heads, ["audio"]) == "audio"


# --- adaptive fusion (DESIGN.md) ---

def test_adaptive_matches_formula() -> None:
    probs = {"visual": 0.9, "audio": 0.4, "sync": 0.2, "mri": 0.5}
    p, weights = adaptive_fuse(probs)
    c = {b: abs(v - 0.5) * 2 for b, v in probs.items()}
    total = sum(c.values())
    assert weights == pytest.approx({b: c[b] / total for b in probs})
    assert weights["mri"] == 0.0
    assert p == pytest.approx(sum(c[b] / total * probs[b] for b in probs))
    assert p == pytest.approx((0.8 * 0.9 + 0.2 * 0.4 + 0.6 * 0.2) / 1.6)


def test_adaptive_all_zero_confidence_gives_equal_weights() -> None:
    p, weights = adaptive_fuse({"visual": 0.5, "audio": 0.5, "mri": 0.5})
    assert p == pytest.approx(0.5)
    assert weights == pytest.approx({"visual": 1 / 3, "audio": 1 / 3, "mri": 1 / 3})


def test_adaptive_calibrates_each_branch_with_its_temperature() -> None:
    temperatures = {"visual": 2.0}
    p, _ = adaptive_fuse({"visual": 0.9}, temperatures)
    assert p == pytest.approx(1 / (1 + math.exp(-math.log(9) / 2)))
    with pytest.raises(ValueError):
        adaptive_fuse({})


def test_decide_threshold_and_confidence() -> None:
    assert decide(0.5, 0.5) == ("DEEPFAKE", 50.0)
    assert decide(0.2, 0.5) == ("AUTHENTIC", pytest.approx(80.0))
    assert decide(0.7, 0.8)[0] == "AUTHENTIC"


# --- head selection ---

def test_head_key_sorts_and_ignores_mri() -> None:
    assert head_key(["visual", "mri", "audio"]) == "audio+visual"
    assert head_label(FULL_HEAD_KEY) == "5way"
    assert head_label("audio+visual") == "2way:audio+visual"


def test_select_head_for_every_subset(bundle) -> None:
    available = list(bundle.heads)
    for k in range(0, 6):
        for subset in itertools.combinations(LR_BRANCHES, k):
            chosen = select_head(available, [*subset, "mri"])
            if k < 2:
                assert chosen is None, subset
            else:
                assert chosen == head_key(subset), subset


def test_between_heads_of_one_size_faces_come_before_audio() -> None:
    # a clip whose tiny_gate failed: the face head and the audio head both fit, one branch
    # each; the name would pick "audio", the precedence picks the faces
    available = ["audio", "visual", "tiny_gate+visual"]
    assert select_head(available, ["visual", "audio", "sync"]) == "visual"
    assert select_head(available, ["visual", "audio"],
                       precedence=("audio", "visual")) == "audio"
    assert select_head(available, ["tiny_gate", "visual", "audio"]) == "tiny_gate+visual"
    assert select_head(["audio", "tiny_gate"], ["tiny_gate", "audio"]) == "tiny_gate"


def test_select_head_falls_back_to_largest_fitting_head() -> None:
    available = [FULL_HEAD_KEY, "tiny_gate+visual", "audio+tiny_gate+visual", "audio+sync"]
    present = ["tiny_gate", "visual", "audio", "temporal"]
    assert select_head(available, present) == "audio+tiny_gate+visual"
    assert select_head(available, ["sync", "temporal"]) is None


# --- scoring over branch results ---

def _result(branch: str, prob: float, status=branch_pb2.OK) -> branch_pb2.BranchResult:
    names = BRANCH_FEATURES[branch]
    features = {n: (1.0 - prob if n == "sync_prob" else prob) for n in names}
    return branch_pb2.BranchResult(branch=branch, status=status, prob_fake=prob, features=features)


def _results(**probs: float) -> dict[str, branch_pb2.BranchResult]:
    return {b: _result(b, p) for b, p in probs.items()}


def test_score_uses_head_matching_present_branches(bundle) -> None:
    results = _results(tiny_gate=0.3, visual=0.9, audio=0.2, temporal=0.8, sync=0.1, mri=0.7)
    full = score(results, bundle=bundle, mode="logreg", method="fusion")
    assert full.head == "5way" and "mri" not in full.used
    assert full.prob_fake == pytest.approx(bundle.full.probability(fusion_features(results)))
    del results["sync"]
    three = score(results, bundle=bundle, mode="logreg", method="fusion")
    assert three.head == "4way:audio+temporal+tiny_gate+visual"


def test_no_input_branch_is_left_out_of_the_head(bundle) -> None:
    results = _results(tiny_gate=0.3, visual=0.9, temporal=0.8, mri=0.7)
    results["audio"] = branch_pb2.BranchResult(branch="audio", status=branch_pb2.NO_INPUT)
    results["sync"] = branch_pb2.BranchResult(branch="sync", status=branch_pb2.NO_INPUT)
    usable = usable_results(results)
    assert set(usable) == {"tiny_gate", "visual", "temporal", "mri"}
    s = score(usable, bundle=bundle, mode="logreg", method="fusion")
    assert s.head == "3way:temporal+tiny_gate+visual"
    assert set(fusion_features(usable)) == set(_cols(("tiny_gate", "visual", "temporal")))


def test_single_branch_and_methods(bundle) -> None:
    audio_only = _results(audio=0.83)
    s = score(audio_only, bundle=bundle, mode="logreg", method="fusion")
    assert (s.head, s.prob_fake) == ("1way:audio", pytest.approx(0.83))
    results = _results(tiny_gate=0.3, visual=0.9, temporal=0.6, mri=0.2)
    assert score(results, bundle=bundle, mode="logreg", method="plain_frames").prob_fake == 0.9
    assert score(results, bundle=bundle, mode="logreg", method="mri").prob_fake == 0.2
    assert score(results, bundle=bundle, mode="adaptive", method="temporal").prob_fake == 0.6
    with pytest.raises(UpstreamUnavailable, match="audio|visual"):
        score(_results(audio=0.5), bundle=bundle, mode="logreg", method="plain_frames")
    with pytest.raises(UpstreamUnavailable):
        score({}, bundle=bundle, mode="logreg", method="fusion")


def test_adaptive_scoring_includes_mri(bundle) -> None:
    results = _results(visual=0.9, audio=0.2, mri=0.95)
    s = score(results, bundle=bundle, mode="adaptive", method="fusion")
    expected, _ = adaptive_fuse({"audio": 0.2, "mri": 0.95, "visual": 0.9},
                                bundle.adaptive_temperatures)
    assert s.head == "adaptive:audio+mri+visual"
    assert s.prob_fake == pytest.approx(expected)


def test_explanation_names_the_drivers() -> None:
    text = explain(deepfake=True, probs={"visual": 0.91, "sync": 0.12, "audio": 0.3},
                   used=["visual", "sync", "audio"], sync_prob=0.88,
                   missing={"mri": "unavailable: UNAVAILABLE"})
    assert text.startswith("visual artifacts detected (visual 0.91)")
    assert "sync" not in text.split(";")[0]
    assert "missing: mri" in text
    real = explain(deepfake=False, probs={"visual": 0.1, "sync": 0.12}, used=["visual", "sync"],
                   sync_prob=0.88)
    assert "audio consistent with lip motion (sync 0.88)" in real
