"""The visual branch: ResNet-18 (default) or EfficientNet-B0 from torchvision, trained from
scratch (weights=None; nothing can be downloaded), one logit plus the pooled per-frame
embedding the temporal branch consumes."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

VISUAL_ARCHS = ("resnet18", "efficientnet_b0")


class VisualDetector(nn.Module):
    """[N, 3, 224, 224] ImageNet-normalized crops -> (logit [N, 1], embedding [N, D])."""

    def __init__(self, arch: str = "resnet18", dropout: float = 0.2) -> None:
        super().__init__()
        if arch == "resnet18":
            net = models.resnet18(weights=None)
            self.embedding_dim = net.fc.in_features
            net.fc = nn.Identity()
        elif arch == "efficientnet_b0":
            net = models.efficientnet_b0(weights=None)
            self.embedding_dim = net.classifier[1].in_features
            net.classifier = nn.Identity()
        else:
            raise ValueError(f"unknown visual arch {arch!r}; choose from {VISUAL_ARCHS}")
        self.arch = arch
        self.backbone = net
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embedding_dim, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.backbone(image)
        return self.head(self.dropout(embedding)), embedding
