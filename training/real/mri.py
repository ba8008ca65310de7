"""mri 1.1: the MRI-GAN of training.train_mri trained by the shared loop (training.real.loop)
on the same data: real faces of the prepared face cache (`python -m training prepare`) and
pseudo-fakes made from them, with 1 - SSIM target maps.

    python -m training.real.mri --recipe training/recipes/mri-1.1.0.json [--device cuda]

Two stages, each one `fit` with its own checkpoint and data key under runs/real/mri/<version>/:

    generator   the U-Net and its PatchGAN as one model (`MapGAN`) on random windows of the
                input and target; its loss is the generator's (L1, SSIM and the adversarial
                term through a detached copy of the discriminator) plus the discriminator's,
                so one optimizer steps both at once
    classifier  the map classifier on the frozen generator's full-size maps of train samples,
                on the loop's default loss (binary cross-entropy, label smoothing)

Then the 1.x trainer's `measure` (held-out pseudo-fakes, the dev crops) and `export` write the
served graph (generator + classifier) into runs/real/mri/<version>/repo, or models/ with
--export. Both stages run a fixed schedule: no weights are picked on validation data.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from training.common import RunContext, held_out_samples, random_windows
from training.data.faces import default_cache_dir
from training.data.pseudo import PseudoFakeSampler
from training.models.mri import (
    MapClassifier,
    MRIDetector,
    PatchDiscriminator,
    UNetGenerator,
    ssim_loss,
)
from training.real.loop import BatchFn, FitConfig, data_key_of, fit, loop_parser
from training.real.visual import load_recipe, run_dir_for
from training.runtime import MODELS_DIR
from training.train_mri import (
    ADV_WEIGHT,
    BRANCH,
    HELD_TRAIN_EPOCH,
    L1_WEIGHT,
    SSIM_WEIGHT,
    export,
    generate_maps,
    measure,
    to_tensors,
)

log = logging.getLogger(__name__)


class MapGAN(nn.Module):
    """Generator and discriminator as one model: `forward` draws the maps, `loss` scores them
    for both players, so a single optimizer step is a simultaneous update of the two."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = UNetGenerator()
        self.discriminator = PatchDiscriminator()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, self.generator(images)

    def loss(self, out: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor
             ) -> torch.Tensor:
        """The generator's 1.x loss plus the discriminator's. The discriminator learns only
        from its own term (on detached maps); the generator's adversarial term goes through
        the discriminator with detached weights, so it trains the generator alone."""
        images, maps = out
        d_real = self.discriminator(images, targets)
        d_fake = self.discriminator(images, maps.detach())
        loss_d = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                        + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        frozen = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        d_maps = functional_call(self.discriminator, frozen, (images, maps))
        adv = F.binary_cross_entropy_with_logits(d_maps, torch.ones_like(d_maps))
        loss_g = (L1_WEIGHT * F.l1_loss(maps, targets) + SSIM_WEIGHT * ssim_loss(maps, targets)
                  + ADV_WEIGHT * adv)
        return loss_g + loss_d


def manipulations(recipe: dict[str, Any]) -> str:
    """The recipe's pseudo-fake weights as the 1.x option string ("sbi=3,face_swap=2")."""
    return ",".join(f"{name}={weight:g}" for name, weight in recipe["pseudo_fakes"].items())


def run_context(recipe: dict[str, Any], run_dir: Path, cache_dir: Path, models_dir: Path,
                generator_steps: int, dev: bool = True) -> RunContext:
    """The 1.x trainer's run context (samplers, `measure`, `export`) over the recipe's
    settings; the generator's steps stand for 1.x's epochs x steps per epoch."""
    args = argparse.Namespace(
        seed=int(recipe["seed"]), manipulations=manipulations(recipe), cache_dir=cache_dir,
        test_samples=int(recipe["test_samples"]), no_dev=not dev, version=recipe["version"],
        models_dir=models_dir, epochs=1, steps_per_epoch=generator_steps,
        batch_size=int(recipe["batch_size"]))
    return RunContext(BRANCH, args, run_dir)


def window_batches(sampler: PseudoFakeSampler, batch: int, window: int) -> BatchFn:
    """The generator's batches: `batch` samples of the step (real or pseudo-fake at even
    odds), one random `window` x `window` cut of each image and its target map."""

    def draw(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        images, targets, _ = to_tensors([sampler.sample(step, j) for j in range(batch)])
        images, targets = random_windows(images, targets, window, rng)
        return images.numpy(), targets.numpy()

    return draw


def map_batches(maps: np.ndarray, labels: np.ndarray, batch: int) -> BatchFn:
    """The classifier's batches: `batch` of the precomputed maps, drawn with replacement."""

    def draw(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.choice(len(maps), batch)
        return maps[idx], labels[idx]

    return draw


def fit_config(recipe: dict[str, Any], steps: int, lr: float, device: str) -> FitConfig:
    return FitConfig(steps=steps, lr=lr, weight_decay=float(recipe["weight_decay"]),
                     seed=int(recipe["seed"]), device=device,
                     threads=int(recipe.get("threads", 1)))


def train_generator(ctx: RunContext, recipe: dict[str, Any], steps: int, device: str
                    ) -> UNetGenerator:
    """The generator stage: MapGAN on the shared loop; returns the generator (CPU, eval)."""
    sources = ctx.sources("train")
    log.info("generator: %d train sources, %d face crops", len(sources),
             sum(len(s.crops) for s in sources))
    torch.manual_seed(int(recipe["seed"]))
    gan = MapGAN()
    batches = window_batches(ctx.sampler("train"), int(recipe["batch_size"]),
                             int(recipe["train_size"]))
    key = data_key_of([a for s in sources for a in (s.crops, s.landmarks)], recipe)
    fit(gan, batches, fit_config(recipe, steps, float(recipe["lr"]), device),
        ctx.run_dir / "generator", key, loss=gan.loss)
    return gan.generator.cpu().eval()


def train_classifier(ctx: RunContext, recipe: dict[str, Any], generator: UNetGenerator,
                     steps: int, device: str) -> MapClassifier:
    """The classifier stage: the map classifier on the frozen generator's full-size maps of
    `classifier_samples` train samples (half fake), on the loop's default loss."""
    sampler = ctx.sampler("train")
    samples = [sampler.sample(HELD_TRAIN_EPOCH, i, label=i % 2)
               for i in range(int(recipe["classifier_samples"]))]
    maps = generate_maps(generator, [s.crop for s in samples]).numpy()
    labels = np.array([s.label for s in samples], np.float32)
    torch.manual_seed(int(recipe["seed"]))
    classifier = MapClassifier()
    fit(classifier, map_batches(maps, labels, int(recipe["classifier_batch_size"])),
        fit_config(recipe, steps, float(recipe["classifier_lr"]), device),
        ctx.run_dir / "classifier", data_key_of(maps, labels, recipe))
    return classifier.cpu().eval()


def validation(ctx: RunContext, model: MRIDetector, n: int) -> dict[str, float]:
    """Map L1 and classifier log-loss of the final model on `n` fixed validation samples
    (reported, never used to pick weights)."""
    val = held_out_samples(ctx.sampler("val"), n)
    images, targets, labels = to_tensors(val)
    with torch.no_grad():
        maps, logits = model.eval()(images)
    return {"val_map_l1": float(F.l1_loss(maps, targets)),
            "val_log_loss": float(F.binary_cross_entropy_with_logits(logits, labels))}


def train(recipe: dict[str, Any], run_dir: Path, cache_dir: Path, models_dir: Path,
          steps_scale: float = 1.0, device: str = "cpu", dev: bool = True) -> dict[str, Any]:
    """Both stages, then the 1.x measurements and export into `models_dir`; the metrics."""
    generator_steps = max(2, int(recipe["generator_steps"] * steps_scale))
    classifier_steps = max(2, int(recipe["classifier_steps"] * steps_scale))
    ctx = run_context(recipe, run_dir, cache_dir, models_dir, generator_steps, dev)
    generator = train_generator(ctx, recipe, generator_steps, device)
    classifier = train_classifier(ctx, recipe, generator, classifier_steps, device)
    model = MRIDetector(generator, classifier).eval()
    ctx.write_json("validation.json", validation(ctx, model, int(recipe["val_samples"])))
    metrics = measure(ctx, model)
    export(ctx, model, metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = loop_parser("python -m training.real.mri", __doc__)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the prepared face cache (default runs/cache/faces)")
    parser.add_argument("--no-dev", action="store_true", help="skip the ../shared/data/dev check")
    parser.add_argument("--export", action="store_true",
                        help="export to models/ (default: the run folder's repo/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    recipe = load_recipe(args.recipe)
    run_dir = run_dir_for(recipe)
    train(recipe, run_dir, args.cache_dir or default_cache_dir(),
          MODELS_DIR if args.export else run_dir / "repo", args.steps_scale, args.device,
          dev=not args.no_dev)


if __name__ == "__main__":
    main()
