"""`python -m training audio`: build the CQCC cache, train CQCCNet, evaluate, export to ONNX.

Splits are speaker-disjoint (training.audio.corpus); the epoch is chosen on val; test numbers
are reported per window and per recording (mean of window probabilities, as the service does)
and per resynthesis method, and written into the manifest.

`--labelled asvspoof:PROTOCOL@AUDIO_DIR` (or `folders:PATH` with real/ and fake/ audio,
repeatable) adds labelled recordings next to the pseudo-spoofs: the same CQCC windows and
channel augmentation, their own label, speaker-disjoint splits of their own. They train with
everything else and choose the epoch on the whole validation split; `test_window`,
`test_recording_mean` and the per-method numbers stay on the pseudo-spoof rows as before,
and `val_labelled` / `test_labelled` report the labelled rows alone.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from dfmesh.preprocess import audio as audio_pre
from training.audio.dataset import build_audio_cache, load_split
from training.audio.loop import fit_binary, predict_logits
from training.audio.model import CQCCNet
from training.evaluation.metrics import binary_report, sigmoid
from training.export import ExportSpec, TensorSpec, export_branch
from training.loaders.public import LabelledSpecError
from training.runtime import MODELS_DIR, RUNS_DIR, seed_everything, shared_data_dir

log = logging.getLogger(__name__)
VERSION = "1.0.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=12.0)
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cached-only", action="store_true",
                        help="train on the recordings already cached; build nothing")
    parser.add_argument("--labelled", action="append", default=[], metavar="SPEC",
                        help="labelled recordings to train on as well (repeatable): "
                             "asvspoof:PROTOCOL@AUDIO_DIR or folders:PATH")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="CQCC cache (default runs/cache/audio)")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR,
                        help="writes <runs-dir>/audio/{cqccnet.pt,metrics.json}")
    parser.add_argument("--windows-per-file", type=int, default=3,
                        help="4 s windows per recording when it is cached")
    parser.add_argument("--copies", type=int, default=2,
                        help="augmented copies per window (and class) when cached")


def spec_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random circular time shift and one time mask per sample (train only)."""
    x = x.clone()
    for i in range(x.shape[0]):
        x[i] = torch.roll(x[i], int(rng.integers(x.shape[-1])), dims=-1)
        width = int(rng.integers(0, 30))
        start = int(rng.integers(0, x.shape[-1] - width))
        x[i, ..., start:start + width] = 0.0
    return x


def per_recording(sources: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                  methods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean window probability per (recording, version) — the service's clip score."""
    keys = [f"{s}|{m}" for s, m in zip(sources, methods, strict=True)]
    uniq = sorted(set(keys))
    index = {k: i for i, k in enumerate(uniq)}
    idx = np.array([index[k] for k in keys])
    mean = np.bincount(idx, weights=probs) / np.bincount(idx)
    lab = np.zeros(len(uniq), int)
    lab[idx] = labels
    return lab, mean


def labelled_report(rows: dict[str, np.ndarray], probs: np.ndarray) -> dict | None:
    """Window, recording and per-attack numbers of the labelled rows (None without any)."""
    mask = rows["labelled"].astype(bool)
    if not mask.any():
        return None
    y, p, methods = rows["y"][mask], probs[mask], rows["method"][mask]
    rec_labels, rec_probs = per_recording(rows["source"][mask], y, p, methods)
    by_attack = {}
    for method in sorted(set(methods) - {"bonafide"}):
        keep = (methods == method) | (methods == "bonafide")
        by_attack[method] = binary_report(y[keep], p[keep])["auc"]
    return {"window": binary_report(y, p), "recording_mean": binary_report(rec_labels, rec_probs),
            "auc_by_attack": by_attack}


def pseudo_rows(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows of real speech and its resyntheses (not the labelled recordings)."""
    keep = ~rows["labelled"].astype(bool)
    return {k: v[keep] for k, v in rows.items()}


def run(args: argparse.Namespace) -> dict:
    seed_everything(args.seed)
    data_dir = args.data_dir or shared_data_dir()
    try:
        sources = build_audio_cache(data_dir, args.cache_dir, seed=args.seed,
                                    build=not args.cached_only, labelled=args.labelled,
                                    windows_per_file=args.windows_per_file, copies=args.copies)
    except LabelledSpecError as exc:
        raise SystemExit(str(exc)) from exc
    train, val, test = (load_split(sources, s, args.cache_dir) for s in ("train", "val", "test"))
    log.info("rows train %d val %d test %d", len(train["y"]), len(val["y"]), len(test["y"]))
    rng = np.random.default_rng(args.seed)
    x_train = torch.from_numpy(train["x"])
    y_train = torch.from_numpy(train["y"])

    def make_epoch(epoch: int):
        order = rng.permutation(len(y_train))
        return [((spec_augment(x_train[order[i:i + args.batch_size]], rng),),
                 y_train[order[i:i + args.batch_size]])
                for i in range(0, len(order), args.batch_size)]

    model = CQCCNet()
    result = fit_binary(model, make_epoch, (val["x"],), val["y"], epochs=args.epochs, lr=args.lr,
                        max_seconds=args.max_minutes * 60)
    all_test_probs = sigmoid(predict_logits(result.module, (test["x"],)))
    all_val_probs = sigmoid(predict_logits(result.module, (val["x"],)))
    test_labelled = labelled_report(test, all_test_probs)
    val_labelled = labelled_report(val, all_val_probs)
    splits = {"train": train, "val": val, "test": test}
    test, test_probs = pseudo_rows(test), all_test_probs[~test["labelled"].astype(bool)]
    val_probs = all_val_probs[~val["labelled"].astype(bool)]
    val_pseudo = pseudo_rows(val)
    rec_labels, rec_probs = per_recording(test["source"], test["y"], test_probs, test["method"])
    by_method = {}
    for method in sorted(set(test["method"]) - {"bonafide"}):
        mask = (test["method"] == method) | (test["method"] == "bonafide")
        by_method[method] = binary_report(test["y"][mask], test_probs[mask])["auc"]
    by_channel = {}
    for channel in sorted({c.split("_")[0] for c in test["channel"]}):
        mask = np.char.startswith(test["channel"].astype(str), channel)
        by_channel[channel] = binary_report(test["y"][mask], test_probs[mask])["auc"]
    metrics = {
        "split": "speaker-disjoint test split of real speech and its resyntheses "
                 "(pseudo-spoofs), both through the same codec/band-limit augmentations",
        "test_window": binary_report(test["y"], test_probs),
        "test_recording_mean": binary_report(rec_labels, rec_probs),
        "val_window": binary_report(val_pseudo["y"], val_probs),
        "test_auc_by_method": by_method,
        "test_auc_by_channel": by_channel,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.seconds, 1),
    }
    if args.labelled:
        metrics["labelled_specs"] = list(args.labelled)
        for key, report in (("val_labelled", val_labelled), ("test_labelled", test_labelled)):
            metrics[key] = report if report is not None else \
                "no labelled recordings landed in this split"
    counts = {s: {"rows": int(len(d["y"])), "spoof_rows": int(d["y"].sum()),
                  "labelled_rows": int(d["labelled"].sum()),
                  "recordings": len(set(d["source"])), "speakers": len(set(d["speaker"]))}
              for s, d in splits.items()}
    spec = ExportSpec(
        name="audio-cqcc-cnn", branch="audio", version=args.version,
        inputs=[TensorSpec("cqcc", ["N", 1, audio_pre.N_FEATURES, audio_pre.N_FRAMES])],
        outputs=[TensorSpec("logit", ["N", 1])],
        preprocessing={**audio_pre.PREPROCESSING,
                       "clip_score": "audio_prob_fake = mean over windows of sigmoid(logit)"},
        training_data={
            "bona_fide": "real speech from ../shared/data/speech (LibriSpeech, RTVC samples, "
                         "ALSA, radio, interview) and the non-silent audio of talking/ clips",
            "spoof": "the same windows resynthesized: " + ", ".join(sorted(
                set(train["method"][~train["labelled"].astype(bool)]) - {"bonafide"})),
            "labelled": ("labelled recordings with their own labels, no resynthesis, "
                         "speaker-disjoint splits: " + ", ".join(args.labelled))
                        if args.labelled else "none",
            "augmentation": "both classes: clean / mp3 32-64k / opus 16-24k / low-pass "
                            "3.4-7 kHz / 8 kHz round trip, gain -12..+3 dB; train: time roll "
                            "and time masking",
            "splits": "speaker-disjoint (LibriSpeech/VCTK speaker ids; talking clips by "
                      "identity group), seed " + str(args.seed),
            "counts": counts,
        },
        metrics=metrics, fp16_weights=False,
        extra={"model": "CQCCNet (4 conv blocks 12-24-32-48, avg+max pool, linear)",
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "history": result.history})
    example = (torch.from_numpy(train["x"][:2]),)
    version_dir = export_branch(result.module, example, spec, args.models_dir)
    run_dir = args.runs_dir / "audio"
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(result.module.state_dict(), run_dir / "cqccnet.pt")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log.info("exported %s: test window AUC %.4f, recording AUC %.4f", version_dir,
             metrics["test_window"]["auc"], metrics["test_recording_mean"]["auc"])
    return metrics


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
