"""Visual 2.2.x to 2.4.x: a fine-tuned detector (a visual 2.1.x recipe's fold and final
models) stacked with MesoInception4, frozen, as its authors trained it on Deepfakes faces
(training.models.meso): logit = b + w_d * detector logit + w_m * MesoNet log-odds, per crop.
From 2.4.0 the recipe names several `bases`, the same detector recipe with different seeds,
and the detector logit is the mean of theirs (training.models.visual.DetectorEnsemble).

    python -m training.real.visual_stack --recipe RECIPE --folds --export

(RECIPE: training/recipes/visual-2.3.0.json.)

MesoNet never saw ../shared, so its scores of every file are held out. The stack's three
numbers are a class-balanced logistic regression, for fold k fitted on the held-out rows of
the other folds (the detector's out-of-fold scores), for the shipped model on all of them.
The recipe's `stack_fit` says over what:

    file   (2.2.0) per-file means of the two log-odds (runs/real/visual/<base>/fold<j>/
           oof.jsonl and MesoNet's mean), though the model applies the stack per crop
    crop   (2.3.0) every crop the visual service scores, each file weighing one, MesoNet's
           log-odds clipped to +-`member_clip` as the exported model clips them; the
           detector's crop logits come from the fold model that never saw the file
           (cached in runs/real/visual/<version>/crops.jsonl)

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

from dfmesh.preprocess.stats import prob_summary
from dfmesh.preprocess.tensors import visual_full_input, visual_input
from dfmesh.runtime.model_server import NoUsableInput, face_crops_prepared, sigmoid
from training.evaluation.metrics import logit
from training.real import features
from training.real.folds import assign_folds, fold_of
from training.real.loop import load_weights
from training.real.pack import load_entry, read_index
from training.real.visual import (
    fold_oof_rows,
    held_out_auc,
    load_recipe,
    run_dir_for,
    visual_records,
    write_fold_metrics,
)
from training.runtime import MODELS_DIR, seed_everything

log = logging.getLogger(__name__)


def full_recipe(path: Path) -> dict[str, Any]:
    """The stack's recipe over its first base detector's recipe (data, fakes, conditions),
    with `bases` always a list (2.2.x and 2.3.x name one `base`)."""
    stack = json.loads(path.read_text())
    bases = stack.get("bases") or [stack["base"]]
    base = load_recipe(path.parent / f"visual-{bases[0]}.json")
    return base | stack | {"bases": bases}


def base_dirs(recipe: dict[str, Any]) -> list[Path]:
    """The run directories of the recipe's base detectors (their fold and final checkpoints)."""
    return [run_dir_for({"version": v}) for v in recipe["bases"]]


def detector(recipe: dict[str, Any], run_dir: Path) -> torch.nn.Module:
    """The base recipe's detector from its training checkpoint in run_dir."""
    from training.models.visual import VisualDetector

    model = VisualDetector(recipe["arch"], dropout=float(recipe.get("dropout", 0.2)),
                           pretrained=False)
    return load_weights(model, run_dir).eval()


def detectors(recipe: dict[str, Any], run_dirs: list[Path]) -> torch.nn.Module:
    """One detector, or the seeds' ensemble when the recipe has several bases."""
    from training.models.visual import DetectorEnsemble

    nets = [detector(recipe, d) for d in run_dirs]
    return nets[0] if len(nets) == 1 else DetectorEnsemble(nets).eval()


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


def served_crops(record: dict[str, Any]) -> list[np.ndarray]:
    """The crops the visual service scores for this packed file (its face selection)."""
    from services.visual.service import VisualSettings

    limit = int(VisualSettings.model_fields["max_faces_per_frame"].default)
    try:
        prepared = face_crops_prepared(features.branch_inputs(load_entry(record)), limit)
    except NoUsableInput:
        return []
    return list(prepared.context["crops"])


def crop_scores(recipe: dict[str, Any], bases: list[Path], meso: torch.nn.Module,
                rows: list[dict[str, Any]], index: list[dict[str, Any]], cache: Path
                ) -> dict[str, dict[str, Any]]:
    """Per file of `rows` (fold rows; their packed entries are found in `index`), every
    crop the service would score: each base detector's logit (its fold's model, under
    `seeds`), their mean (`detector`) and MesoNet's log-odds (cached in `cache`,
    resumable)."""
    packed = {r["path"]: r for r in index}
    done: dict[str, dict[str, Any]] = {}
    if cache.is_file():
        done = {r["path"]: r for r in map(json.loads, cache.read_text().splitlines())}
    size = int(recipe["input_size"])
    with open(cache, "a") as out, torch.no_grad():
        for fold in sorted({r["fold"] for r in rows}):
            todo = [r for r in rows if r["fold"] == fold and r["path"] not in done]
            if not todo:
                continue
            nets = [detector(recipe, b / f"fold{fold}") for b in bases]
            for r in tqdm(todo, desc=f"crop scores, fold {fold}", unit="file"):
                crops = served_crops(packed[r["path"]])
                if not crops:
                    continue
                x = torch.from_numpy(visual_input(crops, size))
                seeds = [net(x)[0][:, 0] for net in nets]
                member = meso(torch.from_numpy(visual_full_input(crops)))
                done[r["path"]] = {"path": r["path"],
                                   "detector": torch.stack(seeds).mean(0).tolist(),
                                   "seeds": [s.tolist() for s in seeds],
                                   "meso": member.tolist()}
                out.write(json.dumps(done[r["path"]]) + "\n")
    return done


def fit_stack_crops(rows: list[dict[str, Any]], crops: dict[str, dict[str, list[float]]],
                    clip: float) -> tuple[float, float, float]:
    """(bias, w_detector, w_meso) of a logistic regression over every crop's two log-odds
    (MesoNet's clipped to +-clip), each file weighing one and each class half."""
    have = [r for r in rows if r["path"] in crops]
    x = np.concatenate([np.column_stack([crops[r["path"]]["detector"],
                                         np.clip(crops[r["path"]]["meso"], -clip, clip)])
                        for r in have])
    y = np.concatenate([np.full(len(crops[r["path"]]["meso"]), r["label"]) for r in have])
    labels = np.array([r["label"] for r in have])
    per_class = {c: max(int((labels == c).sum()), 1) for c in (0, 1)}
    weight = np.concatenate([np.full(len(crops[r["path"]]["meso"]),
                                     len(have) / (2 * per_class[r["label"]]
                                                  * len(crops[r["path"]]["meso"])))
                             for r in have])
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(x, y, sample_weight=weight)
    return float(lr.intercept_[0]), float(lr.coef_[0, 0]), float(lr.coef_[0, 1])


def seed_lines(rows: list[dict[str, Any]], crops: dict[str, dict[str, Any]], clip: float,
               num_folds: int) -> dict[str, dict[str, float | None]]:
    """Held-out AUC per file kind of the stack over each seed's detector alone and over
    their mean, each refitted per fold as --folds does, computed from the crop cache with
    the visual service's arithmetic (its sigmoid and prob_summary; float32 weights, so
    within the fp16 export's rounding of the served figures)."""
    have = [r for r in rows if r["path"] in crops]
    num_seeds = len(crops[have[0]["path"]].get("seeds") or [None])
    variants = {f"seed {i}": i for i in range(num_seeds)} | {"mean": None}
    out: dict[str, dict[str, float | None]] = {}
    for name, seed in variants.items():
        mine = {r["path"]: {"detector": crops[r["path"]]["detector"] if seed is None
                            else crops[r["path"]]["seeds"][seed],
                            "meso": crops[r["path"]]["meso"]} for r in have}
        prob: dict[str, float] = {}
        for f in range(num_folds):
            b, wd, wm = fit_stack_crops([r for r in have if r["fold"] != f], mine, clip)
            for r in (r for r in have if r["fold"] == f):
                z = (b + wd * np.asarray(mine[r["path"]]["detector"])
                     + wm * np.clip(mine[r["path"]]["meso"], -clip, clip))
                prob[r["path"]] = prob_summary("visual", sigmoid(z))["visual_prob_mean"]
        out[name] = {kind: held_out_auc([r for r in have if r["kind"] == kind], prob)["auc"]
                     for kind in ("image", "video")}
    return out


def stacked(recipe: dict[str, Any], run_dirs: list[Path], meso: torch.nn.Module,
            weights: tuple[float, float, float]) -> torch.nn.Module:
    from training.models.visual import StackedVisual

    clip = recipe.get("member_clip")
    return StackedVisual(detectors(recipe, run_dirs), meso, weights,
                         None if clip is None else float(clip)).eval()


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
    bases = base_dirs(recipe)
    rows = fold_oof_rows(bases[0], num_folds)
    if recipe.get("stack_fit", "file") == "crop":
        crops = crop_scores(recipe, bases, meso, rows, index, out / "crops.jsonl")
        clip = float(recipe["member_clip"])

        def fit(some: list[dict[str, Any]]) -> tuple[float, float, float]:
            return fit_stack_crops(some, crops, clip)
        fitted_on = "every served crop's log-odds, MesoNet's clipped, each file weighing one"
        if len(bases) > 1:
            lines = seed_lines(rows, crops, clip, num_folds)
            (out / "seeds.json").write_text(json.dumps(lines, indent=1))
            log.info("held out, each seed's stack and the mean's: %s", lines)
    else:
        if len(bases) > 1:
            raise ValueError("a per-file stack (stack_fit 'file') takes one base detector")
        scores = meso_scores(meso, records, out / "meso.jsonl")

        def fit(some: list[dict[str, Any]]) -> tuple[float, float, float]:
            return fit_stack(some, scores)
        fitted_on = "per-file mean log-odds"
    # an --export run without --folds keeps the fold stacks an earlier --folds run wrote
    stacks: dict[str, Any] = (json.loads((out / "stack.json").read_text())
                              if (out / "stack.json").is_file() else {})
    if args.folds:
        for f in range(num_folds):
            weights = fit([r for r in rows if r["fold"] != f])
            stacks[f"fold{f}"] = weights
            repo = features.export_visual(
                stacked(recipe, [b / f"fold{f}" for b in bases], meso, weights), recipe,
                out / f"fold{f}" / "repo",
                {"fold": f, "trained_without": "this fold's sources", "stack": weights})
            held = [r for r in index if fold_of(r, folds) == f and not r.get("error")]
            features.write_oof("visual", repo, held, f, out / f"fold{f}" / "oof.jsonl")
        write_fold_metrics(out, num_folds)
    weights = fit(rows)
    stacks["final"] = weights
    (out / "stack.json").write_text(json.dumps(stacks, indent=1))
    log.info("stack weights (bias, detector, meso): %s", stacks)
    if args.export:
        info = features.release_info(recipe, out, args.recipe)
        info["stack"] = {"bias": weights[0], "w_detector": weights[1], "w_meso": weights[2],
                         "member_clip": recipe.get("member_clip"),
                         "fitted_on": f"{len(rows)} held-out rows of the folds of visual "
                                      f"{' and '.join(recipe['bases'])} ({fitted_on}, "
                                      "class-balanced LR)"}
        info["members"] = {"detector": " + ".join(f"visual {v} (final)"
                                                  for v in recipe["bases"])
                           + (", logits averaged" if len(bases) > 1 else ""),
                           "meso": recipe["member"]}
        features.export_visual(stacked(recipe, [b / "final" for b in bases], meso, weights),
                               recipe, MODELS_DIR, info)


if __name__ == "__main__":
    main()
