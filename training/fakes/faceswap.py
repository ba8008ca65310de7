"""An autoencoder face swap, the kind behind FaceForensics++'s Deepfakes: one encoder shared
by every identity and one decoder per identity, each decoder trained to rebuild its own
person's aligned face from the shared code. Decoding A's face with B's decoder gives B's face
with A's pose and expression; pasted back through a face mask, it is a swap whose face was
drawn by a learned generator (its blur, its upsampling texture), not copied from a photo.

The swapper is trained by training.real.faceswap on the real video faces that training.real
.pack made (one identity per clip); the `ae_swap` manipulation reads a trained swapper that a
trainer installs with `use_swapper` before it draws batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from training.fakes.image import blend, reinhard_transfer
from training.fakes.masks import random_blend_mask
from training.fakes.registry import DonorPool, Face, Manipulated, register_manipulation

ALIGN_SIZE = 64
# ArcFace's five-point template (112 px), scaled to ALIGN_SIZE: brows to chin, cheek to cheek
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32) * (ALIGN_SIZE / 112)


def alignment(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking a crop's five landmarks onto TEMPLATE."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), TEMPLATE)
    if matrix is None:
        raise ValueError("landmarks too degenerate to align")
    return matrix


def aligned(crop: np.ndarray, landmarks: np.ndarray,
            matrix: np.ndarray | None = None) -> np.ndarray:
    """The face of a uint8 RGB crop, aligned to TEMPLATE at ALIGN_SIZE pixels (by `matrix`
    when the caller has the landmarks' `alignment` already)."""
    return cv2.warpAffine(crop, alignment(landmarks) if matrix is None else matrix,
                          (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REFLECT)


def _upscale(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.PixelShuffle(2))


class SwapAutoencoder(nn.Module):
    """Shared encoder (64 px RGB in [0, 1] -> an 8x8x128 code) and one decoder per identity
    (the code -> 64 px RGB). `forward(x, identity)` decodes each face with its identity's
    decoder."""

    def __init__(self, num_identities: int, width: int = 48, code: int = 256) -> None:
        super().__init__()
        w = width

        def down(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 5, 2, 2), nn.LeakyReLU(0.1))

        self.encoder = nn.Sequential(
            down(3, w), down(w, 2 * w), down(2 * w, 4 * w), down(4 * w, 8 * w), nn.Flatten(),
            nn.Linear(8 * w * 16, code), nn.Linear(code, 16 * code), nn.Unflatten(1, (code, 4, 4)),
            _upscale(code, 128))
        self.decoders = nn.ModuleList(
            nn.Sequential(_upscale(128, 64), _upscale(64, 32), _upscale(32, 16),
                          nn.Conv2d(16, 3, 5, padding=2), nn.Sigmoid())
            for _ in range(num_identities))

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        out = torch.empty_like(x)
        for k in identity.unique().tolist():
            rows = identity == k
            out[rows] = self.decoders[k](code[rows])
        return out


def to_tensor(faces: list[np.ndarray]) -> torch.Tensor:
    """uint8 RGB [H, W, 3] faces -> float32 [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.stack(faces).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


@dataclass(frozen=True)
class Identity:
    """One decoder's person: the packed clip it learned from and that clip's group."""

    path: str
    group: str


IDENTITIES = "identities.json"


class Swapper:
    """A trained SwapAutoencoder with the identities its decoders draw."""

    def __init__(self, model: SwapAutoencoder, identities: list[Identity]) -> None:
        self.model = model.eval()
        self.identities = identities
        self._allowed: dict[frozenset[str], np.ndarray] = {}

    @classmethod
    def load(cls, run_dir: Path) -> Swapper:
        """The swapper a training.real.faceswap run left in run_dir."""
        from training.real.loop import load_weights

        identities = [Identity(**i) for i in json.loads((run_dir / IDENTITIES).read_text())]
        settings = json.loads((run_dir / "model.json").read_text())
        model = SwapAutoencoder(len(identities), **settings)
        return cls(load_weights(model, run_dir), identities)

    def decoders_for(self, donors: DonorPool) -> np.ndarray:
        """Indices of the decoders whose person is among `donors`' groups: a fold model
        never sees a face drawn by the decoder of a person it holds out."""
        groups = frozenset(f.group for f in donors.faces)
        if groups not in self._allowed:
            self._allowed[groups] = np.array(
                [k for k, i in enumerate(self.identities) if i.group in groups], np.int64)
        return self._allowed[groups]

    @torch.no_grad()
    def swap(self, face: np.ndarray, decoder: int) -> np.ndarray:
        """An aligned uint8 face decoded as `decoder`'s person (uint8, ALIGN_SIZE)."""
        out = self.model(to_tensor([face]), torch.tensor([decoder]))[0]
        return (out.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)


_swapper: Swapper | None = None


def use_swapper(swapper: Swapper | None) -> None:
    """Install the swapper `ae_swap` draws with (None: uninstall)."""
    global _swapper
    _swapper = swapper


@register_manipulation("ae_swap")
def autoencoder_swap(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
    """The face re-drawn by another person's decoder, warped back onto the crop,
    colour-matched (80%) and blended in through a random face mask."""
    if _swapper is None:
        raise RuntimeError("ae_swap needs a trained swapper: training.fakes.faceswap.use_swapper")
    allowed = _swapper.decoders_for(donors)
    allowed = allowed[[_swapper.identities[k].group != face.group for k in allowed]]
    if allowed.size == 0:
        raise RuntimeError("ae_swap: no decoder of a person outside this face's group")
    matrix = alignment(face.landmarks)
    drawn = _swapper.swap(aligned(face.crop, face.landmarks, matrix), int(rng.choice(allowed)))
    h, w = face.crop.shape[:2]
    interp = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
    back = cv2.warpAffine(drawn, matrix, (w, h), flags=interp | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones((ALIGN_SIZE, ALIGN_SIZE), np.float32), matrix, (w, h),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    mask = random_blend_mask(face.landmarks, (h, w), rng) * cv2.erode(inside, np.ones((5, 5)))
    if rng.random() < 0.8:
        back = reinhard_transfer(back, face.crop, mask)
    return Manipulated(blend(back, face.crop, mask), mask, "ae_swap")
