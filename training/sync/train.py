"""`python -m training sync`: dense-track the talking clips, train SyncNet, evaluate, export.

Splits follow the clips' identity groups (training.loaders.talking); each epoch draws fresh
random shifts and window grids from the train clips; val and test pairs are fixed (shifts of
+-0.4 s and +-0.8 s and a swap). Clip-level numbers score a clip as the service does
(sync_prob = mean of window sigmoids) for its aligned version against a 0.6 s-shifted one.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from dfmesh.preprocess import mouth as mouth_pre
from training.audio.loop import fit_binary, predict_logits
from training.evaluation.metrics import binary_report, sigmoid
from training.export import ExportSpec, TensorSpec, export_branch
from training.loaders.dense import DenseClip, build_dense_cache
from training.loaders.talking import talking_clips
from training.runtime import MODELS_DIR, RUNS_DIR, seed_everything, shared_data_dir
from training.sync.data import EVAL_SHIFTS, augment, make_pairs, usable, windows
from training.sync.model import SyncNet

log = logging.getLogger(__name__)
VERSION = "1.0.0"
CLIP_SHIFT_SECONDS = 0.6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--pair-pools", type=int, default=4,
                        help="distinct random draws of training pairs, cycled over epochs")
    parser.add_argument("--cached-only", action="store_true",
                        help="use the clips already tracked; track nothing (quick runs)")


def clip_level(module: torch.nn.Module, tracks: list[DenseClip]) -> dict:
    """sync_prob per clip for the aligned audio and for audio shifted by CLIP_SHIFT_SECONDS."""
    labels, probs = [], []
    for track in tracks:
        for offset, label in ((0.0, 1), (CLIP_SHIFT_SECONDS, 0)):
            m, a = windows(track, offset)
            if len(m):
                labels.append(label)
                probs.append(float(sigmoid(predict_logits(module, (m, a))).mean()))
    return binary_report(labels, probs)


def run(args: argparse.Namespace) -> dict:
    seed_everything(args.seed)
    data_dir = args.data_dir or shared_data_dir()
    clips = [c for c in talking_clips(data_dir, args.seed)
             if c.speech and c.has_audio and not c.silent]
    tracks = [t for t in build_dense_cache(data_dir, clips, build=not args.cached_only)
              if usable(t)]
    by_split = {s: [t for t in tracks if t.clip.split == s] for s in ("train", "val", "test")}
    log.info("sync clips: %s", {s: [t.clip.name for t in v] for s, v in by_split.items()})
    rng = np.random.default_rng(args.seed)
    fixed = np.random.default_rng(args.seed + 1)
    if not by_split["val"] or not by_split["test"]:
        if not args.cached_only:
            raise SystemExit(f"sync needs val and test clips, have {by_split}")
        log.warning("quick run: val/test clips not tracked yet; validating on train clips")
        by_split["val"] = by_split["val"] or by_split["train"]
        by_split["test"] = by_split["test"] or by_split["train"]
    val = make_pairs(by_split["val"], fixed, fixed_shifts=EVAL_SHIFTS)
    test = make_pairs(by_split["test"], fixed, fixed_shifts=EVAL_SHIFTS)

    pools: list = []

    def make_epoch(epoch: int):
        # Fresh random shifts and window grids for the first few epochs, then reuse them:
        # making pairs costs as much as a training pass on this shared CPU.
        if len(pools) < args.pair_pools:
            pools.append(make_pairs(by_split["train"], rng))
        pairs = pools[epoch % len(pools)]
        order = rng.permutation(len(pairs.label))
        batches = []
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            mouth, audio = augment(pairs.mouth[idx], pairs.audio[idx], rng)
            batches.append(((torch.from_numpy(mouth), torch.from_numpy(audio)),
                            torch.from_numpy(pairs.label[idx])))
        return batches

    model = SyncNet()
    result = fit_binary(model, make_epoch, (val.mouth, val.audio), val.label, epochs=args.epochs,
                        lr=args.lr, max_seconds=args.max_minutes * 60)
    test_probs = sigmoid(predict_logits(result.module, (test.mouth, test.audio)))
    by_kind = {}
    for kind in ("shifted", "swapped"):
        mask = (test.kind == kind) | (test.kind == "aligned")
        by_kind[kind] = binary_report(test.label[mask], test_probs[mask])["auc"]
    metrics = {
        "split": "identity-disjoint test clips; label 1 = in sync, probabilities = sync_prob",
        "test_window": binary_report(test.label, test_probs),
        "test_window_auc_by_negative": by_kind,
        "test_clip_aligned_vs_shifted_0.6s": clip_level(result.module, by_split["test"]),
        "val_window": binary_report(val.label, sigmoid(predict_logits(
            result.module, (val.mouth, val.audio)))),
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.seconds, 1),
    }
    spec = ExportSpec(
        name="sync-av-cnn", branch="sync", version=args.version,
        inputs=[TensorSpec("mouth", ["N", mouth_pre.WINDOW_FRAMES, mouth_pre.MOUTH_SIZE,
                                     mouth_pre.MOUTH_SIZE]),
                TensorSpec("audio", ["N", mouth_pre.N_MELS, mouth_pre.MEL_FRAMES])],
        outputs=[TensorSpec("logit", ["N", 1])],
        preprocessing={**mouth_pre.PREPROCESSING,
                       "clip_score": "sync_prob = mean over windows of sigmoid(logit); "
                                     "higher = in sync"},
        training_data={
            "positives": "aligned mouth/audio windows of real talking clips in ../shared/data/"
                         "talking (GRID, HDTF-style, video-retalking inputs, Hamilton clip)",
            "negatives": "audio shifted by 0.3-1.0 s either way, or swapped with another "
                         "clip's audio",
            "augmentation": "train only: mouth mirror, contrast x0.7-1.4, +-2 px shift; "
                            "Gaussian noise (sd 0.2) on the normalized log-mel",
            "splits": "by identity group (same assignment as the face models), seed "
                      + str(args.seed),
            "clips": {s: [t.clip.name for t in v] for s, v in by_split.items()},
            "eval_pairs": {"val": int(len(val.label)), "test": int(len(test.label))},
        },
        metrics=metrics, fp16_weights=False,
        extra={"model": "SyncNet (per-frame mouth CNN and mel 1-D CNN at 25 Hz, cosine "
                        "similarity over time, head on the lag -4..4 diagonal means)",
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "history": result.history})
    example = (torch.from_numpy(test.mouth[:2]), torch.from_numpy(test.audio[:2]))
    version_dir = export_branch(result.module, example, spec, args.models_dir)
    run_dir = RUNS_DIR / "sync"
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(result.module.state_dict(), run_dir / "syncnet.pt")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log.info("exported %s: test window AUC %.4f", version_dir, metrics["test_window"]["auc"])
    return metrics


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
