"""tiny_gate 2.x: Tiny-LaDeDa trained on the real labelled media with the shared loop, the
visual trainer's sampler (real fakes of ../shared/train, pseudo-fakes, the same capture and
codec chain for real and fake) and its source-disjoint cross-fitting.

    python -m training.real.tiny_gate --recipe training/recipes/tiny_gate-2.0.0.json --export

The model scores 32x32 patches (dfmesh.preprocess.patches.tiny_patches: 64 per 256 crop, as
the service cuts them); in training a crop's logit is the mean of its patch logits, so the
label is the crop's, never a guess about which patch was manipulated. After training, the
head is rescaled so that the median training real crop lands at logit -1 and the median
training fake at +1 (`standardize`): fold models and the final model then put their scores
on one scale, which fusion's heads, fitted on fold scores and applied to the final model's,
need.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dfmesh.preprocess.patches import TINY_CROP_SIZE, TINY_PATCH_SIZE, TINY_PATCH_STRIDE
from dfmesh.preprocess.tensors import normalize_imagenet, resize_rgb
from training.export import ExportSpec, TensorSpec, export_branch
from training.models.tiny_ladeda import TinyLaDeDa, manifest_preprocessing
from training.real.features import release_info
from training.real.loop import FitConfig, data_key_of, fit
from training.real.visual import (
    FaceTrainer,
    Sampler,
    build_pools,
    cross_fit,
    load_recipe,
    recipe_parser,
)

log = logging.getLogger(__name__)
SCALE_BATCHES = 24
"""Batches drawn (with a fixed seed) to place the median real and fake crop."""


class PatchMean(nn.Module):
    """Crops [B, 3, 256, 256] -> [B, 1]: the mean of the 64 patch logits of each crop, the
    patches cut as the service cuts them (non-overlapping 32x32, row-major)."""

    def __init__(self, tiny: TinyLaDeDa) -> None:
        super().__init__()
        self.tiny = tiny

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        b, c = crops.shape[:2]
        size = TINY_PATCH_SIZE
        patches = crops.unfold(2, size, TINY_PATCH_STRIDE).unfold(3, size, TINY_PATCH_STRIDE)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)
        return self.tiny(patches).reshape(b, -1).mean(dim=1, keepdim=True)


def encode(crops: list[np.ndarray]) -> np.ndarray:
    """Face crops -> [B, 3, 256, 256] float32, ImageNet-normalized (tiny_patches' pixels)."""
    return normalize_imagenet(np.stack([resize_rgb(c, TINY_CROP_SIZE, TINY_CROP_SIZE)
                                        for c in crops]))


@torch.no_grad()
def standardize(model: PatchMean, sampler: Sampler,
                batches: int = SCALE_BATCHES) -> dict[str, float]:
    """Rescale the head in place so the median real crop logit is -1 and the median fake +1,
    over `batches` training batches drawn with a fixed seed; returns the medians before."""
    model.eval()
    rng = np.random.default_rng(12345)
    logits, labels = [], []
    for step in range(batches):
        x, y = sampler(step, rng)
        logits.append(model(torch.from_numpy(x)).reshape(-1).numpy())
        labels.append(y)
    z, y = np.concatenate(logits), np.concatenate(labels)
    real, fake = float(np.median(z[y == 0])), float(np.median(z[y == 1]))
    if fake - real < 1e-3:
        log.warning("fake median %.4f not above real median %.4f: scale left as is", fake, real)
        return {"median_real": real, "median_fake": fake, "scale": 1.0, "shift": 0.0}
    scale = 2.0 / (fake - real)
    shift = -(fake + real) / (fake - real)
    head = model.tiny.head
    head.weight.mul_(scale)
    head.bias.mul_(scale).add_(shift)
    return {"median_real": real, "median_fake": fake, "scale": scale, "shift": shift}


def train_one(recipe: dict[str, Any], records: list[dict[str, Any]], run_dir: Path,
              steps: int, device: str) -> TinyLaDeDa:
    reals, fakes = build_pools(records)
    log.info("%s: %d real crops, %d fake crops", run_dir.name, len(reals.faces), len(fakes.faces))
    torch.manual_seed(int(recipe["seed"]))
    model = PatchMean(TinyLaDeDa())
    sampler = Sampler(reals, fakes, recipe, encode)
    cfg = FitConfig(steps=steps, lr=float(recipe["lr"]), seed=int(recipe["seed"]), device=device,
                    threads=int(recipe.get("threads", 2)), warmup_steps=int(recipe.get(
                        "warmup_steps", 20)))
    fit(model, sampler, cfg, run_dir, data_key_of(records, recipe))
    model = model.cpu()
    scale = standardize(model, sampler)
    log.info("%s: scale %s", run_dir.name, scale)
    (run_dir / "scale.json").write_text(json.dumps(scale, indent=1))
    return model.tiny.eval()


def export_tiny_gate(model: TinyLaDeDa, recipe: dict[str, Any], models_dir: Path,
                     info: dict[str, Any]) -> Path:
    """Export a Tiny-LaDeDa (patches -> logit) into `models_dir`; returns the repo root."""
    rng = np.random.default_rng(0)
    example = (torch.from_numpy(rng.normal(size=(64, 3, TINY_PATCH_SIZE, TINY_PATCH_SIZE))
                                .astype(np.float32)),)
    spec = ExportSpec(
        name="tiny_gate-tiny-ladeda", branch="tiny_gate", version=recipe["version"],
        inputs=[TensorSpec("patches", ["batch", 3, "height", "width"])],
        outputs=[TensorSpec("logit", ["batch", 1])],
        preprocessing=manifest_preprocessing(
            "sigmoid(logit) = P(fake) per patch; trained so that the mean of a crop's patch "
            "logits is its logit; the service reports mean, max and p90 over all patches of "
            "a clip"),
        training_data=info.get("training_data", recipe.get("data", "")),
        metrics=info.get("metrics", {}), fp16_weights=False,
        keep_torch_state={"class": "training.models.tiny_ladeda.TinyLaDeDa", "kwargs": {}},
        extra={"architecture": "Tiny-LaDeDa", "parameters": sum(p.numel() for p in
                                                                model.parameters())}
        | {k: v for k, v in info.items() if k not in ("training_data", "metrics")})
    export_branch(model, example, spec, models_dir)
    return models_dir


def main(argv: list[str] | None = None) -> None:
    args = recipe_parser("python -m training.real.tiny_gate", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    trainer = FaceTrainer("tiny_gate", train_one, export_tiny_gate, release_info)
    cross_fit(trainer, load_recipe(args.recipe), args)


if __name__ == "__main__":
    main()
