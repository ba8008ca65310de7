"""What every image-side trainer shares: options, checkpoints, held-out sets, the dev set, and
the labelled public data (`--labelled SPEC`, training.data.labelled) the visual and tiny_gate
trainers mix into their training samples and report separately on.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from training.data.faces import FaceSource, default_cache_dir, load_face_sources
from training.data.labelled import (
    DEFAULT_FRAMES_PER_VIDEO,
    LabelledEvalSet,
    LabelledSource,
    build_labelled_cache,
    labelled_eval_set,
    load_labelled_sources,
)
from training.data.pseudo import PseudoFakeSampler, Sample
from training.fakes.registry import parse_weights
from training.loaders.public import LabelledSpecError
from training.runtime import MODELS_DIR, RUNS_DIR, seed_everything, shared_data_dir

DEFAULT_MANIPULATIONS = "sbi=3,face_swap=2,gan_upsample=1,double_jpeg=1"
HELD_OUT_EPOCH = 1_000_000
"""Epoch number reserved for the fixed validation and test samples (never a training epoch)."""
LABELLED_BRANCHES = ("visual", "tiny_gate")
"""Branches that can learn from labelled fakes (the others need a known real source)."""
DEFAULT_LABELLED_FRACTION = 0.5


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--manipulations", default=DEFAULT_MANIPULATIONS,
                        help="name=weight,... from training.fakes registries")
    parser.add_argument("--val-samples", type=int, default=200)
    parser.add_argument("--test-samples", type=int, default=400)
    parser.add_argument("--run-name", default=None,
                        help="runs/<branch>/<run-name> (default: 'default')")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="face cache (default runs/cache/faces)")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--export", action="store_true", help="export to the model repository")
    parser.add_argument("--export-only", action="store_true",
                        help="skip training: measure and export the run's best checkpoint")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--no-dev", action="store_true", help="skip the ../shared/data/dev check")
    parser.add_argument("--labelled", action="append", default=None, metavar="SPEC",
                        help="labelled public data to train on as well (repeatable): "
                             "dfdc:PATH, ff++:PATH[@c40], folders:PATH (root/real, root/fake); "
                             "visual and tiny_gate only")
    parser.add_argument("--labelled-fraction", type=float, default=None,
                        help="share of training samples that are labelled crops "
                             f"(default {DEFAULT_LABELLED_FRACTION} with --labelled)")
    parser.add_argument("--labelled-cache-dir", type=Path, default=None,
                        help="labelled face caches (default runs/cache/labelled)")
    parser.add_argument("--frames-per-video", type=int, default=DEFAULT_FRAMES_PER_VIDEO,
                        help="frames per labelled video when its faces are cached")


@dataclass
class RunContext:
    """A training run's folder, seed and data."""

    branch: str
    args: argparse.Namespace
    run_dir: Path
    _labelled: dict[str, list[LabelledSource]] = field(default_factory=dict, repr=False)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def labelled_specs(self) -> list[str]:
        return list(getattr(self.args, "labelled", None) or [])

    @property
    def labelled_fraction(self) -> float:
        if not self.labelled_specs:
            return 0.0
        fraction = getattr(self.args, "labelled_fraction", None)
        return DEFAULT_LABELLED_FRACTION if fraction is None else fraction

    def sources(self, split: str, category: str | None = None) -> list[FaceSource]:
        return load_face_sources(self.args.cache_dir or default_cache_dir(), split, category)

    def labelled_sources(self, split: str) -> list[LabelledSource]:
        """The split's crops of every --labelled spec; missing cache entries are built first
        (once per run)."""
        if not self._labelled:
            args = self.args
            for spec in self.labelled_specs:
                try:
                    build_labelled_cache(spec, args.labelled_cache_dir,
                                         frames_per_video=args.frames_per_video)
                except LabelledSpecError as exc:
                    raise SystemExit(str(exc)) from exc
                self._labelled[spec] = load_labelled_sources(spec, args.labelled_cache_dir)
        return [s for sources in self._labelled.values() for s in sources if s.split == split]

    def sampler(self, split: str, fake_fraction: float = 0.5) -> PseudoFakeSampler:
        """Real faces and pseudo-fakes of `split`; the train sampler also draws labelled crops
        (`labelled_fraction` of its samples). Held-out samplers stay pseudo-only: labelled
        val/test crops are scored on their own (`labelled_eval`)."""
        # val and test draw on their own seeds so they never repeat training samples
        offset = {"train": 0, "val": 1, "test": 2}[split]
        labelled = self.labelled_sources(split) if split == "train" and self.labelled_specs \
            else []
        return PseudoFakeSampler(self.sources(split), parse_weights(self.args.manipulations),
                                 fake_fraction=fake_fraction, seed=self.args.seed * 10 + offset,
                                 labelled=labelled,
                                 labelled_fraction=self.labelled_fraction if labelled else 0.0)

    def labelled_eval(self, split: str, max_crops: int) -> LabelledEvalSet | None:
        """Fixed labelled val or test crops (None without --labelled or when the split has
        no labelled files)."""
        if not self.labelled_specs:
            return None
        sources = self.labelled_sources(split)
        if not sources:
            print(f"no labelled files landed in the {split} split; no {split}_labelled metrics")
            return None
        return labelled_eval_set(sources, max_crops)

    def training_args(self) -> argparse.Namespace:
        """The options the run's weights were trained with: this command's, unless it only
        exports, then those recorded in the run's args.json (as strings there)."""
        recorded = self.run_dir / "args.json"
        if not getattr(self.args, "export_only", False) or not recorded.is_file():
            return self.args
        saved = json.loads(recorded.read_text())
        merged = vars(self.args).copy()
        for key in ("epochs", "steps_per_epoch", "batch_size", "seed"):
            if key in saved:
                merged[key] = int(saved[key])
        if "manipulations" in saved:
            merged["manipulations"] = saved["manipulations"]
        return argparse.Namespace(**merged)

    def training_data_summary(self, samples_seen: int | None = None) -> dict[str, Any]:
        """What the model saw, in words and counts, for the manifest and the model card.

        An --export-only run describes the training run's schedule (its args.json), not its
        own command line's defaults."""
        args = self.training_args()
        splits = {}
        for split in ("train", "val", "test"):
            sources = self.sources(split)
            splits[split] = {"sources": len(sources),
                             "face_crops": int(sum(len(s.crops) for s in sources)),
                             "identity_groups": len({s.group for s in sources})}
        summary = {
            "real": "faces/ photos and talking/ clip frames of ../shared/data (MTCNN face "
                    "crops), split by identity group into train/val/test",
            "fakes": f"pseudo-fakes made on the fly from real train faces: {args.manipulations}",
            "splits": splits,
            "samples_seen": samples_seen or args.epochs * args.steps_per_epoch * args.batch_size,
            "seed": args.seed,
        }
        if self.labelled_specs:
            labelled_splits = {}
            for split in ("train", "val", "test"):
                sources = self.labelled_sources(split)
                labelled_splits[split] = {"files": len(sources),
                                          "fake_files": sum(s.label for s in sources),
                                          "face_crops": int(sum(len(s.crops) for s in sources)),
                                          "groups": len({s.group for s in sources})}
            summary["labelled"] = {
                "specs": self.labelled_specs,
                "fraction_of_train_samples": self.labelled_fraction,
                "splits": labelled_splits,
                "crops": "MTCNN crops of the labelled files (largest face per frame), split by "
                         "the dataset's groups (training.data.labelled)",
            }
        return summary

    def write_json(self, name: str, data: Any) -> Path:
        path = self.run_dir / name
        path.write_text(json.dumps(data, indent=2, default=float) + "\n")
        return path


def start_run(branch: str, args: argparse.Namespace) -> RunContext:
    if getattr(args, "labelled", None) and branch not in LABELLED_BRANCHES:
        raise SystemExit(f"--labelled: the {branch} trainer does not take labelled data "
                         f"(only {', '.join(LABELLED_BRANCHES)} and audio do)")
    seed_everything(args.seed, args.threads)
    run_dir = args.runs_dir / branch / (args.run_name or "default")
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(branch, args, run_dir)
    name = "export_args.json" if getattr(args, "export_only", False) else "args.json"
    ctx.write_json(name, {k: str(v) for k, v in vars(args).items()})
    return ctx


def held_out_samples(sampler: PseudoFakeSampler, n: int) -> list[Sample]:
    """n fixed samples, alternating real and fake (balanced), identical on every call."""
    return [sampler.sample(HELD_OUT_EPOCH, i, label=i % 2) for i in range(n)]


def cosine_lr(step: int, total: int, warmup: int = 20) -> float:
    """Multiplier for the learning rate: linear warm-up, then cosine to 2% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


def save_checkpoint(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(ctx: RunContext) -> dict[str, Any] | None:
    """The run's last checkpoint, unless --no-resume or there is none."""
    if ctx.args.no_resume or not ctx.checkpoint_path.is_file():
        return None
    return torch.load(ctx.checkpoint_path, map_location="cpu", weights_only=False)


def load_dev_set(data_dir: Path | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The 67 labelled crops of ../shared/data/dev (label from the file name: __fake__/__real__).

    For a small sanity check only: never trained or tuned on.
    """
    dev = (data_dir or shared_data_dir()) / "dev"
    crops, labels = [], []
    for path in sorted(dev.glob("*")):
        if "__fake__" not in path.name and "__real__" not in path.name:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        labels.append(int("__fake__" in path.name))
    return crops, np.asarray(labels, dtype=int)


def predict_in_batches(fn: Callable[[Sequence[Any]], np.ndarray], items: Sequence[Any],
                       batch_size: int) -> np.ndarray:
    out = [fn(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


def random_windows(images: torch.Tensor, masks: torch.Tensor, size: int,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random size x size window of each [C, H, W] image and its mask (no
    resampling, so pixel-level traces keep their serving scale)."""
    if size >= images.shape[-1]:
        return images, masks
    h, w = images.shape[-2:]
    xs, ms = [], []
    for img, m in zip(images, masks, strict=True):
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        xs.append(img[:, y : y + size, x : x + size])
        ms.append(m[:, y : y + size, x : x + size])
    return torch.stack(xs), torch.stack(ms)
