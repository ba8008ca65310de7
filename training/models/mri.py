"""MRI-GAN (after Pratikkumar Prajapati & Chris Pollett, arXiv 2203.00108), compact.

The generator is a small U-Net mapping a face crop to a one-channel "MRI" map in [0, 1]:
near black for a real face, bright where the face was synthesized or blended. It learns
against target maps 1 - SSIM(pseudo-fake, its real source) (zeros for real faces), with a
PatchGAN discriminator and L1 + SSIM losses. A small CNN classifies the map. Serving runs
generator and classifier as one graph: image -> (mri_map, logit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class UNetGenerator(nn.Module):
    """[N, 3, H, W] (H, W multiples of 16) -> [N, 1, H, W] in [0, 1]."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.bottom = _block(widths[-1], widths[-1])
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(_block(cin + w, w))
            cin = w
        self.out = nn.Conv2d(widths[0], 1, 1)
        # start near black (sigmoid(-4) = 0.018): most of every target map is zero, and a
        # generator starting at 0.5 grey spends its first hundreds of steps only darkening
        nn.init.constant_(self.out.bias, -4.0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return torch.sigmoid(self.out(x))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (image, map) -> a grid of real/fake logits (training only)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 3, 1, 1),
        )

    def forward(self, image: torch.Tensor, mri_map: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mri_map * 2 - 1], dim=1))


class MapClassifier(nn.Module):
    """[N, 1, H, W] MRI map -> [N, 1] logit; pooled to 64x64 first, then three strided convs,
    global mean and max pooling."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.ReLU(),
        )
        self.head = nn.Linear(4 * width + 2, 1)

    def forward(self, mri_map: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(mri_map, 64)
        x = self.net(pooled)
        stats = torch.cat([mri_map.mean(dim=(2, 3)), mri_map.amax(dim=(2, 3))], dim=1)
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), stats], dim=1))


class MRIDetector(nn.Module):
    """Generator + classifier, the served graph: image -> (mri_map, logit)."""

    def __init__(self, generator: UNetGenerator | None = None,
                 classifier: MapClassifier | None = None) -> None:
        super().__init__()
        self.generator = generator or UNetGenerator()
        self.classifier = classifier or MapClassifier()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mri_map = self.generator(image)
        return mri_map, self.classifier(mri_map)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 7) -> torch.Tensor:
    """1 - mean SSIM between two [N, 1, H, W] maps in [0, 1] (box window)."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2

    def avg(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, window, 1, pad, count_include_pad=False)

    mp, mt = avg(pred), avg(target)
    vp, vt = avg(pred * pred) - mp * mp, avg(target * target) - mt * mt
    cov = avg(pred * target) - mp * mt
    ssim = ((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))
    return 1 - ssim.mean()
