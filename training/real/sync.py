"""sync 2.x: the lip-sync model (training.sync.model.SyncNet) trained with the shared loop on
every real talking clip of the pack (ingest's own dense mouth crops and 16 kHz audio,
training.real.pack), cross-fitted over the source-disjoint folds like visual.

    python -m training.real.sync --recipe training/recipes/sync-2.0.0.json --export

Positives are a real clip's mouth windows against its own audio; negatives the same windows
against audio shifted by 0.3-1.0 s or another clip's audio (training.sync.data.make_pairs, the
pairs 1.x was trained on, over 4x as many speakers). Fakes are never trained on: the fold
models' scores of the talking-head and lip-sync fakes of held-out sources are the check that
being out of sync is what a lip-sync fake shows. Besides the clip-level AUC, every fold model
is measured on its held-out real clips, aligned against shifted audio (`window_metrics`).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from dfmesh.preprocess import mouth as mouth_pre
from training.evaluation.metrics import binary_report, sigmoid
from training.export import ExportSpec, TensorSpec, export_branch
from training.real.features import release_info
from training.real.folds import assign_folds, fold_of
from training.real.loop import CHECKPOINT, FitConfig, data_key_of, fit
from training.real.pack import load_entry, read_index
from training.real.visual import FaceTrainer, cross_fit, load_recipe, recipe_parser, run_dir_for
from training.sync.data import EVAL_SHIFTS, SyncPairs, augment, make_pairs
from training.sync.model import SyncNet

log = logging.getLogger(__name__)
MIN_FOUND = 0.5
"""A clip is used when ingest found a face in at least this share of its dense frames."""


@dataclass
class PackedTrack:
    """A packed clip seen as the dense track training.sync.data reads."""

    clip: SimpleNamespace
    mouth: np.ndarray
    timestamps: np.ndarray
    found: np.ndarray
    pcm: np.ndarray


def real_tracks(records: list[dict[str, Any]]) -> list[PackedTrack]:
    """The real videos of `records` with audio and a tracked mouth: the only clips whose
    sync is known (in sync)."""
    tracks = []
    for r in records:
        if r["kind"] != "video" or r["label"] != 0 or r.get("error"):
            continue
        entry = load_entry(r)
        found = entry.get("dense_found")
        if found is None or entry["pcm"].size < mouth_pre.SAMPLE_RATE or found.mean() < MIN_FOUND:
            continue
        tracks.append(PackedTrack(SimpleNamespace(name=r["path"]), entry["mouth"],
                                  entry["dense_ts"].astype(np.float64), found.astype(bool),
                                  entry["pcm"]))
    return tracks


class PairSampler:
    """Class-balanced batches of (mouth, audio) windows from `pools` draws of make_pairs
    (fresh shifts, grids and swaps per draw), augmented as 1.x was."""

    def __init__(self, tracks: list[PackedTrack], recipe: dict[str, Any]) -> None:
        rng = np.random.default_rng(int(recipe["seed"]))
        self.pools = [make_pairs(tracks, rng, per_clip=int(recipe["windows_per_clip"]))
                      for _ in range(int(recipe["pair_pools"]))]
        self.batch = int(recipe["batch_size"])

    def __call__(self, step: int, rng: np.random.Generator
                 ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        pool = self.pools[step % len(self.pools)]
        half = self.batch // 2
        idx = np.concatenate([rng.choice(np.flatnonzero(pool.label == 1), half),
                              rng.choice(np.flatnonzero(pool.label == 0), self.batch - half)])
        mouth, audio = augment(pool.mouth[idx], pool.audio[idx], rng)
        return (mouth, audio), pool.label[idx].astype(np.float32)


def train_one(recipe: dict[str, Any], records: list[dict[str, Any]], run_dir: Path,
              steps: int, device: str) -> SyncNet:
    tracks = real_tracks(records)
    log.info("%s: %d real talking clips", run_dir.name, len(tracks))
    torch.manual_seed(int(recipe["seed"]))
    model = SyncNet()
    cfg = FitConfig(steps=steps, lr=float(recipe["lr"]), seed=int(recipe["seed"]), device=device,
                    threads=int(recipe.get("threads", 2)))
    fit(model, PairSampler(tracks, recipe), cfg, run_dir, data_key_of(records, recipe))
    return model.cpu().eval()


def export_sync(model: SyncNet, recipe: dict[str, Any], models_dir: Path,
                info: dict[str, Any]) -> Path:
    """Export a SyncNet (mouth, audio -> logit, higher = in sync) into `models_dir`."""
    n, t, size = 2, mouth_pre.WINDOW_FRAMES, mouth_pre.MOUTH_SIZE
    rng = np.random.default_rng(0)
    example = (torch.from_numpy(rng.normal(size=(n, t, size, size)).astype(np.float32)),
               torch.from_numpy(rng.normal(size=(n, mouth_pre.N_MELS, mouth_pre.MEL_FRAMES))
                                .astype(np.float32)))
    spec = ExportSpec(
        name="sync-av-cnn", branch="sync", version=recipe["version"],
        inputs=[TensorSpec("mouth", ["N", t, size, size]),
                TensorSpec("audio", ["N", mouth_pre.N_MELS, mouth_pre.MEL_FRAMES])],
        outputs=[TensorSpec("logit", ["N", 1])],
        preprocessing={**mouth_pre.PREPROCESSING,
                       "clip_score": "sync_prob = mean over windows of sigmoid(logit); "
                                     "higher = in sync"},
        training_data=info.get("training_data", recipe.get("data", "")),
        metrics=info.get("metrics", {}), fp16_weights=False,
        extra={"model": "SyncNet (per-frame mouth CNN and mel 1-D CNN at 25 Hz, cosine "
                        "similarity over time, head on the lag -4..4 diagonal means)",
               "parameters": int(sum(p.numel() for p in model.parameters()))}
        | {k: v for k, v in info.items() if k not in ("training_data", "metrics")})
    export_branch(model, example, spec, models_dir)
    return models_dir


def window_metrics(recipe: dict[str, Any]) -> dict[str, Any]:
    """Every fold model on its held-out real clips: aligned windows against audio shifted by
    -0.8, -0.4, 0.4, 0.8 s and against another clip's audio (label 1 = in sync)."""
    index = [r for r in read_index() if not r.get("error")]
    folds = assign_folds(index)
    base = run_dir_for(recipe)
    labels, probs, kinds = [], [], []
    for f in range(max(folds.values()) + 1):
        ckpt = base / f"fold{f}" / CHECKPOINT
        tracks = real_tracks([r for r in index if fold_of(r, folds) == f])
        if not ckpt.is_file() or len(tracks) < 2:
            continue
        model = SyncNet()
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
        pairs: SyncPairs = make_pairs(tracks, np.random.default_rng(1), fixed_shifts=EVAL_SHIFTS)
        with torch.no_grad():
            logit = model.eval()(torch.from_numpy(pairs.mouth), torch.from_numpy(pairs.audio))
        labels.append(pairs.label)
        probs.append(sigmoid(logit.numpy().ravel()))
        kinds.append(pairs.kind)
    y, p, kind = np.concatenate(labels), np.concatenate(probs), np.concatenate(kinds)
    by_negative = {k: binary_report(y[(kind == k) | (kind == "aligned")],
                                    p[(kind == k) | (kind == "aligned")])["auc"]
                   for k in ("shifted", "swapped")}
    return {"what": "fold models on the held-out sources' real clips: aligned windows vs audio "
                    "shifted by +-0.4/+-0.8 s or swapped (label 1 = in sync)",
            "windows": binary_report(y, p), "auc_by_negative": by_negative}


def main(argv: list[str] | None = None) -> None:
    args = recipe_parser("python -m training.real.sync", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    recipe = load_recipe(args.recipe)
    trainer = FaceTrainer("sync", train_one, export_sync, release_info)
    if args.only in (None, "folds"):
        cross_fit(trainer, recipe, with_only(args, "folds"))
        metrics_path = run_dir_for(recipe) / "metrics.json"
        if metrics_path.is_file():  # every fold done: the capability check beside it
            metrics = json.loads(metrics_path.read_text())
            metrics["held_out_windows"] = window_metrics(recipe)
            metrics_path.write_text(json.dumps(metrics, indent=1))
    if args.only in (None, "final"):
        cross_fit(trainer, recipe, with_only(args, "final"))


def with_only(args: argparse.Namespace, only: str) -> argparse.Namespace:
    """A copy of the parsed arguments with `only` set."""
    return argparse.Namespace(**(vars(args) | {"only": only}))


if __name__ == "__main__":
    main()
