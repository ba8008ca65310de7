"""Visual 2.x: EfficientNet-Lite0 from ImageNet, fully fine-tuned on real fakes of
../shared/train plus pseudo-fakes made here, with real and fake passed through the same
random capture and codec conditions; cross-fitted over source-disjoint folds.

    python -m training.real.visual --recipe training/recipes/visual-2.1.0.json  # folds, final
    python -m training.real.visual --recipe ... --only final --export           # final, shipped

Training crops are the ones ingest sends (training.real.pack); the input tensor is made by
dfmesh.preprocess.tensors.visual_input, and out-of-fold features by the visual service's own
preprocess/postprocess (training.real.features), so training and serving share one path.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dfmesh.preprocess.tensors import visual_input
from training.fakes.codec import H264_PRESETS, h264_roundtrip
from training.fakes.image import colour_jitter, jpeg
from training.fakes.registry import MANIPULATIONS, DonorPool, Face, choose
from training.real.folds import assign_folds, fold_of
from training.real.loop import FitConfig, data_key_of, fit, loop_parser
from training.real.pack import load_entry, read_index
from training.runtime import MODELS_DIR, RUNS_DIR

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """Face crops with sampling weights (files balanced, sources sqrt-balanced)."""

    faces: list[Face] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def probabilities(self) -> np.ndarray:
        w = np.asarray(self.weights, np.float64)
        return w / w.sum()


def build_pools(records: list[dict[str, Any]], max_per_file: int = 16) -> tuple[Pool, Pool]:
    """(reals, fakes) from packed image and video records. A fake file gives its largest
    face per frame only (the manipulated subject); a real file its two largest."""
    reals, fakes = Pool(), Pool()
    by_source: dict[str, int] = {}
    for r in records:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    for r in records:
        entry = load_entry(r)
        keep = entry["rank"] < (1 if r["label"] else 2)
        crops, marks = entry["crops"][keep][:max_per_file], entry["landmarks"][keep][:max_per_file]
        if len(crops) == 0:
            continue
        pool = fakes if r["label"] else reals
        w = 1.0 / len(crops) / np.sqrt(by_source[r["source"]])
        for crop, mark in zip(crops, marks, strict=True):
            pool.faces.append(Face(crop, mark, r["group"]))
            pool.kinds.append(r["kind"])
            pool.weights.append(w)
    return reals, fakes


def rescale(img: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """`img` brought to `side` pixels and back, by a random interpolation (a face captured
    at that size)."""
    size = img.shape[0]
    interp = [cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC]
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=interp[int(rng.integers(3))])


def capture_conditions(crops: list[np.ndarray], kinds: list[str], rng: np.random.Generator,
                       chain: dict[str, Any] | None = None) -> list[np.ndarray]:
    """The same random capture and codec chain for every sample of a batch, real or fake.
    Photos are brought to small face sizes (the train images' fakes are small tiles, their
    reals large photos), some video crops too; then blur and colour; then a codec: H.264
    (libx264 4:2:0, CRF 18-40, the batch's H.264 samples coded together at one face size),
    JPEG at quality 35-95, or none; then flips. `chain` holds the codec shares."""
    chain = chain or {"h264": 0.0, "jpeg": 0.75}
    p_h264, p_jpeg = float(chain["h264"]), float(chain["jpeg"])
    size = crops[0].shape[0]
    codecs = rng.choice(3, size=len(crops), p=[1.0 - p_h264 - p_jpeg, p_jpeg, p_h264])
    out = []
    for img, kind, codec in zip(crops, kinds, codecs, strict=True):
        if codec != 2 and (kind == "image" or rng.random() < 0.4):
            img = rescale(img, int(rng.integers(64, 201 if kind == "image" else 257)), rng)
        if rng.random() < 0.2:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.2)))
        if rng.random() < 0.3:
            img = colour_jitter(np.ascontiguousarray(img), rng)
        if codec == 1:
            img = jpeg(img, int(rng.integers(35, 96)))
        out.append(np.ascontiguousarray(img))
    coded = [i for i, c in enumerate(codecs) if c == 2]
    if coded:
        side = 2 * int(rng.integers(40, 129))
        stack = np.stack([cv2.resize(out[i], (side, side), interpolation=cv2.INTER_AREA)
                          for i in coded])
        back = h264_roundtrip(stack, int(rng.integers(18, 41)),
                              H264_PRESETS[int(rng.integers(len(H264_PRESETS)))])
        interp = [cv2.INTER_LINEAR, cv2.INTER_CUBIC]
        for k, i in enumerate(coded):
            out[i] = cv2.resize(back[k], (size, size),
                                interpolation=interp[int(rng.integers(2))])
    return [np.ascontiguousarray(img[:, ::-1]) if rng.random() < 0.5 else img for img in out]


Encode = Callable[[list[np.ndarray]], np.ndarray]
"""uint8 RGB face crops -> the model's input batch."""


class Sampler:
    """Balanced batches: half reals, half fakes (real fakes and pseudo-fakes by the recipe),
    encoded by `encode` (default: visual_input at the recipe's input_size)."""

    def __init__(self, reals: Pool, fakes: Pool, recipe: dict[str, Any],
                 encode: Encode | None = None) -> None:
        self.reals, self.fakes = reals, fakes
        self.encode = encode or (lambda crops: visual_input(crops, int(recipe["input_size"])))
        self.p_real, self.p_fake = reals.probabilities(), (fakes.probabilities()
                                                           if fakes.faces else None)
        self.donors = DonorPool(reals.faces)
        self.batch = int(recipe["batch_size"])
        self.real_fake_share = float(recipe["real_fake_share"]) if fakes.faces else 0.0
        self.pseudo = {k: float(v) for k, v in recipe["pseudo_fakes"].items()}
        self.chain = recipe.get("codecs")
        if "ae_swap" in self.pseudo:
            install_swapper(recipe)

    def __call__(self, step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        crops, kinds, labels = [], [], []
        n_real = self.batch // 2
        for i in rng.choice(len(self.reals.faces), n_real, p=self.p_real):
            crops.append(self.reals.faces[i].crop)
            kinds.append(self.reals.kinds[i])
            labels.append(0)
        for _ in range(self.batch - n_real):
            if self.p_fake is not None and rng.random() < self.real_fake_share:
                j = int(rng.choice(len(self.fakes.faces), p=self.p_fake))
                crop, kind = self.fakes.faces[j].crop, self.fakes.kinds[j]
            else:
                j = int(rng.choice(len(self.reals.faces), p=self.p_real))
                face = self.reals.faces[j]
                crop = MANIPULATIONS[choose(self.pseudo, rng)](face, rng, self.donors).crop
                kind = self.reals.kinds[j]
            crops.append(crop)
            kinds.append(kind)
            labels.append(1)
        crops = capture_conditions(crops, kinds, rng, self.chain)
        return self.encode(crops), np.asarray(labels, np.float32)


def install_swapper(recipe: dict[str, Any]) -> None:
    """Load the face swapper the recipe's `faceswap` version names (training.real.faceswap's
    run) for the `ae_swap` pseudo-fake."""
    from training.fakes.faceswap import Swapper, use_swapper
    from training.real.faceswap import run_dir_for as swapper_dir

    run_dir = swapper_dir({"version": recipe["faceswap"]})
    if not (run_dir / "checkpoint.pt").is_file():
        raise SystemExit(f"ae_swap needs the face swapper {recipe['faceswap']}: run python -m "
                         f"training.real.faceswap --recipe training/recipes/faceswap-"
                         f"{recipe['faceswap']}.json")
    use_swapper(Swapper.load(run_dir))


def load_recipe(path: Path) -> dict[str, Any]:
    recipe = json.loads(path.read_text())
    import training.fakes.faceswap  # noqa: F401  (registers the manipulations)
    import training.fakes.image  # noqa: F401

    unknown = set(recipe.get("pseudo_fakes", {})) - set(MANIPULATIONS)
    if unknown:
        raise SystemExit(f"{path}: unknown pseudo-fake generators {sorted(unknown)}")
    return recipe


def visual_records(index: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The packed images and videos with at least one face."""
    records = [r for r in index if r["kind"] in ("image", "video") and not r.get("error")
               and r.get("faces", 0) > 0]
    if not records:
        raise SystemExit("no packed image/video files: run `python -m training pack` first")
    return records


def train_one(recipe: dict[str, Any], records: list[dict[str, Any]], run_dir: Path,
              steps: int, device: str) -> torch.nn.Module:
    from training.models.visual import VisualDetector

    reals, fakes = build_pools(records)
    log.info("%s: %d real crops, %d fake crops", run_dir.name, len(reals.faces), len(fakes.faces))
    model = VisualDetector(recipe["arch"], dropout=float(recipe.get("dropout", 0.2)))
    cfg = FitConfig(steps=steps, lr=float(recipe["lr"]), seed=int(recipe["seed"]), device=device,
                    threads=int(recipe.get("threads", 2)))
    fit(model, Sampler(reals, fakes, recipe), cfg, run_dir, data_key_of(records, recipe))
    return model.cpu().eval()


def fold_oof_rows(base: Path, num_folds: int, branch: str = "visual") -> list[dict[str, Any]]:
    """The fold models' held-out rows (base/fold<k>/oof.jsonl) that have a `branch` score,
    dev excluded."""
    rows = [json.loads(line) for f in range(num_folds)
            for line in (base / f"fold{f}" / "oof.jsonl").read_text().splitlines()]
    return [r for r in rows if r[branch] and r["collection"] != "dev"]


def held_out_auc(rows: list[dict[str, Any]], score: dict[str, float]) -> dict[str, Any]:
    """{n, n_fake, auc} of `score` (by path) over `rows`; auc None when one label is missing."""
    from sklearn.metrics import roc_auc_score

    y = [r["label"] for r in rows]
    auc = (round(float(roc_auc_score(y, [score[r["path"]] for r in rows])), 3)
           if len(set(y)) == 2 else None)
    return {"n": len(y), "n_fake": int(sum(y)), "auc": auc}


def write_fold_metrics(base: Path, num_folds: int, branch: str = "visual") -> dict[str, Any]:
    """Held-out AUC of the fold models' scores (`fold_oof_rows`), per kind and per fold,
    into base/metrics.json: the numbers the exported manifest carries."""
    rows = fold_oof_rows(base, num_folds, branch)

    def auc(mine: list[dict[str, Any]]) -> dict[str, Any]:
        return held_out_auc(mine, {r["path"]: r[branch]["prob_fake"] for r in mine})

    metrics = {"held_out_by_source": {
        "what": f"each file scored by the fold model trained without its source ({num_folds} "
                f"source-disjoint folds; training.real.{branch}), through the {branch} "
                "service's code",
        **{kind: auc([r for r in rows if r["kind"] == kind]) for kind in ("image", "video")},
        "all": auc(rows),
        "per_fold_image_auc": [auc([r for r in rows if r["kind"] == "image"
                                    and r["fold"] == f])["auc"] for f in range(num_folds)]},
        "report": "docs/EVALUATION.md"}
    (base / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def run_dir_for(recipe: dict[str, Any]) -> Path:
    return RUNS_DIR / "real" / recipe.get("branch", "visual") / recipe["version"]


@dataclass(frozen=True)
class FaceTrainer:
    """What differs between the face-crop branches trained here: how one model is trained,
    how it is exported into a model repository, and what its release manifest adds."""

    branch: str
    train_one: Callable[[dict[str, Any], list[dict[str, Any]], Path, int, str],
                        torch.nn.Module]
    export: Callable[[torch.nn.Module, dict[str, Any], Path, dict[str, Any]], Path]
    release_info: Callable[[dict[str, Any], Path, Path], dict[str, Any]]


def recipe_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The arguments every face-crop trainer takes: the shared loop's (`loop_parser`) and
    which of the fold and final models to train."""
    parser = loop_parser(prog, doc)
    parser.add_argument("--only", choices=["folds", "final"], default=None)
    parser.add_argument("--fold", type=int, action="append", default=None,
                        help="train only this fold model (repeatable; for parallel processes)")
    parser.add_argument("--export", action="store_true", help="export the final model to models/")
    return parser


def cross_fit(trainer: FaceTrainer, recipe: dict[str, Any], args: argparse.Namespace) -> None:
    """Fold models (each trained without one fold's sources, exported, and scoring that fold
    through the service's code: base/fold<k>/oof.jsonl, skipped when done), their held-out
    metrics, then the final model on every non-dev file, exported to models/ on --export."""
    from training.real import features

    index = read_index()
    records = visual_records(index)
    folds = assign_folds(index)
    base = run_dir_for(recipe)
    if args.only in (None, "folds"):
        num_folds = max(folds.values()) + 1
        for f in args.fold or range(num_folds):
            done = base / f"fold{f}" / "oof.jsonl"
            if done.is_file():
                continue
            train = [r for r in records if fold_of(r, folds) not in (f, -1)]
            held = [r for r in index if fold_of(r, folds) == f and not r.get("error")]
            steps = max(2, int(recipe["fold_steps"] * args.steps_scale))
            model = trainer.train_one(recipe, train, base / f"fold{f}", steps, args.device)
            repo = trainer.export(model, recipe, base / f"fold{f}" / "repo",
                                  {"fold": f, "trained_without": "this fold's sources"})
            features.write_oof(trainer.branch, repo, held, f, done)
        if all((base / f"fold{f}" / "oof.jsonl").is_file() for f in range(num_folds)):
            write_fold_metrics(base, num_folds, trainer.branch)
    if args.only in (None, "final"):
        train = [r for r in records if r["collection"] != "dev"]
        steps = max(2, int(recipe["final_steps"] * args.steps_scale))
        model = trainer.train_one(recipe, train, base / "final", steps, args.device)
        if args.export:
            trainer.export(model, recipe, MODELS_DIR,
                           trainer.release_info(recipe, base, args.recipe))


def main(argv: list[str] | None = None) -> None:
    args = recipe_parser("python -m training.real.visual", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from training.real import features

    trainer = FaceTrainer("visual", train_one, features.export_visual,
                          features.release_info)
    cross_fit(trainer, load_recipe(args.recipe), args)


if __name__ == "__main__":
    main()
