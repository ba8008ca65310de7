"""AASIST: spectro-temporal graph attention over a raw-waveform encoder (Jung et al., ICASSP
2022), written for this project so that the authors' released weights (MIT, trained on
ASVspoof 2019 LA) load with `strict=True`.

    waveform [B, 64600] -> sinc filterbank (fixed, mel-spaced) -> |.|, 3x3 max-pool, BN, SELU
      -> six residual blocks (2-D convs over filter x time, time max-pooled by 3 each)
      -> spectral graph (max over time) and temporal graph (max over filters), each a graph
         attention layer + top-k graph pooling
      -> two branches of heterogeneous (spectral + temporal + master node) attention, max-fused
      -> [max, mean] of each node type + master -> linear -> logits[2] (index 1 = bona fide)

Module and parameter names follow the released state dicts; the hyper-parameters come from
the weights' .conf (`model_config`). Two behaviours of the released model are kept on
purpose because the weights were trained with them: a residual block feeds its *input* (not
its batch-normalised pre-activation) to conv1, so bn1 is loaded but unused; and the first
heterogeneous layer of each branch attends to the learnt master node itself.

ONNX: every shape is fixed by the 64,600-sample input, so the graph exports with opset 17
(top-k and gather included); the heterogeneous attention map is assembled from four blocks
by concatenation instead of slice assignment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

VARIANTS = ("AASIST-L", "AASIST")
NUM_SAMPLES = 64_600
BONA_FIDE = 1
"""Index of the bona fide logit in the network's output (0 = spoof)."""
SAMPLE_RATE = 16_000


def _attention_vector(size: int) -> nn.Parameter:
    weight = nn.Parameter(torch.empty(size, 1))
    nn.init.xavier_normal_(weight)
    return weight


def _node_norm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """Batch-normalise node features [B, N, D] over every (batch, node) row."""
    shape = x.shape
    return bn(x.reshape(-1, shape[-1])).reshape(shape)


def _pairwise_products(x: Tensor) -> Tensor:
    """[B, N, D] -> [B, N, N, D], element (i, j) = x_i * x_j."""
    return x.unsqueeze(2) * x.unsqueeze(1)


class SincFilterbank(nn.Module):
    """Fixed band-pass sinc filters with mel-spaced edges (RawNet2's front end), no bias."""

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = SAMPLE_RATE,
                 nfft: int = 512) -> None:
        super().__init__()
        kernel_size += 1 - kernel_size % 2  # odd length: symmetric filters
        freqs = sample_rate // 2 * np.linspace(0, 1, nfft // 2 + 1)
        mel = 2595 * np.log10(1 + freqs / 700)
        edges_mel = np.linspace(mel.min(), mel.max(), out_channels + 1)
        edges = 700 * (10 ** (edges_mel / 2595) - 1)
        taps = np.arange(-(kernel_size - 1) / 2, (kernel_size - 1) / 2 + 1)
        window = torch.tensor(np.hamming(kernel_size), dtype=torch.float32)
        filters = torch.zeros(out_channels, kernel_size)
        for i, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            ideal = (2 * high / sample_rate * np.sinc(2 * high * taps / sample_rate)
                     - 2 * low / sample_rate * np.sinc(2 * low * taps / sample_rate))
            filters[i] = window * torch.tensor(ideal, dtype=torch.float32)
        self.register_buffer("filters", filters.unsqueeze(1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 1, S] -> [B, C, S - K + 1]."""
        return F.conv1d(x, self.filters)


class ResidualBlock(nn.Module):
    """Two (2, 3) convolutions with a skip (1x3 conv when channels change), time max-pool 3."""

    def __init__(self, channels: tuple[int, int], first: bool = False) -> None:
        super().__init__()
        c_in, c_out = channels
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)  # in the released weights; unused (see module doc)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.selu = nn.SELU()
        self.conv_downsample = (nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1))
                                if c_in != c_out else None)
        self.pool = nn.MaxPool2d((1, 3))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.selu(self.bn2(self.conv1(x))))
        skip = self.conv_downsample(x) if self.conv_downsample is not None else x
        return self.pool(out + skip)


class GraphAttention(nn.Module):
    """Graph attention over fully connected nodes [B, N, D_in] -> [B, N, D_out]."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)
        self.act = nn.SELU()
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_drop(x)
        scores = torch.tanh(self.att_proj(_pairwise_products(x))) @ self.att_weight
        att = F.softmax(scores.squeeze(-1) / self.temperature, dim=-1)  # row i: weights over j
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return self.act(_node_norm(self.bn, out))


class HeterogeneousGraphAttention(nn.Module):
    """Attention over two node types (temporal, spectral) and a master node."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _attention_vector(out_dim)
        self.att_weight22 = _attention_vector(out_dim)
        self.att_weight12 = _attention_vector(out_dim)
        self.att_weightM = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)
        self.act = nn.SELU()
        self.temperature = temperature

    def _node_scores(self, x: Tensor, n1: int) -> Tensor:
        """[B, N, N] attention logits: one vector within type 1, one within type 2, one across."""
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))
        within1 = (hidden[:, :n1, :n1] @ self.att_weight11).squeeze(-1)
        within2 = (hidden[:, n1:, n1:] @ self.att_weight22).squeeze(-1)
        across12 = (hidden[:, :n1, n1:] @ self.att_weight12).squeeze(-1)
        across21 = (hidden[:, n1:, :n1] @ self.att_weight12).squeeze(-1)
        return torch.cat([torch.cat([within1, across12], dim=2),
                          torch.cat([across21, within2], dim=2)], dim=1)

    def _update_master(self, x: Tensor, master: Tensor) -> Tensor:
        scores = torch.tanh(self.att_projM(x * master)) @ self.att_weightM  # [B, N, 1]
        att = F.softmax(scores / self.temperature, dim=-2)
        return self.proj_with_attM(att.transpose(1, 2) @ x) + self.proj_without_attM(master)

    def forward(self, x1: Tensor, x2: Tensor, master: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n1, n2 = x1.shape[1], x2.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        x = self.input_drop(x)
        att = F.softmax(self._node_scores(x, n1) / self.temperature, dim=-1)
        master = self._update_master(x, master)
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        out = self.act(_node_norm(self.bn, out))
        return out[:, :n1], out[:, n1:n1 + n2], master


class GraphPool(nn.Module):
    """Keep the top `ratio` of nodes by a learnt sigmoid score, scaled by that score."""

    def __init__(self, ratio: float, in_dim: int, dropout: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: Tensor) -> Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # [B, N, 1]
        keep = max(int(h.shape[1] * self.ratio), 1)
        _, idx = torch.topk(scores, keep, dim=1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[2]))


class AASIST(nn.Module):
    """The full network: waveform [B, 64600] -> logits [B, 2] (index 1 = bona fide)."""

    def __init__(self, filts: list[Any], gat_dims: list[int], pool_ratios: list[float],
                 temperatures: list[float], first_conv: int = 128,
                 nb_samp: int = NUM_SAMPLES, **_: Any) -> None:
        super().__init__()
        self.config = {"filts": filts, "gat_dims": gat_dims, "pool_ratios": pool_ratios,
                       "temperatures": temperatures, "first_conv": first_conv,
                       "nb_samp": nb_samp}
        self.conv_time = SincFilterbank(filts[0], first_conv)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU()
        self.drop = nn.Dropout(0.5)
        self.drop_way = nn.Dropout(0.2)
        blocks = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
        self.encoder = nn.Sequential(*[nn.Sequential(ResidualBlock(tuple(c), first=i == 0))
                                       for i, c in enumerate(blocks)])
        width = filts[-1][-1]
        self.pos_S = nn.Parameter(torch.randn(1, 23, width))
        self.master1 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.GAT_layer_S = GraphAttention(width, gat_dims[0], temperatures[0])
        self.GAT_layer_T = GraphAttention(width, gat_dims[0], temperatures[1])
        self.HtrgGAT_layer_ST11 = HeterogeneousGraphAttention(gat_dims[0], gat_dims[1],
                                                              temperatures[2])
        self.HtrgGAT_layer_ST12 = HeterogeneousGraphAttention(gat_dims[1], gat_dims[1],
                                                              temperatures[2])
        self.HtrgGAT_layer_ST21 = HeterogeneousGraphAttention(gat_dims[0], gat_dims[1],
                                                              temperatures[2])
        self.HtrgGAT_layer_ST22 = HeterogeneousGraphAttention(gat_dims[1], gat_dims[1],
                                                              temperatures[2])
        self.pool_S = GraphPool(pool_ratios[0], gat_dims[0], 0.3)
        self.pool_T = GraphPool(pool_ratios[1], gat_dims[0], 0.3)
        self.pool_hS1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hS2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.out_layer = nn.Linear(5 * gat_dims[1], 2)

    def front_end(self, waveform: Tensor, blocks: int = 6) -> Tensor:
        """Sinc filterbank and the first `blocks` residual blocks: [B, S] -> [B, C, F, T]."""
        x = self.conv_time(waveform.unsqueeze(1)).unsqueeze(1)
        x = self.selu(self.first_bn(F.max_pool2d(torch.abs(x), (3, 3))))
        for block in self.encoder[:blocks]:
            x = block(x)
        return x

    def _branch(self, out_t: Tensor, out_s: Tensor, master: Tensor, first: nn.Module,
                second: nn.Module, pool_s: nn.Module, pool_t: nn.Module
                ) -> tuple[Tensor, Tensor, Tensor]:
        t1, s1, m1 = first(out_t, out_s, master)
        s1, t1 = pool_s(s1), pool_t(t1)
        t_aug, s_aug, m_aug = second(t1, s1, m1)
        return t1 + t_aug, s1 + s_aug, m1 + m_aug

    def back_end(self, e: Tensor, blocks_done: int = 6) -> tuple[Tensor, Tensor]:
        """The remaining residual blocks and the graph module: -> (embedding, logits)."""
        for block in self.encoder[blocks_done:]:
            e = block(e)
        e_s = torch.abs(e).amax(dim=3).transpose(1, 2) + self.pos_S   # spectral nodes
        out_s = self.pool_S(self.GAT_layer_S(e_s))
        e_t = torch.abs(e).amax(dim=2).transpose(1, 2)                 # temporal nodes
        out_t = self.pool_T(self.GAT_layer_T(e_t))
        batch = e.shape[0]
        master1 = self.master1.expand(batch, -1, -1)
        master2 = self.master2.expand(batch, -1, -1)
        t1, s1, m1 = self._branch(out_t, out_s, master1, self.HtrgGAT_layer_ST11,
                                  self.HtrgGAT_layer_ST12, self.pool_hS1, self.pool_hT1)
        t2, s2, m2 = self._branch(out_t, out_s, master2, self.HtrgGAT_layer_ST21,
                                  self.HtrgGAT_layer_ST22, self.pool_hS2, self.pool_hT2)
        t = torch.maximum(self.drop_way(t1), self.drop_way(t2))
        s = torch.maximum(self.drop_way(s1), self.drop_way(s2))
        m = torch.maximum(self.drop_way(m1), self.drop_way(m2))
        hidden = torch.cat([torch.abs(t).amax(dim=1), t.mean(dim=1),
                            torch.abs(s).amax(dim=1), s.mean(dim=1), m.squeeze(1)], dim=1)
        return hidden, self.out_layer(self.drop(hidden))

    def forward(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        return self.back_end(self.front_end(waveform))


class FrontEnd(nn.Module):
    """The first `blocks` stages alone, for exporting (e.g. to cache frozen features)."""

    def __init__(self, model: AASIST, blocks: int) -> None:
        super().__init__()
        self.model = model
        self.blocks = blocks

    def forward(self, waveform: Tensor) -> Tensor:
        return self.model.front_end(waveform, self.blocks)


class FakeLogit(nn.Module):
    """The served head: waveform [B, 64600] -> logit [B, 1] = log-odds of FAKE
    (spoof logit minus bona fide logit, so sigmoid(logit) = P(fake))."""

    def __init__(self, model: AASIST) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: Tensor) -> Tensor:
        _, logits = self.model(waveform)
        return (logits[:, 1 - BONA_FIDE] - logits[:, BONA_FIDE]).unsqueeze(1)


def read_config(variant: str, weights_dir: Path) -> dict[str, Any]:
    """`model_config` of the variant's .conf (JSON)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown AASIST variant {variant!r}; one of {VARIANTS}")
    return json.loads((Path(weights_dir) / f"{variant}.conf").read_text())["model_config"]


def build(variant: str, weights_dir: Path) -> AASIST:
    """An untrained network with the variant's hyper-parameters."""
    return AASIST(**read_config(variant, weights_dir))


def load_pretrained(variant: str = "AASIST-L", weights_dir: Path | str = "") -> AASIST:
    """The released network (strict state-dict load), in eval mode."""
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    model = build(variant, weights_dir)
    state = torch.load(weights_dir / f"{variant}.pth", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def default_weights_dir() -> Path:
    """../shared/weights/aasist beside the repository (found from DFMESH_SHARED_DATA too)."""
    from training.runtime import shared_data_dir

    return shared_data_dir().parent / "weights" / "aasist"
