"""Fit and ship fusion 2.x on the held-out branch scores, and regenerate the report.

    python -m training.real.release --version 2.0.0

Reads runs/real/features/rows.jsonl (training.real.score, then training.real.temporal),
runs leave-one-source-out over the fusion heads, fits head temperatures and the decision
threshold on those held-out predictions, fits the shipped heads on every row, and writes
models/fusion/<version>/ (fusion.joblib, manifest.json, the held-out rows the report is
computed from) and docs/EVALUATION.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import joblib
import numpy as np

from dfmesh.branches import BRANCH_NAMES
from dfmesh.runtime.model_repo import load_verified, write_manifest
from training import reproduce
from training.evaluation.metrics import binary_report
from training.fusion.fit import FUSION_ARITHMETIC, MANIFEST_IO
from training.real import fusion, report
from training.real.score import features_dir
from training.runtime import MODELS_DIR

ARTIFACT = "fusion.joblib"
MAX_FAKE_EXITS = 0.02


def commands(fusion_version: str) -> list[str]:
    """The commands that rebuild this release from ../shared: its recipe's plan
    (training.reproduce), every model it needs first."""
    return reproduce.plan_commands(reproduce.plan(reproduce.load_recipe("fusion", fusion_version)))


def served_models() -> dict[str, str]:
    out = {}
    for b in BRANCH_NAMES:
        try:
            m = load_verified(MODELS_DIR, b, "latest")
        except Exception:  # noqa: BLE001 - a branch without a model is simply not recorded
            continue
        out[b] = f"{m.name}:{m.version}:{m.sha256[:12]}"
    return out


def gate_threshold(rows: list[dict[str, Any]], decision: float,
                   max_fake_exits: float = MAX_FAKE_EXITS) -> dict[str, Any]:
    """The tiny_prob_max below which the gate ends an analysis: the largest value at which at
    most `max_fake_exits` of the fakes with faces would exit (never above the decision
    threshold), and what it costs and saves on these rows."""
    with_faces = [r for r in rows if "tiny_prob_max" in r["features"]]
    fakes = np.array([r["features"]["tiny_prob_max"] for r in with_faces if r["label"] == 1])
    reals = np.array([r["features"]["tiny_prob_max"] for r in with_faces if r["label"] == 0])
    # the largest value with at most that share of fakes strictly below it
    ordered = np.sort(fakes)
    value = float(min(ordered[int(max_fake_exits * fakes.size)], decision)) if fakes.size else 0.0
    return {"threshold": value, "fakes_exiting": float((fakes < value).mean()),
            "reals_exiting": float((reals < value).mean()) if reals.size else 0.0,
            "fitted_on": f"tiny_prob_max of {fakes.size} fakes and {reals.size} reals with "
                         "faces, each scored by a tiny_gate that never trained on its source"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    try:
        steps = commands(args.version)
    except reproduce.RecipeError as exc:
        raise SystemExit(f"{exc}: write the release's recipe first "
                         "(docs/models/README.md)") from exc
    rows = [json.loads(x) for x in (features_dir() / "rows.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["collection"] != "dev" and fusion.row_branches(r)]
    held = fusion.leave_one_source_out(train_rows)
    temps = fusion.temperatures(held)
    fusion.calibrate_rows(held, temps)
    threshold = fusion.real_flag_threshold(held)
    dev = [r for r in rows if r["collection"] == "dev" and fusion.row_branches(r)]
    heads_all = fusion.fit_heads(train_rows, fusion.subsets_present(train_rows))
    for r in dev:  # dev is never fitted on: score it with heads fitted on every other row
        key = fusion.choose_head(heads_all, fusion.row_branches(r))
        if key:
            x = fusion.matrix([r], fusion.head_columns(key.split("+")))
            r.update(head=key, p_raw=float(heads_all[key].predict_proba(x)[0, 1]))
    dev = [r for r in dev if "head" in r]
    fusion.calibrate_rows(dev, temps)
    scored_with = served_models()
    bundle = fusion.bundle(train_rows, temps, threshold, scored_with, heads_all)
    gate = gate_threshold(train_rows, threshold)
    bundle["early_exit_threshold"] = gate["threshold"]
    version_dir = MODELS_DIR / "fusion" / args.version
    version_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, version_dir / ARTIFACT)
    heldout = held + dev
    (version_dir / "heldout_rows.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "entry"}) + "\n" for r in heldout))
    meta = {"version": args.version, "threshold": threshold, "temperatures": temps,
            "gate": gate, "commands": steps}
    (version_dir / "heldout_meta.json").write_text(json.dumps(meta, indent=1))
    summary: dict[str, Any] = {}
    for kind in ("video", "image", "audio"):
        mine = [r for r in held if r["kind"] == kind]
        if mine:
            summary[kind] = binary_report([r["label"] for r in mine], [r["p"] for r in mine],
                                          threshold=threshold)
    write_manifest(
        version_dir, name="fusion-logreg", branch="fusion", version=args.version, fmt="joblib",
        artifact=ARTIFACT, **MANIFEST_IO,
        preprocessing=FUSION_ARITHMETIC | {
            "head_input": "dfmesh.preprocess.stats.column_logits of the head's probability "
                          "features (counts are not read)",
            "heads": sorted(bundle["heads"])},
        training_data={
            "rows": "every labelled file of ../shared/train and the reals of ../shared/data "
                    "(research / non-commercial material), scored out of fold by source "
                    "(training.real.score); ../shared/data/dev never fitted on",
            "counts": dict(Counter(f"{r['kind']}:{r['label']}" for r in train_rows)),
            "scored_with": scored_with,
            "note": "heads are fitted on held-out (fold) branch scores; the served branch "
                    "models are the same recipes trained on every source"},
        metrics={"leave_one_source_out": summary},
        head_summary={k: {"feature_cols": h["feature_cols"], "temperature": h["temperature"]}
                      for k, h in bundle["heads"].items()},
        adaptive_temperatures=bundle["adaptive"]["temperatures"], threshold=threshold,
        early_exit=gate,
        heldout_rows="heldout_rows.jsonl", **reproduce.manifest_entry("fusion", args.version))
    out = report.run(version_dir / "heldout_rows.jsonl")
    print(f"wrote {version_dir} and {out}")
    print(json.dumps({k: {m: v[m] for m in ("n", "auc", "ece", "log_loss")}
                      for k, v in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
