"""The sync branch's model: per-step mouth and speech embeddings compared across time.

mouth [N, T, H, W] + log-mel audio [N, F, 4T] -> [N, 1] logit (higher = in sync).

A small 2-D CNN embeds every mouth frame together with its difference to the previous one
(lip motion); a 1-D CNN over the mel frames, pooled 4:1, embeds the audio at the same 25 Hz
steps. The T x T matrix of cosine similarities between the two sequences goes to an MLP: when
audio and video are aligned the matrix is strongest on its diagonal; a shift of 0.3 s or more
moves that structure off the diagonal, and swapped audio removes it. This inductive bias is
what lets a small model learn from a few dozen clips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv2d_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class SyncNet(nn.Module):
    """See the module docstring. The head only sees the mean similarity along the diagonals
    at offsets -MAX_LAG..MAX_LAG (and the contrast of the main diagonal against the rest), so
    it cannot memorize a speaker's look; about 15K parameters."""

    MAX_LAG = 4

    def __init__(self, n_mels: int = 40, mel_per_frame: int = 4, width: int = 8,
                 embed: int = 16) -> None:
        super().__init__()
        self.mel_per_frame = mel_per_frame
        self.video = nn.Sequential(conv2d_block(2, width), conv2d_block(width, 2 * width),
                                   conv2d_block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten(), nn.Linear(2 * width, embed))
        self.audio = nn.Sequential(
            nn.Conv1d(n_mels, 4 * width, 5, padding=2, bias=False), nn.BatchNorm1d(4 * width),
            nn.ReLU(inplace=True), nn.AvgPool1d(mel_per_frame),
            nn.Conv1d(4 * width, embed, 3, padding=1))
        lags = 2 * self.MAX_LAG + 1
        self.head = nn.Sequential(nn.Linear(lags + 1, 8), nn.ReLU(inplace=True),
                                  nn.Linear(8, 1))

    def forward(self, mouth: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        n, t, h, w = mouth.shape
        motion = torch.cat([torch.zeros_like(mouth[:, :1]), mouth[:, 1:] - mouth[:, :-1]], dim=1)
        frames = torch.stack([mouth, motion], dim=2).reshape(n * t, 2, h, w)
        v = self.video(frames).reshape(n, t, -1)                  # [N, T, E]
        a = self.audio(audio).transpose(1, 2)                      # [N, T, E]
        v = F.normalize(v - v.mean(dim=1, keepdim=True), dim=-1)
        a = F.normalize(a - a.mean(dim=1, keepdim=True), dim=-1)
        sim = torch.bmm(v, a.transpose(1, 2))                      # [N, T, T]
        diagonals = [torch.diagonal(sim, offset=k, dim1=1, dim2=2).mean(dim=1)
                     for k in range(-self.MAX_LAG, self.MAX_LAG + 1)]
        lagged = torch.stack(diagonals, dim=1)                     # [N, 2 * MAX_LAG + 1]
        contrast = lagged[:, self.MAX_LAG:self.MAX_LAG + 1] - sim.mean(dim=(1, 2)).unsqueeze(1)
        return self.head(torch.cat([lagged, contrast], dim=1))
