"""`python -m training evaluate`: write docs/EVALUATION.md and docs/img/*.png.

Numbers come from three places, and the report says which each one is:
  1. the fusion test split (runs/fusion/rows.jsonl, split "test"): identity-disjoint real
     talking-clip segments and their pseudo-fake versions, scored by every shipped model;
     fusion heads were fitted on train and their temperatures on val, never on test;
  2. each branch model's own held-out split, as recorded in its manifest at export time;
  3. ../shared/data/dev (67 labelled face crops from a public benchmark): a small real-world
     sanity check of the frame branches only; nothing was tuned on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import cv2
import joblib
import numpy as np

from dfmesh.runtime.model_repo import load_verified, read_manifest, resolve_version_dir
from training.evaluation.metrics import binary_report
from training.evaluation.plots import (
    Series,
    reliability_grid,
    reliability_plot,
    roc_grid,
    roc_plot,
)
from training.fusion.branches import ServedBranches, frame_inputs
from training.fusion.dataset import load_rows
from training.fusion.fit import (
    BRANCH_SEES,
    LR_BRANCHES,
    adaptive_probs,
    branch_rows,
    calibrated,
    feature_matrix,
    head_key,
)
from training.runtime import MODELS_DIR, REPO_ROOT, RUNS_DIR, shared_data_dir

COLUMNS = ("n", "n_fake", "auc", "accuracy", "f1", "log_loss", "brier", "ece",
           "tpr_at_1pct_fpr")
FAKE_VERSIONS = ("visual", "temporal", "audio", "lipsync", "visual_audio")
SINGLE_BRANCHES = ("tiny_gate", "visual", "mri", "temporal", "audio", "sync")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=Path, default=RUNS_DIR / "fusion" / "rows.jsonl")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "EVALUATION.md")
    parser.add_argument("--data-dir", type=Path, default=None)


def fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def confusion_cell(report: dict) -> str:
    c = report.get("confusion")
    return f"{c['tn']} / {c['fp']} / {c['fn']} / {c['tp']}" if c else ""


def table(named: dict[str, dict], first: str = "") -> list[str]:
    """A Markdown table of binary_report dicts, the confusion matrix at 0.5 last."""
    lines = [f"| {first} | " + " | ".join(COLUMNS) + " | TN / FP / FN / TP |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for name, report in named.items():
        lines.append(f"| {name} | " + " | ".join(fmt(report.get(c, "")) for c in COLUMNS)
                     + f" | {confusion_cell(report)} |")
    return lines


def single_branch(rows: list[dict], branch: str) -> tuple[np.ndarray, np.ndarray]:
    keep = [r for r in rows if r["prob_fake"].get(branch) is not None]
    return (np.array([r["label"] for r in keep], int),
            np.array([r["prob_fake"][branch] for r in keep], float))


def models_present(rows: list[dict]) -> set[str]:
    return {b for r in rows for b, p in r["prob_fake"].items() if p is not None}


def own_modality(rows: list[dict]) -> tuple[dict[str, dict], Series]:
    """Each branch on real rows vs the fake kinds its modality can show (fit.BRANCH_SEES):
    reports by table label, and (labels, probs) by branch for the plots."""
    out, curves = {}, {}
    for branch in SINGLE_BRANCHES:
        probs, labels = branch_rows(rows, branch)
        if len(labels):
            out[f"{branch} (real vs {', '.join(BRANCH_SEES[branch])})"] = binary_report(
                labels, probs)
            curves[branch] = (labels, probs)
    return out, curves


def dev_sanity(models: ServedBranches, data_dir: Path) -> tuple[dict[str, dict], Series]:
    """Per-crop scores of the frame branches on ../shared/data/dev: reports and curves."""
    files = sorted((data_dir / "dev").glob("*.jpg"))
    labels = np.array([1 if "__fake__" in f.name else 0 for f in files])
    crops = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    out, curves = {}, {}
    for branch in ("tiny_gate", "visual", "mri"):
        if branch not in models.available:
            continue
        probs = []
        for crop in crops:
            score = models.score(branch, frame_inputs([crop], [True]))
            probs.append(np.nan if score is None else score.prob_fake)
        out[branch] = binary_report(labels, np.array(probs))
        curves[branch] = (labels, np.array(probs))
    return out, curves


def summary_lines(headline: dict, own: dict, ablation: dict, labels: np.ndarray) -> list[str]:
    """A few sentences computed from the tables below."""
    five = next(iter(headline.values()))
    adaptive = list(headline.values())[-1]
    best = max(ablation.items(), key=lambda kv: np.nan_to_num(kv[1]["auc"]))
    branch_aucs = ", ".join(f"{name.split(' ')[0]} {fmt(r['auc'])}" for name, r in own.items())
    c = five["confusion"]
    fpr = fmt(c["fp"] / max(1, c["fp"] + c["tn"]))
    fnr = fmt(c["fn"] / max(1, c["fn"] + c["tp"]))
    return [
        f"- 5-way calibrated LR: AUC {fmt(five['auc'])}, accuracy {fmt(five['accuracy'])}, "
        f"Brier {fmt(five['brier'])} on {five['n']} test rows; confidence-adaptive fusion: AUC "
        f"{fmt(adaptive['auc'])}. Best head on test: {best[0]} (AUC {fmt(best[1]['auc'])}; "
        "reported, not selected: the service always uses the head that fits the branches "
        "present).",
        f"- Each branch against the fakes of its own modality: {branch_aucs}. Strongest: "
        + ", ".join(f"{name.split(' ')[0]} ({fmt(r['auc'])})" for name, r in sorted(
            own.items(), key=lambda kv: -np.nan_to_num(kv[1]["auc"]))[:2])
        + "; the fused number cannot be better than what its inputs know.",
        f"- {int(labels.sum())} of {len(labels)} test rows are fake (up to 5 fake versions per "
        "2 real versions) and the heads are fitted class-balanced. At threshold 0.5 the "
        f"5-way head calls {c['fp']} of {c['fp'] + c['tn']} real rows fake and {c['fn']} of "
        f"{c['fn'] + c['tp']} fake rows real (false-positive rate {fpr}, miss rate {fnr}). "
        "AUC and TPR@1%FPR do not depend on the threshold.",
    ]


def early_exit_lines(test: list[dict], thresholds: tuple[float, ...] = (0.2, 0.5, 0.8)
                     ) -> list[str]:
    """How often tiny_gate alone would end the analysis (tiny_prob_max below the threshold)
    on the test rows, for real and for fake rows: an exit on a fake is a missed fake."""
    rows = [r for r in test if r["features"].get("tiny_prob_max") is not None]
    lines = ["| threshold | real rows that exit | fake rows that exit (missed) |",
             "|---|---|---|"]
    for t in thresholds:
        cells = []
        for label in (0, 1):
            group = [r for r in rows if r["label"] == label]
            n = sum(r["features"]["tiny_prob_max"] < t for r in group)
            cells.append(f"{n} of {len(group)}")
        lines.append(f"| {t:g} | {cells[0]} | {cells[1]} |")
    return lines


def stale_lines(scored: dict[str, str | None], shipped: dict[str, str]) -> list[str]:
    """Warnings where the rows were scored by other model versions than models/ holds."""
    return [f"- **Warning**: rows were scored with {branch} `{scored.get(branch)}` but "
            f"models/ holds `{version}`; re-run with `--rescore {branch}`."
            for branch, version in shipped.items() if scored.get(branch) != version]


def first_report(metrics: dict, path: str) -> tuple[dict, str]:
    """The first dict with an "auc" in a manifest's metrics (depth-first), and its key path."""
    if "auc" in metrics:
        return metrics, path
    for key, value in metrics.items():
        if isinstance(value, dict):
            found, where = first_report(value, f"{path}.{key}" if path else key)
            if found:
                return found, where
    return {}, path


def branch_manifest_lines(models_dir: Path) -> list[str]:
    lines = ["| branch | model | version | held-out split (as the manifest states it) | "
             "AUC | accuracy |", "|---|---|---|---|---|---|"]
    for branch in SINGLE_BRANCHES:
        try:
            m = read_manifest(resolve_version_dir(models_dir, branch))
        except Exception:  # noqa: BLE001 - a missing branch is reported as missing
            lines.append(f"| {branch} | not exported | | | | |")
            continue
        metrics = m.metrics or {}
        key = next((k for k in ("test_window", "test_pseudo_fakes", "test", "test_crop",
                                "test_clip") if isinstance(metrics.get(k), dict)), None)
        test, where = first_report(metrics.get(key, {}), key or "")
        split = str(metrics.get("split", metrics.get("test_split", "")))
        split = f"{split[:140]} (`metrics.{where}`)" if split else f"`metrics.{where}`"
        lines.append(f"| {branch} | {m.name} | {m.version} | {split} | "
                     f"{fmt(float(test.get('auc', float('nan'))))} | "
                     f"{fmt(float(test.get('accuracy', float('nan'))))} |")
    return lines


def run(args: argparse.Namespace) -> dict:
    data_dir = args.data_dir or shared_data_dir()
    rows = load_rows(args.rows)
    test = [r for r in rows if r["split"] == "test"]
    manifest = load_verified(args.models_dir, "fusion")
    bundle = joblib.load(manifest.artifact_path)
    img = args.out.parent / "img"
    full = bundle["heads"][head_key(LR_BRANCHES)]

    p5, y5 = calibrated(full, test)
    x_raw, _ = feature_matrix(test, full["feature_cols"])
    p5_raw = full["model"].predict_proba(x_raw)[:, 1]
    pa, ya = adaptive_probs(test, bundle["adaptive"]["temperatures"])
    headline = {f"5-way LR, calibrated (T={full['temperature']:.2f})": binary_report(y5, p5),
                "5-way LR, before temperature": binary_report(y5, p5_raw),
                f"confidence-adaptive ({'+'.join(sorted(models_present(test)))})":
                    binary_report(ya, pa)}
    singles = {}
    curves = {"5-way LR": (y5, p5), "adaptive": (ya, pa)}
    for branch in SINGLE_BRANCHES:
        y, p = single_branch(test, branch)
        if len(y):
            singles[f"{branch} alone (prob_fake)"] = binary_report(y, p)
            curves[branch] = (y, p)
    by_version = {}
    versions = np.array([r["version"] for r in test if all(
        r["features"].get(c) is not None for c in full["feature_cols"])])
    for version in FAKE_VERSIONS:
        mask = (versions == version) | (y5 == 0)
        if (versions == version).any():
            by_version[f"real vs {version}"] = binary_report(y5[mask], p5[mask])
    ablation, head_curves = {}, {}
    for key, head in sorted(bundle["heads"].items(), key=lambda kv: (len(kv[0].split("+")),
                                                                     kv[0])):
        p, y = calibrated(head, test)
        if len(y):
            ablation[f"{len(key.split('+'))}-way {key}"] = binary_report(y, p)
            head_curves.setdefault(f"{len(key.split('+'))}-way heads", {})[key] = (y, p)
    by_size = {}
    for k in (2, 3, 4, 5):
        aucs = [r["auc"] for name, r in ablation.items() if name.startswith(f"{k}-way")]
        by_size[k] = (float(np.nanmean(aucs)), float(np.nanmin(aucs)), float(np.nanmax(aucs)),
                      len(aucs)) if aucs else None
    own, own_curves = own_modality(test)
    models = ServedBranches(args.models_dir)
    dev, dev_curves = dev_sanity(models, data_dir)

    roc_plot(curves, img / "roc_fusion_test.png", "Fusion test split: ROC")
    reliability_plot({"5-way raw": (y5, p5_raw), "5-way calibrated": (y5, p5),
                      "adaptive": (ya, pa)}, img / "reliability_fusion_test.png",
                     "Fusion test split: reliability (15 bins)")
    roc_grid(head_curves, img / "roc_heads_test.png")
    reliability_grid(head_curves, img / "reliability_heads_test.png")
    branch_panels = {"each branch, real vs its own modality's fakes (test)": own_curves,
                     "frame branches on dev/ (67 crops)": dev_curves}
    roc_grid(branch_panels, img / "roc_branches.png")
    reliability_grid(branch_panels, img / "reliability_branches.png")
    c = headline[next(iter(headline))]["confusion"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO_ROOT, check=False).stdout.strip()
    splits = {s: sorted({r["clip"].split("/")[-1] for r in rows if r["split"] == s})
              for s in ("train", "val", "test")}
    seg_counts = {s: len({r["segment"] for r in rows if r["split"] == s}) for s in splits}
    scored = {}
    models_json = args.rows.with_suffix(".models.json")
    if models_json.is_file():
        scored = json.loads(models_json.read_text())
    lines = [
        "# Evaluation",
        "",
        f"Generated by `python -m training evaluate` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"at commit {commit or 'unknown'}; every number below comes from that command.",
        "",
        "**Read this first.** All fusion numbers are on *pseudo-fakes* made from the real "
        "clips in `../shared/data/talking` (image pseudo-fakes, temporal manipulations, "
        "resynthesized speech, shifted or swapped audio): they measure whether the mesh "
        "detects the artefact families it was trained for on people it has never seen, not "
        "how it does on real deepfakes from the wild. The test split is small "
        f"({seg_counts['test']} segments of {len(splits['test'])} clips), so every number "
        "has a wide confidence interval. Nothing was tuned on the test split or on dev/.",
        "",
        "## Summary",
        "",
        *summary_lines(headline, own, ablation, y5),
        "",
        "## Data",
        "",
        "- **Fusion test split**: identity-disjoint (training.data.identities; the same "
        "assignment every branch model used), segments of up to 3 s of real clips with a real "
        "audio track, each in 7 versions: real, real_b (other frames, other channel draw), "
        "visual, temporal, audio (resynthesis), lipsync (audio shifted 0.4-1.0 s or swapped), "
        "visual_audio. Label 1 = any manipulation.",
        f"  - train clips ({seg_counts['train']} segments): {', '.join(splits['train'])}",
        f"  - val clips ({seg_counts['val']} segments): {', '.join(splits['val'])}",
        f"  - test clips ({seg_counts['test']} segments): {', '.join(splits['test'])}",
        "- Heads fitted on train; temperatures (and adaptive per-branch temperatures) fitted "
        "on val by minimizing the Brier score; test used only here.",
        "- Models scored: " + (", ".join(f"`{v}`" for v in scored.values() if v)
                               or "see manifest"),
        *stale_lines(scored, models.versions()),
        f"- Fusion bundle: `models/fusion/{manifest.version}/fusion.joblib` "
        f"(sha256 {manifest.sha256[:16]}...).",
        "",
        "## Fusion on the test split",
        "",
        *table(headline, "method"),
        "",
        f"Confusion matrix, 5-way calibrated at threshold 0.5: TN {c['tn']}, FP {c['fp']}, "
        f"FN {c['fn']}, TP {c['tp']}.",
        "",
        "![ROC](img/roc_fusion_test.png) ![reliability](img/reliability_fusion_test.png)",
        "",
        "### Each branch alone on the same rows",
        "",
        "Branch prob_fake as the service reports it (sync: 1 - sync_prob). A branch only "
        "sees its own modality, so its AUC over *all* fake kinds is low by construction.",
        "",
        *table(singles, "branch"),
        "",
        "And each branch on real rows against only the fake kinds its modality can show:",
        "",
        *table(own, "branch"),
        "",
        "![ROC of each branch](img/roc_branches.png) "
        "![reliability of each branch](img/reliability_branches.png)",
        "",
        "(Left panels: these rows; right panels: the dev crops below.)",
        "",
        "### 5-way head by kind of fake (real rows vs one kind)",
        "",
        *table(by_version, "subset"),
        "",
        "### Early exit at tiny_gate",
        "",
        "The service ends an analysis after the gate when every patch is below "
        "`DFMESH_EARLY_EXIT_THRESHOLD` (tiny_prob_max below it; default 0.2) and calls the "
        "clip authentic. On the test rows:",
        "",
        *early_exit_lines(test),
        "",
        "## Ablation: 2-, 3-, 4- and 5-way heads (test split, calibrated)",
        "",
        "The heads the fusion service falls back to when branches are missing.",
        "",
        "| heads | mean AUC | min | max | count |",
        "|---|---|---|---|---|",
        *[f"| {k}-way | {fmt(v[0])} | {fmt(v[1])} | {fmt(v[2])} | {v[3]} |"
          for k, v in by_size.items() if v],
        "",
        *table(ablation, "head"),
        "",
        "![ROC of every head](img/roc_heads_test.png)",
        "",
        "![reliability of every head](img/reliability_heads_test.png)",
        "",
        "## Branch models on their own held-out splits",
        "",
        "From each manifest's `metrics` at export time (each branch's own test split and "
        "pseudo-fakes; see docs/models/<branch>.md).",
        "",
        *branch_manifest_lines(args.models_dir),
        "",
        "## dev/: small real-world sanity check (frame branches only)",
        "",
        "`../shared/data/dev`: 67 face crops (34 real, 33 fake) from a public deepfake "
        "benchmark, each scored alone as a one-crop clip. Too small to be a benchmark; "
        "nothing was selected or tuned on it. It is the only real-deepfake number here.",
        "",
        *table(dev, "branch"),
        "",
        "## Definitions",
        "",
        "training/evaluation/metrics.py: AUC (ROC), accuracy / F1 / confusion at threshold "
        "0.5, log-loss, Brier score, ECE over 15 equal-width bins, TPR at 1% FPR (highest TPR "
        "with FPR <= 0.01). Calibration: p_cal = sigmoid(logit(p) / T).",
        "",
        "Reproduce: `python -m training train --branch fusion --rescore all` (scores the clips "
        "with the shipped models and fits the bundle), then `python -m training evaluate`.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    summary = {"headline": headline, "singles": singles, "by_version": by_version,
               "ablation": ablation, "dev": dev}
    (RUNS_DIR / "fusion").mkdir(parents=True, exist_ok=True)
    (RUNS_DIR / "fusion" / "evaluation.json").write_text(json.dumps(summary, indent=1,
                                                                     default=float))
    print(f"wrote {args.out}")
    return summary

