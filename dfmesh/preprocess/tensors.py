"""Model input tensors made from face crops and embeddings (numpy + OpenCV, no torch).

Every image model is trained and served on tensors made here, so the contract is one set of
functions. Inputs are uint8 RGB crops, HxWx3, normally the 256x256 face crop ingest cuts
with `dfmesh.preprocess.geometry.face_crop`; other sizes are resized.

| model     | function          | tensor                         | values                    |
|-----------|-------------------|--------------------------------|---------------------------|
| visual    | `visual_input`    | [N, 3, 224, 224] float32       | ImageNet mean/std         |
| visual 2.2+| `visual_full_input` | [N, 3, 256, 256] float32     | ImageNet mean/std         |
| mri       | `mri_input`       | [N, 3, 256, 256] float32       | ImageNet mean/std         |
| tiny_gate | `tiny_patches`    | [P, 3, 32, 32] float32 (patches.py) | ImageNet mean/std    |
| temporal  | `temporal_input`  | [1, T, D] float32              | visual's embeddings as is |
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dfmesh.errors import InvalidInput

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
VISUAL_SIZE = 224
FULL_SIZE = 256
MRI_SIZE = 256


def check_crop(crop: np.ndarray) -> np.ndarray:
    """Return `crop` if it is a uint8 HxWx3 RGB image; raise InvalidInput otherwise."""
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8:
        raise InvalidInput(f"a face crop must be a uint8 numpy array, got "
                           f"{type(crop).__name__} {getattr(crop, 'dtype', '')}")
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] < 2 or crop.shape[1] < 2:
        raise InvalidInput(f"a face crop must be HxWx3 RGB, got shape {crop.shape}")
    return crop


def resize_rgb(crop: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGB crop: area interpolation when shrinking, bilinear when growing."""
    if crop.shape[1] == width and crop.shape[0] == height:
        return crop
    shrinking = crop.shape[1] > width or crop.shape[0] > height
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interp)


def normalize_imagenet(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] RGB -> float32 [..., 3, H, W] with ImageNet mean and std."""
    scaled = images.astype(np.float32) / 255.0
    normalized = (scaled - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(np.moveaxis(normalized, -1, -3))


def denormalize_imagenet(tensor: np.ndarray) -> np.ndarray:
    """Inverse of `normalize_imagenet`: float32 [..., 3, H, W] -> uint8 [..., H, W, 3]."""
    hwc = np.moveaxis(tensor, -3, -1) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.rint(hwc * 255.0), 0, 255).astype(np.uint8)


def _square_batch(crops: Sequence[np.ndarray], size: int) -> np.ndarray:
    if len(crops) == 0:
        raise InvalidInput("no face crops to score")
    resized = [resize_rgb(check_crop(c), size, size) for c in crops]
    return normalize_imagenet(np.stack(resized))


def visual_input(crops: Sequence[np.ndarray], size: int = VISUAL_SIZE) -> np.ndarray:
    """Face crops -> visual's input [N, 3, 224, 224] float32, ImageNet-normalized.

    The 256 face crop is resized (area interpolation) to 224, not centre-cropped, so the
    face keeps the margin the crop geometry gave it.
    """
    return _square_batch(crops, size)


def visual_full_input(crops: Sequence[np.ndarray], size: int = FULL_SIZE) -> np.ndarray:
    """Face crops at ingest's full 256 -> [N, 3, 256, 256] ImageNet-normalized: the second
    input of a stacked visual model (its MesoNet member reads the crop unresized)."""
    return _square_batch(crops, size)


def mri_input(crops: Sequence[np.ndarray], size: int = MRI_SIZE) -> np.ndarray:
    """Face crops -> the MRI-GAN's input [N, 3, 256, 256] float32, ImageNet-normalized."""
    return _square_batch(crops, size)


def temporal_input(embeddings: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Per-frame embeddings [T, D] (visual's "embedding" output, in frame order) -> [1, T, D]."""
    arr = np.asarray(embeddings, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInput(f"embeddings must be a non-empty [T, D] array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInput("embeddings contain NaN or infinity")
    return np.ascontiguousarray(arr[None])
