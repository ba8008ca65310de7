"""The sync branch's model: a two-stream audio-visual head, one in-sync logit per window."""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class SyncNet(nn.Module):
    """mouth [N, T, H, W] + log-mel audio [N, F, Ta] -> [N, 1] logit (higher = in sync).

    The video stream sees the T grayscale frames and their T-1 differences as channels (lip
    motion is in the differences); the audio stream is a small CNN over the mel window. The
    head compares the two 64-d embeddings through [v, a, v * a, |v - a|]."""

    def __init__(self, frames: int = 5, width: int = 32, embed: int = 64) -> None:
        super().__init__()
        self.video = nn.Sequential(conv_block(2 * frames - 1, width), conv_block(width, 2 * width),
                                   conv_block(2 * width, embed), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten())
        self.audio = nn.Sequential(conv_block(1, width), conv_block(width, 2 * width),
                                   nn.Conv2d(2 * width, embed, 3, padding=1),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * embed, embed), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(embed, 1))

    def forward(self, mouth: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        motion = mouth[:, 1:] - mouth[:, :-1]
        v = self.video(torch.cat([mouth, motion], dim=1))
        a = self.audio(audio.unsqueeze(1))
        return self.head(torch.cat([v, a, v * a, (v - a).abs()], dim=1))
