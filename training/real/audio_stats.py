"""The audio branch's second opinion: spectral statistics, stacked with fine-tuned AASIST.

    python -m training.real.audio_stats --recipe training/recipes/audio-2.2.0.json \
        --features --folds --export

A recipe names the AASIST version it builds on (its fold models in runs/real/audio/<base>/,
its out-of-fold scores in runs/real/audio/oof.jsonl, its final model in models/audio/<base>/;
training.real.audio makes all three) and the statistics head's schedule. Steps:

    --features  dfmesh.preprocess.speech_stats.speech_statistics of every audio file (the
                files training.real.audio uses): the clean clip and `aug_copies` copies, each
                through a random channel chain of training.real.audio (mp3 / opus / aac /
                telephone / low-pass, then gain; the same distribution for both labels)
    --folds     per source-disjoint fold k (training.real.folds, the folds AASIST's were
                cross-fitted on): a standardized logistic regression fitted on the other
                folds' clean and channel copies, its C chosen by grouped cross-validation over
                their sources; then a stacker (logistic regression over [logit(AASIST), the
                statistics' logit]) fitted on the other folds' out-of-fold scores. Every file
                gets a stacked score from models that never saw its source.
    --export    the fold models as model repositories (what training.real.score serves) and
                the final model (fitted on every file) as models/audio/<version>/: AASIST's
                ONNX file unchanged, the head in the manifest's `statistics_head`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold

from dfmesh.preprocess import speech_stats
from dfmesh.runtime.model_repo import read_manifest, write_manifest
from training.real.audio import (
    OUT_DIR,
    audio_records,
    channel_chain,
    oof_metrics,
    oof_row,
)
from training.real.folds import assign_folds, fold_of, source_key
from training.real.pack import load_entry, read_index
from training.runtime import MODELS_DIR, RUNS_DIR

log = logging.getLogger(__name__)

ROLES = ("clean", "channel")


def cache_path(recipe: dict[str, Any]) -> Path:
    s = recipe["statistics"]
    name = (f"audio_statistics_{len(speech_stats.FEATURE_NAMES)}f_s{s['seed']}"
            f"_k{s['aug_copies']}.jsonl")
    return RUNS_DIR / "cache" / "real" / name


def file_statistics(record: dict[str, Any], aug_copies: int, seed: int) -> dict[str, Any]:
    """The clean clip's statistics and `aug_copies` channel copies', seeded by the path."""
    pcm = load_entry(record)["pcm"]
    rng = np.random.default_rng(
        (int(hashlib.sha1(record["path"].encode()).hexdigest()[:8], 16) + seed) % 2**31)
    rows = [speech_stats.speech_statistics(pcm).tolist()]
    chains = ["identity"]
    for _ in range(aug_copies):
        copy, chain = channel_chain(pcm, rng)
        rows.append(speech_stats.speech_statistics(copy).tolist())
        chains.append(chain)
    return {"path": record["path"], "features": rows, "chains": chains}


def build_features(records: list[dict[str, Any]], recipe: dict[str, Any], workers: int = 2
                   ) -> None:
    """Append every missing file's statistics to the cache (resumable)."""
    path = cache_path(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    done = {json.loads(x)["path"] for x in lines}
    todo = [r for r in records if r["path"] not in done]
    s = recipe["statistics"]
    with ProcessPoolExecutor(workers) as pool, open(path, "a") as out:
        futures = [pool.submit(file_statistics, r, s["aug_copies"], s["seed"]) for r in todo]
        for n, fut in enumerate(futures):
            out.write(json.dumps(fut.result()) + "\n")
            out.flush()
            if n % 100 == 0:
                log.info("statistics: %d/%d", n, len(todo))


def load_features(records: list[dict[str, Any]], recipe: dict[str, Any]) -> np.ndarray:
    """[files, 1 + aug_copies, features] in `records` order."""
    cached = {}
    for line in cache_path(recipe).read_text().splitlines():
        row = json.loads(line)
        cached[row["path"]] = row["features"]
    missing = [r["path"] for r in records if r["path"] not in cached]
    if missing:
        raise SystemExit(f"{len(missing)} files lack statistics: run --features first")
    return np.array([cached[r["path"]] for r in records], dtype=np.float64)


def _balanced_lr(c: float) -> LogisticRegression:
    """Class-balanced, so that fold models trained on different real/fake mixes (one fold
    holds only reals) put their logits on one scale."""
    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced")


def fit_statistics_head(x: np.ndarray, y: np.ndarray, groups: np.ndarray,
                        grid: list[float], inner_folds: int
                        ) -> tuple[np.ndarray, np.ndarray, LogisticRegression, float]:
    """Standardize, pick C by grouped CV log-loss over `groups`, fit on everything.
    x: [files, copies, features]; every copy of a file shares its label and group."""
    copies = x.shape[1]
    flat = x.reshape(-1, x.shape[2])
    mean, scale = flat.mean(0), flat.std(0) + 1e-9
    z = (flat - mean) / scale
    labels, grp = np.repeat(y, copies), np.repeat(groups, copies)
    splits = min(inner_folds, len(set(groups.tolist())))
    losses = [sum(log_loss(labels[te], _balanced_lr(c).fit(z[tr], labels[tr])
                           .predict_proba(z[te])[:, 1], labels=[0, 1], normalize=False)
                  for tr, te in GroupKFold(splits).split(z, labels, grp))
              for c in grid]
    best = grid[int(np.argmin(losses))]
    return mean, scale, _balanced_lr(best).fit(z, labels), best


def fit_stacker(aasist: np.ndarray, statistics: np.ndarray, y: np.ndarray) -> dict[str, float]:
    m = _balanced_lr(1.0).fit(speech_stats.stacked_logits(aasist, statistics), y)
    return {"bias": float(m.intercept_[0]), "aasist": float(m.coef_[0, 0]),
            "statistics": float(m.coef_[0, 1])}


def make_head(mean: np.ndarray, scale: np.ndarray, model: LogisticRegression,
              stack: dict[str, float]) -> speech_stats.StatisticsHead:
    return speech_stats.StatisticsHead(mean, scale, model.coef_[0].astype(np.float64),
                                       float(model.intercept_[0]), stack)


def aasist_oof(records: list[dict[str, Any]]) -> np.ndarray:
    scores = {}
    for line in (OUT_DIR / "oof.jsonl").read_text().splitlines():
        row = json.loads(line)
        scores[row["path"]] = row["prob_fake"]
    return np.array([scores[r["path"]] for r in records])


def cross_fit(records: list[dict[str, Any]], x: np.ndarray, recipe: dict[str, Any]
              ) -> dict[str, Any]:
    """Fold heads, out-of-fold scores and metrics (see the module docstring)."""
    s = recipe["statistics"]
    folds = assign_folds(read_index())
    fold = np.array([fold_of(r, folds) for r in records])
    y = np.array([int(r["label"]) for r in records])
    groups = np.array([source_key(r) for r in records])
    base = aasist_oof(records)
    stat_logit = np.zeros(len(records))
    channel_logit = np.zeros(len(records))  # the held-out file's first channel copy
    fitted = {}
    for k in sorted(set(fold.tolist()) - {-1}):
        train = fold != k
        mean, scale, model, c = fit_statistics_head(x[train], y[train], groups[train],
                                                    s["C_grid"], s["inner_folds"])
        test = fold == k
        stat_logit[test] = model.decision_function((x[test, 0] - mean) / scale)
        if x.shape[1] > 1:
            channel_logit[test] = model.decision_function((x[test, 1] - mean) / scale)
        fitted[k] = (mean, scale, model, c)
        log.info("fold %d: C=%g", k, c)
    stacked = np.zeros(len(records))
    heads = {}
    for k, (mean, scale, model, c) in fitted.items():
        train, test = fold != k, fold == k
        stack = fit_stacker(base[train], stat_logit[train], y[train])
        head = make_head(mean, scale, model, stack)
        stacked[test] = [head.prob_fake(float(base[i]), x[i, 0]) for i in np.flatnonzero(test)]
        heads[k] = {"head": head, "C": c}
    rows = [oof_row(r, int(fold[i]), float(stacked[i]))
            | {"aasist": float(base[i]), "statistics": float(expit(stat_logit[i])),
               "statistics_channel": float(expit(channel_logit[i]))}
            for i, r in enumerate(records)]
    metrics = {name: oof_metrics(rows, key) for name, key in
               (("stacked", "prob_fake"), ("statistics", "statistics"), ("aasist", "aasist"),
                ("statistics_through_a_channel", "statistics_channel"))}
    return {"heads": heads, "rows": rows, "metrics": metrics, "stat_logit": stat_logit,
            "base": base, "y": y, "groups": groups}


def _manifest_for(base_dir: Path, out_dir: Path, version: str, head: speech_stats.StatisticsHead,
                  metrics: dict[str, Any], recipe: dict[str, Any]) -> Path:
    """Copy AASIST's ONNX file from `base_dir` and write a manifest carrying the head."""
    base = read_manifest(base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base.artifact_path, out_dir / base.artifact)
    extra = {k: v for k, v in base.extra.items() if k not in ("recipe", "statistics_head")}
    extra["model"] = (f"{extra.get('model', 'AASIST')}; its clip probability stacked with a "
                      "logistic regression over dfmesh.preprocess.speech_stats")
    extra["decision_threshold"] = metrics["threshold"]
    training_data = dict(base.training_data)
    training_data["statistics_head"] = (
        "the same audio files; clean and channel-chained copies (training.real.audio "
        "channel_chain) of both labels; no pseudo-spoofs")
    return write_manifest(
        out_dir, name="audio-aasist-l-statistics", branch="audio", version=version,
        fmt=base.format, artifact=base.artifact, inputs=base.inputs, outputs=base.outputs,
        preprocessing=base.preprocessing, training_data=training_data, metrics=metrics,
        **extra, statistics_preprocessing=speech_stats.PREPROCESSING,
        statistics_head=head.to_manifest(), aasist_version=base.version,
        recipe=recipe | {"path": f"training/recipes/audio-{version}.json"})


def export(records: list[dict[str, Any]], x: np.ndarray, fit: dict[str, Any],
           recipe: dict[str, Any]) -> list[Path]:
    version, base_version = recipe["version"], recipe["aasist"]["version"]
    summary = {name: {m: v["pooled"][m] for m in ("n", "n_fake", "auc", "ece", "log_loss")}
               for name, v in fit["metrics"].items()}
    what = ("out-of-fold: each file scored by the AASIST fold model and the statistics head "
            "fitted without its source (4 source-disjoint folds, training.real.folds)")
    threshold = fit["metrics"]["stacked"]["threshold_flags_5pct_reals"]
    out = []
    for k, fold_head in fit["heads"].items():
        base_dir = OUT_DIR / base_version / f"fold{k}" / "repo" / "audio" / base_version
        target = OUT_DIR / version / f"fold{k}" / "repo" / "audio" / version
        out.append(_manifest_for(base_dir, target, version, fold_head["head"],
                                 {"split": f"fold {k} model: trained without fold {k}'s sources",
                                  "threshold": threshold,
                                  "C": fold_head["C"], "oof_summary": summary}, recipe))
    s = recipe["statistics"]
    mean, scale, model, c = fit_statistics_head(x, fit["y"], fit["groups"], s["C_grid"],
                                                s["inner_folds"])
    stack = fit_stacker(fit["base"], fit["stat_logit"], fit["y"])
    out.append(_manifest_for(MODELS_DIR / "audio" / base_version,
                             MODELS_DIR / "audio" / version, version,
                             make_head(mean, scale, model, stack),
                             {"split": what, "steps": recipe["steps"], "C": c,
                              "threshold": threshold,
                              "oof": fit["metrics"]["stacked"], "oof_summary": summary,
                              "statistics_alone_oof": fit["metrics"]["statistics"],
                              "aasist_alone_oof": fit["metrics"]["aasist"]}, recipe))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.audio_stats",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--features", action="store_true")
    parser.add_argument("--folds", action="store_true")
    parser.add_argument("--export", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="first N files (smoke runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = json.loads(args.recipe.read_text())
    records = audio_records(read_index())[: args.limit]
    if args.features:
        build_features(records, recipe)
    if args.folds or args.export:
        x = load_features(records, recipe)
        fit = cross_fit(records, x, recipe)
        result = OUT_DIR / recipe["version"]
        result.mkdir(parents=True, exist_ok=True)
        (result / "oof.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fit["rows"]))
        (result / "metrics.json").write_text(json.dumps(fit["metrics"], indent=1))
        print(json.dumps({n: {m: round(v["pooled"][m], 3) for m in ("auc", "ece", "log_loss")}
                          for n, v in fit["metrics"].items()}))
        if args.export:
            for path in export(records, x, fit, recipe):
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
