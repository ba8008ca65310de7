"""MesoInception4 (Afchar et al., "MesoNet", WIFS 2018; Apache-2.0), rebuilt in PyTorch and
loaded from the authors' Keras 2 weights in ../shared/weights/mesonet. It is never trained
here: the released network trained on the authors' Deepfakes faces is a member of the visual
model (training.models.visual.StackedVisual), so what it knows comes from data this project
never sees, and its scores of ../shared/train are held out by construction.

Input: 256x256 RGB in [0, 1]; the Keras output is sigmoid = P(real). `MesoInception4`
returns the log-odds of FAKE (the negated Keras logit), one per crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dfmesh.runtime.model_repo import sha256_file
from training.models.visual import IMAGENET_MEAN, IMAGENET_STD

MESO_SIZE = 256
MESO_VARIANTS = ("MesoInception_DF", "MesoInception_F2F")
KERAS_BN_EPS = 1e-3


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    """Keras Conv2D(padding='same', stride 1)."""
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)


class InceptionLayer(nn.Module):
    """The paper's inception block: 1x1; 1x1 then 3x3; 1x1 then 3x3 dilated 2 and 3."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        # Keras creation order, which is the order of the weight file's conv2d_<n> layers
        self.convs = nn.ModuleList([_conv(cin, a, 1), _conv(cin, b, 1), _conv(b, b, 3),
                                    _conv(cin, c, 1), _conv(c, c, 3, 2), _conv(cin, d, 1),
                                    _conv(d, d, 3, 3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convs
        return torch.cat([F.relu(c[0](x)), F.relu(c[2](F.relu(c[1](x)))),
                          F.relu(c[4](F.relu(c[3](x)))), F.relu(c[6](F.relu(c[5](x))))], dim=1)


class MesoInception4(nn.Module):
    """[N, 3, 256, 256] RGB in [0, 1] -> [N] log-odds of fake."""

    def __init__(self) -> None:
        super().__init__()
        self.inc1, self.bn1 = InceptionLayer(3, 1, 4, 4, 2), nn.BatchNorm2d(11, eps=KERAS_BN_EPS)
        self.inc2, self.bn2 = InceptionLayer(11, 2, 4, 4, 2), nn.BatchNorm2d(12, eps=KERAS_BN_EPS)
        self.conv3, self.bn3 = _conv(12, 16, 5), nn.BatchNorm2d(16, eps=KERAS_BN_EPS)
        self.conv4, self.bn4 = _conv(16, 16, 5), nn.BatchNorm2d(16, eps=KERAS_BN_EPS)
        self.dense1, self.dense2 = nn.Linear(16 * 8 * 8, 16), nn.Linear(16, 1)

    def convs(self) -> list[nn.Conv2d]:
        return [*self.inc1.convs, *self.inc2.convs, self.conv3, self.conv4]

    def norms(self) -> list[nn.BatchNorm2d]:
        return [self.bn1, self.bn2, self.bn3, self.bn4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bn1(self.inc1(x)), 2, ceil_mode=True)
        x = F.max_pool2d(self.bn2(self.inc2(x)), 2, ceil_mode=True)
        x = F.max_pool2d(self.bn3(F.relu(self.conv3(x))), 2, ceil_mode=True)
        x = F.max_pool2d(self.bn4(F.relu(self.conv4(x))), 4, ceil_mode=True)
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last
        p_real_logit = self.dense2(F.leaky_relu(self.dense1(x), 0.1))[:, 0]
        return -p_real_logit


class NormalizedInput(nn.Module):
    """A [0, 1]-input network fed the ImageNet-normalized crops every image model of this
    project takes (dfmesh.preprocess.tensors): the inverse map is folded into the graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.std + self.mean)


def _layer_number(name: str) -> int:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def load_keras(path: Path) -> MesoInception4:
    """The network with the weights of a Keras 2 MesoInception4 .h5 file, in eval mode."""
    import h5py

    model = MesoInception4()
    with h5py.File(path, "r") as h5:
        root = h5.get("model_weights", h5)

        def layers(prefix: str) -> list[str]:
            return sorted((k for k in root if k.startswith(prefix)), key=_layer_number)

        def weight(layer: str, name: str) -> torch.Tensor:
            return torch.from_numpy(np.asarray(root[layer][layer][f"{name}:0"], np.float32))

        convs, norms, denses = layers("conv2d"), layers("batch_normalization"), layers("dense")
        if (len(convs), len(norms), len(denses)) != (16, 4, 2):
            raise ValueError(f"{path}: not a MesoInception4 weight file ({len(convs)} conv, "
                             f"{len(norms)} batch-norm, {len(denses)} dense layers)")
        with torch.no_grad():
            for conv, name in zip(model.convs(), convs, strict=True):
                conv.weight.copy_(weight(name, "kernel").permute(3, 2, 0, 1))
                conv.bias.copy_(weight(name, "bias"))
            for norm, name in zip(model.norms(), norms, strict=True):
                norm.weight.copy_(weight(name, "gamma"))
                norm.bias.copy_(weight(name, "beta"))
                norm.running_mean.copy_(weight(name, "moving_mean"))
                norm.running_var.copy_(weight(name, "moving_variance"))
            for dense, name in zip((model.dense1, model.dense2), denses, strict=True):
                dense.weight.copy_(weight(name, "kernel").T)
                dense.bias.copy_(weight(name, "bias"))
    return model.eval()


def default_weights_dir() -> Path:
    """../shared/weights/mesonet beside the repository (found from DFMESH_SHARED_DATA too)."""
    from training.runtime import shared_data_dir

    return shared_data_dir().parent / "weights" / "mesonet"


def weights_file(variant: str, weights_dir: Path | None = None) -> Path:
    """The variant's .h5, checked against ../shared/weights/SHA256SUMS."""
    if variant not in MESO_VARIANTS:
        raise ValueError(f"unknown MesoNet variant {variant!r}; one of {MESO_VARIANTS}")
    weights_dir = weights_dir or default_weights_dir()
    path = weights_dir / f"{variant}.h5"
    sums = weights_dir.parent / "SHA256SUMS"
    if sums.is_file():
        wanted = {line.split()[-1].lstrip("*").removeprefix("./"): line.split()[0]
                  for line in sums.read_text().splitlines() if line.strip()}
        got = sha256_file(path)
        if wanted.get(f"mesonet/{path.name}") != got:
            raise ValueError(f"{path}: sha256 {got[:12]} is not the one SHA256SUMS lists")
    return path


def load_pretrained(variant: str = "MesoInception_DF",
                    weights_dir: Path | None = None) -> MesoInception4:
    return load_keras(weights_file(variant, weights_dir))
