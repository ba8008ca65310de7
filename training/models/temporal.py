"""The temporal branch over visual's per-frame embeddings [B, T, D]: a BiLSTM (default) or a
1-D temporal CNN. Both pool over time (mean and max), so any T >= 1 works."""

from __future__ import annotations

import torch
from torch import nn

TEMPORAL_ARCHS = ("bilstm", "tcn", "stats")


class BiLSTMTemporal(nn.Module):
    """LayerNorm -> BiLSTM -> mean and max over time -> one logit."""

    def __init__(self, input_dim: int, hidden: int = 96, dropout: float = 0.2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.proj = nn.Linear(input_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.proj(self.norm(embeddings)))
        out, _ = self.lstm(x)
        pooled = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1)
        return self.head(self.dropout(pooled))


class TemporalCNN(nn.Module):
    """LayerNorm -> two 1-D convolutions over time (kernel 3, the second dilated) -> pooling."""

    def __init__(self, input_dim: int, hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.convs = nn.Sequential(
            nn.Conv1d(input_dim, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.norm(embeddings).transpose(1, 2))
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return self.head(self.dropout(pooled))


class TemporalStats(nn.Module):
    """Four motion statistics of the embedding sequence -> one logit (5 weights).

    Per-frame embeddings are layer-normalized (no learned scale); the statistics are the
    mean and the maximum step between consecutive frames, the mean spread of each dimension
    over time, and the mean embedding norm. With a hundred-odd labelled videos, a model
    this small is what can be fitted without learning the training clips by heart.
    """

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(input_dim, elementwise_affine=False)
        self.head = nn.Linear(4, 1)
        self.register_buffer("scale", torch.tensor(float(input_dim) ** -0.5))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.norm(embeddings) * self.scale  # the service sends at least 2 frames
        steps = torch.linalg.vector_norm(x[:, 1:] - x[:, :-1], dim=2)
        centred = x - x.mean(dim=1, keepdim=True)
        stats = torch.stack([steps.mean(dim=1), steps.amax(dim=1),
                             centred.pow(2).mean(dim=(1, 2)).sqrt(),
                             torch.linalg.vector_norm(x.mean(dim=1), dim=1)], dim=1)
        return self.head(stats)


def build_temporal(arch: str, input_dim: int) -> nn.Module:
    if arch == "stats":
        return TemporalStats(input_dim)
    if arch == "bilstm":
        return BiLSTMTemporal(input_dim)
    if arch == "tcn":
        return TemporalCNN(input_dim)
    raise ValueError(f"unknown temporal arch {arch!r}; choose from {TEMPORAL_ARCHS}")


def fold_temperature(model: nn.Module, temperature: float) -> None:
    """Divide the model's logit by `temperature` by scaling its final linear head in place, so
    the exported graph emits calibrated logits with no extra op."""
    with torch.no_grad():
        model.head.weight /= temperature
        model.head.bias /= temperature
