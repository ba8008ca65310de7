"""Train the autoencoder face swapper (training.fakes.faceswap) on the shared loop: one
decoder per real clip of the pack (its largest face in each packed frame), the encoder shared.

    python -m training.real.faceswap --recipe training/recipes/faceswap-1.0.0.json

Each step draws `identities_per_step` clips and `faces_per_identity` of their faces; the input
is the aligned face under a random smooth warp, the target the same face unwarped (both under
one random flip and small affine), so a decoder learns to draw its person rather than copy its
input. Loss: L1 + (1 - SSIM) per channel. The run folder keeps the checkpoint, the model's
settings and the identities; `ae_swap` reads them through `Swapper.load`.

The encoder sees every real clip's faces, labels never; a fold's detector only draws with the
decoders of people in its own training reals (`Swapper.decoders_for`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from training.fakes.faceswap import (
    ALIGN_SIZE,
    IDENTITIES,
    Identity,
    SwapAutoencoder,
    Swapper,
    aligned,
    autoencoder_swap,
    to_tensor,
    use_swapper,
)
from training.fakes.registry import DonorPool, Face
from training.models.mri import ssim_loss
from training.real.loop import FitConfig, data_key_of, fit, loop_parser
from training.real.pack import load_entry, read_index
from training.runtime import RUNS_DIR

log = logging.getLogger(__name__)
SETTINGS = ("min_faces", "width", "code", "identities_per_step", "faces_per_identity", "warp_px",
            "lr", "train_steps", "seed")
"""The recipe's entries that shape the swapper (its data key); the rest is description."""


def identity_faces(index: list[dict[str, Any]], min_faces: int
                   ) -> tuple[list[Identity], list[np.ndarray]]:
    """The real clips (dev never) with at least `min_faces` packed frames, and per clip its
    largest face of each frame, aligned (uint8 [n, ALIGN_SIZE, ALIGN_SIZE, 3])."""
    identities, faces = [], []
    for r in sorted(index, key=lambda r: r["path"]):
        if r["kind"] != "video" or r["label"] or r.get("error") or r["collection"] == "dev" \
                or not r.get("faces"):
            continue
        entry = load_entry(r)
        keep = entry["rank"] == 0
        if keep.sum() < min_faces:
            continue
        identities.append(Identity(r["path"], r["group"]))
        faces.append(np.stack([aligned(c, m) for c, m in
                               zip(entry["crops"][keep], entry["landmarks"][keep], strict=True)]))
    return identities, faces


def random_warp(face: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    """`face` under a smooth random displacement (a 5x5 grid of `spread`-pixel offsets)."""
    size = face.shape[0]
    flow = cv2.resize(rng.normal(0.0, spread, (5, 5, 2)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return cv2.remap(face, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def jitter(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random rotation, scale and shift, and a flip half the time."""
    size = face.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-8, 8)),
                                     float(rng.uniform(0.95, 1.05)))
    matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    out = cv2.warpAffine(face, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
    return out[:, ::-1] if rng.random() < 0.5 else out


class Batches:
    """(warped faces, identity index) -> the unwarped faces, for the shared loop."""

    def __init__(self, faces: list[np.ndarray], recipe: dict[str, Any]) -> None:
        self.faces = faces
        self.ids = min(int(recipe["identities_per_step"]), len(faces))
        self.per = int(recipe["faces_per_identity"])
        self.spread = float(recipe["warp_px"])

    def __call__(self, step: int, rng: np.random.Generator
                 ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        inputs, targets, who = [], [], []
        for k in rng.choice(len(self.faces), self.ids, replace=False):
            for j in rng.integers(len(self.faces[k]), size=self.per):
                target = jitter(self.faces[k][j], rng)
                inputs.append(random_warp(target, rng, self.spread))
                targets.append(target)
                who.append(k)
        return (to_tensor(inputs).numpy(), np.asarray(who, np.int64)), to_tensor(targets).numpy()


def reconstruction_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + (1 - SSIM), SSIM per colour channel."""
    n = out.shape[0] * 3
    return F.l1_loss(out, target) + ssim_loss(out.reshape(n, 1, ALIGN_SIZE, ALIGN_SIZE),
                                              target.reshape(n, 1, ALIGN_SIZE, ALIGN_SIZE))


def run_dir_for(recipe: dict[str, Any]) -> Path:
    return RUNS_DIR / "real" / "faceswap" / recipe["version"]


def train(recipe: dict[str, Any], index: list[dict[str, Any]], run_dir: Path, device: str,
          steps_scale: float = 1.0) -> SwapAutoencoder:
    """Train (or resume) the swapper into run_dir; returns it."""
    identities, faces = identity_faces(index, int(recipe["min_faces"]))
    if len(identities) < 2:
        raise SystemExit("the face swapper needs at least two real clips: run "
                         "`python -m training pack` first")
    log.info("face swapper: %d identities, %d faces", len(identities), sum(map(len, faces)))
    settings = {"width": int(recipe["width"]), "code": int(recipe["code"])}
    torch.manual_seed(int(recipe["seed"]))
    model = SwapAutoencoder(len(identities), **settings)
    steps = max(2, int(recipe["train_steps"] * steps_scale))
    cfg = FitConfig(steps=steps, lr=float(recipe["lr"]),
                    seed=int(recipe["seed"]), device=device, threads=int(recipe["threads"]),
                    weight_decay=0.0, optimizer="adam", schedule="constant")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / IDENTITIES).write_text(json.dumps([asdict(i) for i in identities], indent=1))
    (run_dir / "model.json").write_text(json.dumps(settings))
    fit(model, Batches(faces, recipe), cfg, run_dir,
        data_key_of(faces, {k: recipe[k] for k in SETTINGS}), loss=reconstruction_loss)
    return model.cpu().eval()


def preview(swapper: Swapper, index: list[dict[str, Any]], path: Path, rows: int = 4,
            seed: int = 1) -> None:
    """A JPEG grid of `rows` real clips' first faces: the crop, its aligned face, that face
    rebuilt by its own decoder, drawn by another person's decoder, and `ae_swap`'s result."""
    packed = {r["path"]: r for r in index}
    count = len(swapper.identities)
    chosen = list(range(0, count, max(1, count // rows)))[:rows]
    faces = []
    for k in chosen:
        entry = load_entry(packed[swapper.identities[k].path])
        faces.append(Face(entry["crops"][0], entry["landmarks"][0], swapper.identities[k].group))
    rng = np.random.default_rng(seed)
    use_swapper(swapper)
    try:
        grid = []
        for k, face in zip(chosen, faces, strict=True):
            face64 = aligned(face.crop, face.landmarks)
            tiles = (face.crop, face64, swapper.swap(face64, k),
                     swapper.swap(face64, (k + count // 2) % count),
                     autoencoder_swap(face, rng, DonorPool(faces)).crop)
            grid.append(np.concatenate([cv2.resize(t, (96, 96), interpolation=cv2.INTER_AREA)
                                        for t in tiles], axis=1))
    finally:
        use_swapper(None)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(grid), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 85])


def main(argv: list[str] | None = None) -> None:
    parser = loop_parser("python -m training.real.faceswap", __doc__)
    parser.add_argument("--preview", type=Path, default=None,
                        help="also write a JPEG grid of what the trained swapper draws")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    recipe = json.loads(args.recipe.read_text())
    index, run_dir = read_index(), run_dir_for(recipe)
    train(recipe, index, run_dir, args.device, args.steps_scale)
    if args.preview:
        preview(Swapper.load(run_dir), index, args.preview)


if __name__ == "__main__":
    main()
