"""Patch geometry for the tiny_gate branch (Tiny-LaDeDa), numpy + OpenCV, no torch.

Tiny-LaDeDa scores small patches and its features are about local, high-frequency traces
(blending seams, resampling grids, re-compression), so patches are cut at the face crop's
native resolution, never from a downscaled copy:

    face crop 256x256 (resized to 256 if it is another size)
    -> non-overlapping 32x32 patches, stride 32, row-major from the top-left
    -> 8 x 8 = 64 patches, [64, 3, 32, 32] float32, ImageNet mean/std

The model itself is fully convolutional with global pooling, so whole frames (any HxW) can
be scored too; `image_patches` cuts any image on the same grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfmesh.errors import InvalidInput
from dfmesh.preprocess.tensors import check_crop, normalize_imagenet, resize_rgb

TINY_CROP_SIZE = 256
TINY_PATCH_SIZE = 32
TINY_PATCH_STRIDE = 32


def patch_grid(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left (y, x) corners of every whole patch on the grid, row-major."""
    if patch <= 0 or stride <= 0:
        raise ValueError("patch and stride must be positive")
    ys = range(0, height - patch + 1, stride)
    xs = range(0, width - patch + 1, stride)
    return [(y, x) for y in ys for x in xs]


def image_patches(image: np.ndarray, patch: int = TINY_PATCH_SIZE,
                  stride: int = TINY_PATCH_STRIDE) -> np.ndarray:
    """Cut a uint8 HxWx3 RGB image into patches -> [P, 3, patch, patch] float32, normalized.

    Raises InvalidInput if the image is smaller than one patch.
    """
    check_crop(image)
    corners = patch_grid(image.shape[0], image.shape[1], patch, stride)
    if not corners:
        raise InvalidInput(f"image {image.shape[1]}x{image.shape[0]} is smaller than one "
                           f"{patch}x{patch} patch")
    stacked = np.stack([image[y : y + patch, x : x + patch] for y, x in corners])
    return normalize_imagenet(stacked)


def tiny_patches(crop: np.ndarray, size: int = TINY_CROP_SIZE, patch: int = TINY_PATCH_SIZE,
                 stride: int = TINY_PATCH_STRIDE) -> np.ndarray:
    """One face crop -> tiny_gate's input [64, 3, 32, 32] float32 (with the defaults)."""
    resized = resize_rgb(check_crop(crop), size, size)
    return image_patches(resized, patch, stride)


def tiny_patches_batch(crops: Sequence[np.ndarray], **kwargs: int) -> tuple[np.ndarray, list[int]]:
    """Several crops -> (all patches concatenated [sum P, 3, ph, pw], patches per crop)."""
    if len(crops) == 0:
        raise InvalidInput("no face crops to cut into patches")
    per_crop = [tiny_patches(c, **kwargs) for c in crops]
    return np.concatenate(per_crop), [len(p) for p in per_crop]
