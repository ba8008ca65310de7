"""Label-preserving augmentation applied to real and fake crops alike, and MRI target maps.

Compression, blur and rescaling happen to every uploaded clip, real or not; applying them to
both classes keeps a detector from learning "compressed = fake".
"""

from __future__ import annotations

import cv2
import numpy as np

from training.fakes.image import jpeg


def degrade(image: np.ndarray, rng: np.random.Generator, p: float = 0.6) -> np.ndarray:
    """With probability `p`, one or two of: JPEG (q 40-95), slight blur, down-up rescale, noise."""
    out = image
    if rng.random() >= p:
        return out
    for kind in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
        if kind == 0:
            out = jpeg(out, int(rng.integers(40, 96)))
        elif kind == 1:
            out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.0))
        elif kind == 2:
            h, w = out.shape[:2]
            f = rng.uniform(0.5, 0.9)
            small = cv2.resize(out, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        else:
            noise = rng.normal(0, rng.uniform(1, 4), out.shape)
            out = np.clip(out + noise, 0, 255).astype(np.uint8)
    return out


def flip_face(crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a crop and its landmarks (left and right eye and mouth corner swap roles)."""
    w = crop.shape[1]
    flipped = landmarks.copy()
    flipped[:, 0] = w - 1 - flipped[:, 0]
    return np.ascontiguousarray(crop[:, ::-1]), flipped[[1, 0, 2, 4, 3]]


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM of two uint8 RGB images on luma (Gaussian window), float32 [H, W]."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def g(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), sigma)

    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx * mx, g(y * y) - my * my, g(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return (num / den).astype(np.float32)


def mri_target(fake: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The MRI-GAN target: 1 - SSIM(fake, real source) clipped to [0, 1] (0 where identical)."""
    return np.clip(1.0 - ssim_map(fake, real), 0.0, 1.0)
