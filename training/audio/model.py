"""The audio branch's model: a small 2-D CNN over CQCC windows, one logit (spoof) per window."""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class CQCCNet(nn.Module):
    """[N, 1, C, T] CQCC -> [N, 1] logit. Four conv blocks (12-24-32-48 channels), global
    average and max pooling over coefficient x time, dropout, linear. About 30K parameters."""

    def __init__(self, channels: tuple[int, ...] = (12, 24, 32, 48), dropout: float = 0.3) -> None:
        super().__init__()
        chans = [1, *channels]
        blocks = (conv_block(a, b) for a, b in zip(chans, chans[1:], strict=False))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * chans[-1], 1))

    def forward(self, cqcc: torch.Tensor) -> torch.Tensor:
        h = self.features(cqcc)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)
