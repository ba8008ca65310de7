"""Blend masks from MTCNN's five landmarks, with the random deformation SBI-style methods use.

Five points (eyes, nose, mouth corners) do not outline a face, so the hull is extended along
the face's own axes: brows above the eyes, temples beside them, cheeks and chin below the
mouth. The hull is then jittered, scaled, elastically warped, eroded or dilated and blurred,
so the blending boundary a detector has to find is never the same shape twice.
"""

from __future__ import annotations

import cv2
import numpy as np


def face_hull_points(landmarks: np.ndarray) -> np.ndarray:
    """Ten points outlining the inner face, from [5, 2] landmarks (crop pixel coordinates)."""
    left_eye, right_eye, nose, mouth_l, mouth_r = landmarks.astype(np.float32)
    eye_c, mouth_c = (left_eye + right_eye) / 2, (mouth_l + mouth_r) / 2
    up = eye_c - mouth_c
    across = right_eye - left_eye
    d = float(np.linalg.norm(across)) or 1.0
    h = across / d
    return np.stack([
        left_eye + 0.55 * up - 0.15 * d * h, right_eye + 0.55 * up + 0.15 * d * h,   # brows
        left_eye - 0.45 * d * h, right_eye + 0.45 * d * h,                          # temples
        mouth_l - 0.45 * d * h + 0.1 * up, mouth_r + 0.45 * d * h + 0.1 * up,       # cheeks
        mouth_l - 0.55 * up - 0.1 * d * h, mouth_r - 0.55 * up + 0.1 * d * h,       # jaw
        mouth_c - 0.75 * up, nose,                                                   # chin, nose
    ])


def hull_mask(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Filled convex hull of `points` as a float32 [H, W] mask in {0, 1}."""
    mask = np.zeros(size, np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(np.float32)


def elastic_warp(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Warp a mask by a smooth random displacement field of about `strength` pixels."""
    h, w = mask.shape
    coarse = rng.normal(0, strength, (2, 6, 6)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT)


def random_blend_mask(landmarks: np.ndarray, size: tuple[int, int],
                      rng: np.random.Generator) -> np.ndarray:
    """A deformed, blurred face mask in [0, 1], float32 [H, W]."""
    points = face_hull_points(landmarks)
    d = float(np.linalg.norm(landmarks[1] - landmarks[0])) or 1.0
    centre = points.mean(axis=0)
    points = centre + (points - centre) * rng.uniform(0.85, 1.15)
    points = points + rng.normal(0, 0.06 * d, points.shape)
    mask = hull_mask(points, size)
    if rng.random() < 0.7:
        mask = elastic_warp(mask, rng, strength=0.08 * d)
    k = int(rng.integers(1, 4)) * 2 + 1
    kernel = np.ones((k, k), np.uint8)
    mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    blur = int(rng.integers(2, 12)) * 2 + 1
    mask = cv2.GaussianBlur(mask, (blur, blur), 0)
    peak = mask.max()
    return (mask / peak if peak > 0 else mask).astype(np.float32)
