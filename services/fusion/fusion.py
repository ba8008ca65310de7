"""Fusion arithmetic: the calibrated logistic-regression heads and confidence-adaptive fusion.

LOGREG: p_raw = model.predict_proba(x)[:, 1] with x in the head's feature_cols order,
p = sigmoid(logit(clip(p_raw)) / T). ADAPTIVE: each branch's probability is calibrated
with its own temperature, c_i = |p_i - 0.5| * 2, w_i = c_i / sum(c), p = sum(w_i * p_i),
with equal weights where every c_i is 0 (DESIGN.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.errors import ModelIntegrityError
from dfmesh.runtime.model_repo import load_verified
from services.fusion.heads import FULL_HEAD_KEY, LR_BRANCHES, head_key

EPS = 1e-6
DEFAULT_THRESHOLD = 0.5
DEFAULT_EARLY_EXIT_THRESHOLD = 0.2


def logit(p: float) -> float:
    p = min(max(p, EPS), 1.0 - EPS)
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def calibrate(p: float, temperature: float) -> float:
    """Temperature scaling of a probability: sigmoid(logit(p) / T), p clipped to [1e-6, 1-1e-6]."""
    return sigmoid(logit(p) / temperature)


@dataclass(frozen=True)
class LogRegHead:
    """One fitted head: an sklearn classifier over `feature_cols`, and its temperature."""

    key: str
    model: Any
    feature_cols: tuple[str, ...]
    temperature: float
    reads: tuple[str, ...]
    """The branches whose features the model reads (a bundle without `reads`: every branch of
    its key). A stand-in full head is given all 12 columns but reads fewer; the result names
    these."""

    def raw_probability(self, features: Mapping[str, float]) -> float:
        """The uncalibrated P(fake), features taken by name in feature_cols order."""
        missing = [c for c in self.feature_cols if c not in features]
        if missing:
            raise KeyError(f"head {self.key} needs features {', '.join(missing)}")
        x = np.array([[float(features[c]) for c in self.feature_cols]], dtype=np.float64)
        return float(self.model.predict_proba(x)[0, 1])

    def probability(self, features: Mapping[str, float]) -> float:
        """The calibrated P(fake): sigmoid(logit(p_raw) / T)."""
        return calibrate(self.raw_probability(features), self.temperature)


@dataclass(frozen=True)
class FusionBundle:
    """The loaded fusion bundle: LR heads by key (the full 5-way under FULL_HEAD_KEY),
    the bundle's decision threshold if it has one, and per-branch adaptive temperatures."""

    heads: dict[str, LogRegHead]
    threshold: float | None = None
    early_exit_threshold: float | None = None
    """tiny_prob_max below which the gate may end an analysis (bundles from 2.0.0 on)."""
    adaptive_temperatures: dict[str, float] = field(default_factory=dict)
    name: str = "fusion"
    version: str = ""
    sha256: str = ""
    fitted_on: dict[str, str] = field(default_factory=dict)
    """branch -> "name:version:sha256[:12]" of the model whose scores the heads and
    temperatures were fitted to (the manifest's training_data.scored_with)."""

    def calibration_warnings(self, served: Mapping[str, str],
                             versions: Mapping[str, str] | None = None) -> list[str]:
        """One warning per branch in `served` (branch -> served artifact sha256) whose model
        differs from the one this bundle was fitted on: its probabilities were never calibrated
        against these heads. `versions` (branch -> served model version) catches a version
        that shares its ONNX file with another but not what its manifest adds (audio 2.1.0's
        statistics head beside AASIST 2.0.0's file)."""
        out = []
        versions = versions or {}
        for branch, sha in sorted(served.items()):
            fitted = self.fitted_on.get(branch) or ""
            if not fitted or not sha:
                continue
            parts = fitted.split(":")
            same_file = parts[-1] == sha[:12]
            version = versions.get(branch)
            same_version = version is None or len(parts) < 3 or parts[-2] == version
            if same_file and same_version:
                continue
            what = sha[:12] + (f" (version {version})" if version else "")
            out.append(f"{branch} served model {what}, but fusion {self.version} was fitted "
                       f"on {fitted}: its weight and calibration were not fitted to this model")
        return out

    @property
    def full(self) -> LogRegHead:
        return self.heads[FULL_HEAD_KEY]


def _head_from(key: str, data: Mapping[str, Any]) -> LogRegHead:
    try:
        model, cols, temperature = data["model"], tuple(data["feature_cols"]), data["temperature"]
    except KeyError as exc:
        raise ModelIntegrityError(f"fusion head {key!r} lacks {exc.args[0]!r}") from None
    allowed = {c for b in key.split("+") for c in BRANCH_FEATURES.get(b, ())}
    if not set(cols) <= allowed or not hasattr(model, "predict_proba"):
        raise ModelIntegrityError(
            f"fusion head {key!r} has feature_cols {list(cols)} outside its branches' features")
    if not float(temperature) > 0:
        raise ModelIntegrityError(f"fusion head {key!r} has temperature {temperature}; must be > 0")
    reads = tuple(data.get("reads") or key.split("+"))
    if not set(reads) <= set(key.split("+")):
        raise ModelIntegrityError(f"fusion head {key!r} says it reads {list(reads)}, "
                                  "outside its branches")
    return LogRegHead(key, model, cols, float(temperature), reads)


def bundle_from_dict(data: Mapping[str, Any], *, version: str = "",
                     sha256: str = "") -> FusionBundle:
    """Validate a bundle dict (as joblib loads it); the top-level feature_cols must be
    exactly dfmesh.preprocess.stats.FEATURE_COLS, in order."""
    if tuple(data.get("feature_cols", ())) != FEATURE_COLS:
        raise ModelIntegrityError(
            f"fusion bundle feature_cols {list(data.get('feature_cols', []))} differ from "
            f"FEATURE_COLS {list(FEATURE_COLS)}; refusing a bundle trained on other features")
    heads = {FULL_HEAD_KEY: _head_from(FULL_HEAD_KEY, data)}
    for key, head in (data.get("heads") or {}).items():
        branches = key.split("+")
        if head_key(branches) != key or not key:
            raise ModelIntegrityError(
                f"fusion head key {key!r} is not sorted LR branch names joined by '+' "
                f"(branches: {', '.join(LR_BRANCHES)})")
        heads[key] = _head_from(key, head)
    threshold = data.get("threshold")
    early = data.get("early_exit_threshold")
    adaptive = data.get("adaptive") or {}
    temperatures = {str(k): float(v) for k, v in (adaptive.get("temperatures") or {}).items()}
    return FusionBundle(heads=heads, threshold=None if threshold is None else float(threshold),
                        early_exit_threshold=None if early is None else float(early),
                        adaptive_temperatures=temperatures, version=version, sha256=sha256)


def load_bundle(repo_root: Path, version: str = "latest") -> FusionBundle:
    """Checksum-verify models/fusion/<version>/, then (only then) joblib.load it."""
    import joblib

    manifest = load_verified(repo_root, "fusion", version)
    data = joblib.load(manifest.artifact_path)
    if not isinstance(data, Mapping):
        raise ModelIntegrityError(f"{manifest.artifact_path} does not hold a fusion bundle dict")
    scored_with = (manifest.training_data.get("scored_with")
                   if isinstance(manifest.training_data, Mapping) else None) or {}
    return replace(bundle_from_dict(data, version=manifest.version, sha256=manifest.sha256),
                   fitted_on={str(b): str(v) for b, v in scored_with.items() if v})


def adaptive_fuse(probs: Mapping[str, float], temperatures: Mapping[str, float] | None = None,
                  ) -> tuple[float, dict[str, float]]:
    """Confidence-adaptive fusion over branch probabilities; returns (p, weights by branch).

    Each p_i is calibrated with temperatures[branch] (default 1.0), c_i = |p_i - 0.5| * 2,
    w_i = c_i / sum(c), p = sum(w_i p_i); all c_i zero gives equal weights.
    """
    if not probs:
        raise ValueError("adaptive fusion needs at least one branch probability")
    temperatures = temperatures or {}
    calibrated = {b: calibrate(p, temperatures.get(b, 1.0)) for b, p in probs.items()}
    confidence = {b: abs(p - 0.5) * 2.0 for b, p in calibrated.items()}
    total = sum(confidence.values())
    if total <= 0.0:
        weights = {b: 1.0 / len(calibrated) for b in calibrated}
    else:
        weights = {b: c / total for b, c in confidence.items()}
    return sum(weights[b] * calibrated[b] for b in calibrated), weights


def decide(p: float, threshold: float) -> tuple[str, float]:
    """("DEEPFAKE" | "AUTHENTIC", confidence 0-100 in the verdict given)."""
    if p >= threshold:
        return "DEEPFAKE", 100.0 * p
    return "AUTHENTIC", 100.0 * (1.0 - p)
