"""Source-disjoint folds: every model scores each labelled file with weights that never saw
that file's source (repository, demo page or dataset, with its reals).

True leave-one-source-out needs one model per source (about 60 here); that is affordable for
fusion's logistic regression but not for fine-tuning a CNN on two CPU cores, so the branch
models are cross-fitted over NUM_FOLDS folds of whole sources. Every file then has an
out-of-fold score from a model that was trained without its source; fusion is fitted on those
scores and itself evaluated leave-one-source-out. FF++ and the image figures that show FF++
faces (FaceSwapper, DiffFace) count as one source, as the shared/train README asks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

NUM_FOLDS = 4
CELLS = ("video:0", "video:1", "image:0", "image:1", "audio:0", "audio:1")


def source_key(record: Mapping[str, Any]) -> str:
    """The unit held out together: the source, with FF++ and FF++-derived figures merged."""
    if str(record.get("group", "")).startswith("ff:"):
        return "FaceForensics++"
    return str(record["source"])


def assign_folds(records: Sequence[Mapping[str, Any]], num_folds: int = NUM_FOLDS
                 ) -> dict[str, int]:
    """source_key -> fold, balancing each fold's share of every (kind, label) cell.

    Deterministic: largest sources first, each to the fold whose cells stay most even.
    Records of the dev collection are left out (never trained on, never folded)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        if r.get("collection") == "dev":
            continue
        counts[source_key(r)][f"{r['kind']}:{r['label']}"] += 1
    totals = Counter[str]()
    for c in counts.values():
        totals.update(c)
    scale = np.array([1.0 / max(1, totals[c]) for c in CELLS])
    load = np.zeros((num_folds, len(CELLS)))
    folds: dict[str, int] = {}
    for key in sorted(counts, key=lambda k: (-sum(counts[k].values()), k)):
        vec = np.array([counts[key][c] for c in CELLS]) * scale
        cost = [float(((load[f] + vec) ** 2).sum()) for f in range(num_folds)]
        best = int(np.argmin(cost))
        folds[key] = best
        load[best] += vec
    return folds


def fold_of(record: Mapping[str, Any], folds: Mapping[str, int]) -> int:
    """The record's fold, -1 for the dev collection."""
    if record.get("collection") == "dev":
        return -1
    return folds[source_key(record)]


def describe(records: Iterable[Mapping[str, Any]], folds: Mapping[str, int]
             ) -> list[dict[str, Any]]:
    """Per fold: sources and (kind, label) counts, for the report."""
    out: list[dict[str, Any]] = [{"fold": f, "sources": [], "counts": Counter()}
                                 for f in range(max(folds.values()) + 1)]
    for key, f in sorted(folds.items()):
        out[f]["sources"].append(key)
    for r in records:
        f = fold_of(r, folds)
        if f >= 0:
            out[f]["counts"][f"{r['kind']}:{r['label']}"] += 1
    return out
