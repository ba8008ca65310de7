"""Tiny-LaDeDa: a ~1.3K-parameter patch detector (after Cavia et al., "Real-Time Deepfake
Detection in the Real-World", 2024): a few small convolutions with a small receptive field,
global average pooling, one logit. Fully convolutional, so any HxW of at least 4x4 works:
32x32 patches in serving, whole non-square frames too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dfmesh.preprocess.patches import TINY_CROP_SIZE, TINY_PATCH_SIZE, TINY_PATCH_STRIDE


def manifest_preprocessing(output: str) -> dict[str, Any]:
    """The manifest's `preprocessing` of an exported tiny_gate model (the service's patches);
    `output` says how its logit is read."""
    return {"function": "dfmesh.preprocess.patches.tiny_patches",
            "input": "one uint8 RGB face crop (dfmesh.preprocess.geometry.face_crop), "
                     "resized to 256 if needed",
            "crop_size": TINY_CROP_SIZE, "patch_size": TINY_PATCH_SIZE,
            "stride": TINY_PATCH_STRIDE, "patches_per_crop": 64,
            "normalization": "ImageNet mean/std", "layout": "NCHW float32", "output": output}


class TinyLaDeDa(nn.Module):
    """[N, 3, H, W] ImageNet-normalized patches -> [N, 1] logits (fake > 0)."""

    def __init__(self, width: int = 8, hidden: int = 12) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, hidden, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        pooled = self.features(patches).mean(dim=(2, 3))
        return self.head(pooled)
