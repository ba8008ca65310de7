"""Fusion 2.x on real labelled files: heads fitted on out-of-fold branch features
(training.real.score), judged leave-one-source-out, calibrated and thresholded on held-out
predictions only.

Heads: one per subset of a modality family's branches that the rows have (HEAD_FAMILIES:
visual; audio; from 2.6.0 the face family no longer holds tiny_gate, which scores at chance
held out), one-branch heads included, so an audio file gets a calibrated audio probability
and a clip its face head (the service's rule: faces before audio). StandardScaler +
LogisticRegression over the log-odds of each branch's *mean* probability
(dfmesh.preprocess.stats.column_logits; max, p90 and counts are left out: over one face and
over 64 they mean different things, and counts tell the medium, not the label). Why so few:
held out by source, every head that mixed modalities or read temporal or sync ranked clips
worse than visual alone (docs/models/fusion.md, the ablation): a few dozen
clips with audio are not enough to weigh audio against faces, and temporal and sync score
0.33 and 0.46. Leave-one-source-out: for every source, every head is refitted without the
source's rows and scores them; each row takes the head its branches select, as the service
would. Each head's temperature is fitted (Brier) on those held-out predictions, and the
decision threshold is the 95th percentile of the held-out reals' calibrated probability, so
about 5% of real files are flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from dfmesh.branches import LR_BRANCHES
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS, column_logits
from services.fusion.heads import HEAD_PRECEDENCE, select_head
from training.evaluation.metrics import logit, sigmoid
from training.real.folds import source_key
from training.scoring import fit_temperature

PROB_FEATURES = {
    "tiny_gate": ("tiny_prob_mean",), "visual": ("visual_prob_mean",),
    "audio": ("audio_prob_fake",), "temporal": ("temporal_prob_fake",), "sync": ("sync_prob",),
}
HEAD_FAMILIES: tuple[tuple[str, ...], ...] = (("visual",), ("audio",))
"""Branches a head may combine; no head mixes families, none reads tiny_gate, temporal or
sync."""
FACE_HEADS_2_5: tuple[tuple[str, ...], ...] = (("tiny_gate", "visual"), ("audio",))
"""Fusion 2.5.0's families: tiny_gate beside visual in the face heads."""
ALL_PROBS = PROB_FEATURES | {"tiny_gate": ("tiny_prob_mean", "tiny_prob_max", "tiny_prob_p90"),
                             "visual": ("visual_prob_mean", "visual_prob_max",
                                        "visual_prob_p90")}
AUDIO_FIRST = ("audio", "visual", "tiny_gate", "sync", "temporal")
ABLATION: dict[str, tuple[tuple[tuple[str, ...], ...], dict[str, tuple[str, ...]],
                          tuple[str, ...]]] = {
    "shipped: visual mean alone; audio alone": (HEAD_FAMILIES, PROB_FEATURES, HEAD_PRECEDENCE),
    "face heads (tiny_gate, visual means; 2.5.0's); audio alone":
        (FACE_HEADS_2_5, PROB_FEATURES, HEAD_PRECEDENCE),
    "visual mean alone; audio alone, a clip with audio taking the audio head":
        (HEAD_FAMILIES, PROB_FEATURES, AUDIO_FIRST),
    "face heads with max and p90; audio alone": (FACE_HEADS_2_5, ALL_PROBS, HEAD_PRECEDENCE),
    "heads mixing tiny_gate, visual, audio":
        ((("tiny_gate", "visual", "audio"),), PROB_FEATURES, HEAD_PRECEDENCE),
    "+ sync": ((("tiny_gate", "visual", "audio", "sync"),), PROB_FEATURES, HEAD_PRECEDENCE),
    "+ sync, temporal (2.0.0's heads, means only)":
        ((LR_BRANCHES,), PROB_FEATURES, HEAD_PRECEDENCE),
    "2.0.0's heads (every branch, max and p90)": ((LR_BRANCHES,), ALL_PROBS, HEAD_PRECEDENCE),
}
"""Head designs the report compares, leave-one-source-out, on the same held-out rows."""
TARGET_REAL_FLAG_RATE = 0.05


def key_of(branches: Sequence[str]) -> str:
    return "+".join(sorted(branches))


def row_branches(row: dict[str, Any]) -> tuple[str, ...]:
    """The LR branches whose every feature the row has (what the service's head choice sees)."""
    return tuple(b for b in LR_BRANCHES
                 if all(row["features"].get(c) is not None for c in BRANCH_FEATURES[b]))


def head_columns(branches: Sequence[str]) -> list[str]:
    """A head's input: its branches' features in FEATURE_COLS order (the service builds x so)."""
    wanted = {c for b in branches for c in BRANCH_FEATURES[b]}
    return [c for c in FEATURE_COLS if c in wanted]


Probs = dict[str, tuple[str, ...]]


def head_model(branches: Sequence[str], c: float = 0.5,
               cols: Sequence[str] | None = None, probs: Probs | None = None) -> Pipeline:
    """A head over `cols` (default head_columns(branches)) that reads only the branches'
    probability features."""
    cols = list(cols or head_columns(branches))
    read = sorted(cols.index(f) for b in branches for f in (probs or PROB_FEATURES)[b])
    return Pipeline([
        ("logits", FunctionTransformer(column_logits, kw_args={"columns": read})),
        ("scale", StandardScaler()),
        ("lr", LogisticRegression(C=c, max_iter=5000, class_weight="balanced")),
    ])


def matrix(rows: list[dict[str, Any]], cols: Sequence[str]) -> np.ndarray:
    """[n, len(cols)]; an absent feature is 0.5 (only the full head's stand-in, see
    `bundle`, may be given columns its branches do not read)."""
    return np.array([[float(r["features"].get(c, 0.5)) for c in cols] for r in rows])


def subsets_present(rows: list[dict[str, Any]],
                    families: Sequence[Sequence[str]] = HEAD_FAMILIES
                    ) -> list[tuple[str, ...]]:
    """Every non-empty subset, inside one family, of the branches some row has, in
    LR_BRANCHES order."""
    seen = {row_branches(r) for r in rows}
    out: set[tuple[str, ...]] = set()
    for s in seen:
        for family in families:
            inside = tuple(b for b in s if b in family)
            for k in range(1, len(inside) + 1):
                out.update(combinations(inside, k))
    return sorted(out, key=lambda t: (len(t), t))


def fit_heads(rows: list[dict[str, Any]], subsets: list[tuple[str, ...]],
              probs: Probs | None = None) -> dict[str, Pipeline]:
    """A head per subset, on the rows that have all its branches (both classes needed);
    `probs` (default PROB_FEATURES) names the features each branch gives its heads."""
    heads = {}
    for s in subsets:
        have = [r for r in rows if set(s) <= set(row_branches(r))]
        y = np.array([r["label"] for r in have])
        if len(have) >= 8 and 0 < y.sum() < len(y):
            heads[key_of(s)] = head_model(s, probs=probs).fit(matrix(have, head_columns(s)), y)
    return heads


def choose_head(heads: dict[str, Any], branches: Sequence[str],
                precedence: Sequence[str] = HEAD_PRECEDENCE) -> str | None:
    """The head the fusion service would take (services.fusion.heads.select_head)."""
    return select_head(heads, branches, precedence)


def leave_one_source_out(rows: list[dict[str, Any]],
                         families: Sequence[Sequence[str]] = HEAD_FAMILIES,
                         probs: Probs | None = None,
                         precedence: Sequence[str] = HEAD_PRECEDENCE) -> list[dict[str, Any]]:
    """Each row's raw fused probability from heads fitted without its source, and the head
    (heads as `families` and `probs` make them, chosen by `precedence`: the ablation varies
    them)."""
    subsets = subsets_present(rows, families)
    out = []
    for source in sorted({source_key(r) for r in rows}):
        held = [r for r in rows if source_key(r) == source]
        heads = fit_heads([r for r in rows if source_key(r) != source], subsets, probs)
        for r in held:
            key = choose_head(heads, row_branches(r), precedence)
            if key is None:
                continue
            x = matrix([r], head_columns(key.split("+")))
            p = float(heads[key].predict_proba(x)[0, 1])
            out.append(r | {"head": key, "p_raw": p})
    return out


def temperatures(held_out: list[dict[str, Any]]) -> dict[str, float]:
    """Per head, the Brier-fitted temperature of its held-out predictions."""
    temps = {}
    for key in sorted({r["head"] for r in held_out}):
        mine = [r for r in held_out if r["head"] == key]
        temps[key] = fit_temperature(np.array([r["p_raw"] for r in mine]),
                                     np.array([r["label"] for r in mine]))
    return temps


def calibrate_rows(held_out: list[dict[str, Any]], temps: dict[str, float]) -> None:
    for r in held_out:
        r["p"] = float(sigmoid(logit(r["p_raw"]) / temps.get(r["head"], 1.0)))


def real_flag_threshold(held_out: list[dict[str, Any]],
                        rate: float = TARGET_REAL_FLAG_RATE) -> float:
    reals = np.array([r["p"] for r in held_out if r["label"] == 0])
    return float(np.quantile(reals, 1.0 - rate)) if reals.size else 0.5


def bundle(rows: list[dict[str, Any]], temps: dict[str, float], threshold: float,
           scored_with: dict[str, str], heads: dict[str, Pipeline] | None = None
           ) -> dict[str, Any]:
    """The bundle the fusion service loads: the full head at the top level (FEATURE_COLS),
    every fitted subset head under `heads` (fitted on `rows` unless given), temperatures
    from held-out predictions; each head's `reads` names the branches its model reads."""
    heads = dict(heads or fit_heads(rows, subsets_present(rows)))
    full_key = key_of(LR_BRANCHES)
    full = heads.get(full_key)
    full_reads = list(LR_BRANCHES)
    if full is None:
        # No row has every branch (temporal is not served with this visual model): the
        # widest fitted head stands in, refitted over all 12 columns, reading only its own.
        widest = choose_head(heads, LR_BRANCHES)
        assert widest is not None
        have = [r for r in rows if set(widest.split("+")) <= set(row_branches(r))]
        full = head_model(widest.split("+"), cols=FEATURE_COLS).fit(
            matrix(have, FEATURE_COLS), np.array([r["label"] for r in have]))
        temps = temps | {full_key: temps.get(widest, 1.0)}
        full_reads = widest.split("+")
    entry = {k: {"model": m, "feature_cols": head_columns(k.split("+")),
                 "temperature": temps.get(k, 1.0), "branches": k.split("+"),
                 "reads": k.split("+")}
             for k, m in heads.items() if k != full_key}
    entry[full_key] = {"model": full, "feature_cols": list(FEATURE_COLS),
                       "temperature": temps.get(full_key, 1.0), "branches": list(LR_BRANCHES),
                       "reads": full_reads}
    return {"model": full, "feature_cols": list(FEATURE_COLS),
            "temperature": temps.get(full_key, 1.0), "reads": full_reads, "heads": entry,
            "adaptive": {"temperatures": branch_temperatures(rows)},
            "threshold": threshold, "scored_with": scored_with}


def branch_temperatures(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Adaptive fusion's per-branch temperatures, on the out-of-fold branch probabilities."""
    out = {}
    for b in ("tiny_gate", "visual", "audio", "sync", "mri", "temporal"):
        have = [r for r in rows if r["prob_fake"].get(b) is not None]
        if have:
            out[b] = fit_temperature(np.array([r["prob_fake"][b] for r in have]),
                                     np.array([r["label"] for r in have]))
    return out
