"""Visual 2.2.x: a fine-tuned detector (a visual 2.1.x recipe's fold and final models) stacked
with MesoInception4, frozen, as its authors trained it on Deepfakes faces
(training.models.meso): logit = b + w_d * detector logit + w_m * MesoNet log-odds, per crop.

    python -m training.real.visual_stack --recipe RECIPE --folds --export

(RECIPE: training/recipes/visual-2.2.0.json.)

MesoNet never saw ../shared, so its scores of every file are held out. The stack's three
numbers are a class-balanced logistic regression over per-file means of the two log-odds:
for fold k, fitted on the held-out rows of the other folds (the detector's out-of-fold
scores, runs/real/visual/<base>/fold<j>/oof.jsonl); for the shipped model, on all of them.
Each fold model (the base's fold-k detector + MesoNet + that stack) is exported and scores
its fold through the visual service's code, as training.real.visual's folds do, so
training.real.score reads runs/real/visual/<version>/fold<k>/repo the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from dfmesh.preprocess.tensors import visual_full_input
from training.evaluation.metrics import logit
from training.real import features
from training.real.folds import assign_folds, fold_of
from training.real.loop import CHECKPOINT
from training.real.pack import load_entry, read_index
from training.real.visual import (
    fold_oof_rows,
    load_recipe,
    run_dir_for,
    visual_records,
    write_fold_metrics,
)
from training.runtime import MODELS_DIR, seed_everything

log = logging.getLogger(__name__)


def full_recipe(path: Path) -> dict[str, Any]:
    """The stack's recipe over its base detector's recipe (data, fakes, conditions)."""
    stack = json.loads(path.read_text())
    base = load_recipe(path.parent / f"visual-{stack['base']}.json")
    return base | stack


def detector(recipe: dict[str, Any], run_dir: Path) -> torch.nn.Module:
    """The base recipe's detector from its training checkpoint (run_dir/CHECKPOINT)."""
    from training.models.visual import VisualDetector

    model = VisualDetector(recipe["arch"], dropout=float(recipe.get("dropout", 0.2)),
                           pretrained=False)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return model.eval()


def meso_scores(meso: torch.nn.Module, records: list[dict[str, Any]],
                cache: Path) -> dict[str, float]:
    """Per file, the mean over its packed crops (`visual_full_input`, as served) of the
    member's log-odds of fake (cached in `cache`)."""
    done = {}
    if cache.is_file():
        done = {r["path"]: r["meso"] for r in map(json.loads, cache.read_text().splitlines())}
    todo = [r for r in records if r["path"] not in done]
    with open(cache, "a") as out, torch.no_grad():
        for r in tqdm(todo, desc="meso", unit="file"):
            x = torch.from_numpy(visual_full_input(load_entry(r)["crops"]))
            value = float(meso(x).mean())
            done[r["path"]] = value
            out.write(json.dumps({"path": r["path"], "meso": value}) + "\n")
    return done


def fit_stack(rows: list[dict[str, Any]], meso: dict[str, float]) -> tuple[float, float, float]:
    """(bias, w_detector, w_meso) of a class-balanced LR over the two per-file log-odds."""
    x = np.column_stack([logit(np.array([r["visual"]["prob_fake"] for r in rows])),
                         [meso[r["path"]] for r in rows]])
    y = np.array([r["label"] for r in rows])
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(x, y)
    return float(lr.intercept_[0]), float(lr.coef_[0, 0]), float(lr.coef_[0, 1])


def stacked(recipe: dict[str, Any], run_dir: Path, meso: torch.nn.Module,
            weights: tuple[float, float, float]) -> torch.nn.Module:
    from training.models.visual import StackedVisual

    return StackedVisual(detector(recipe, run_dir), meso, weights).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.visual_stack",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--folds", action="store_true", help="fold models and their scores")
    parser.add_argument("--export", action="store_true", help="the shipped model, to models/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    recipe = full_recipe(args.recipe)
    seed_everything(int(recipe["seed"]), int(recipe.get("threads", 1)))
    from training.models.meso import NormalizedInput, load_pretrained

    meso = NormalizedInput(load_pretrained(recipe["member"]["variant"])).eval()
    index = read_index()
    records = visual_records(index)
    folds = assign_folds(index)
    num_folds = max(folds.values()) + 1
    out = run_dir_for(recipe)
    out.mkdir(parents=True, exist_ok=True)
    base = run_dir_for({"version": recipe["base"]})
    scores = meso_scores(meso, records, out / "meso.jsonl")
    rows = fold_oof_rows(base, num_folds)
    stacks: dict[str, Any] = {}
    if args.folds:
        for f in range(num_folds):
            weights = fit_stack([r for r in rows if r["fold"] != f], scores)
            stacks[f"fold{f}"] = weights
            repo = features.export_visual(
                stacked(recipe, base / f"fold{f}", meso, weights), recipe,
                out / f"fold{f}" / "repo",
                {"fold": f, "trained_without": "this fold's sources", "stack": weights})
            held = [r for r in index if fold_of(r, folds) == f and not r.get("error")]
            features.write_oof_visual(repo, held, f, out / f"fold{f}" / "oof.jsonl")
        write_fold_metrics(out, num_folds)
    weights = fit_stack(rows, scores)
    stacks["final"] = weights
    (out / "stack.json").write_text(json.dumps(stacks, indent=1))
    log.info("stack weights (bias, detector, meso): %s", stacks)
    if args.export:
        info = features.visual_release_info(recipe, out, args.recipe)
        info["stack"] = {"bias": weights[0], "w_detector": weights[1], "w_meso": weights[2],
                         "fitted_on": f"{len(rows)} held-out rows of visual {recipe['base']}'s "
                                      "folds (per-file mean log-odds, class-balanced LR)"}
        info["members"] = {"detector": f"visual {recipe['base']} (final)",
                           "meso": recipe["member"]}
        features.export_visual(stacked(recipe, base / "final", meso, weights), recipe,
                               MODELS_DIR, info)


if __name__ == "__main__":
    main()
