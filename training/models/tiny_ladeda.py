"""Tiny-LaDeDa: a ~1.3K-parameter patch detector (after Cavia et al., "Real-Time Deepfake
Detection in the Real-World", 2024): a few small convolutions with a small receptive field,
global average pooling, one logit. Fully convolutional, so any HxW of at least 4x4 works:
32x32 patches in serving, whole non-square frames too.
"""

from __future__ import annotations

import torch
from torch import nn


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
