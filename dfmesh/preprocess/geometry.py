"""Face crop, mouth crop and centre-crop geometry (numpy + OpenCV, no torch).

Ingest cuts the crops; training cuts its crops from raw media with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_CROP_SIZE = 256
"""Side of the square face crop ingest sends (mri uses it as is, visual resizes to 224)."""
FACE_MARGIN = 0.25
"""Margin added on every side of the detector box, as a fraction of the box's longer side."""
MOUTH_CROP_SIZE = 96
"""Side of the square mouth-region crop used by the sync branch."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates (x2, y2 exclusive)."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0


def square_box_with_margin(box: Box, margin: float = FACE_MARGIN) -> Box:
    """The square box centred on `box` whose side is the longer side times (1 + 2*margin)."""
    cx, cy = box.centre
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    return Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def crop_square(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut `box` out of an HxWxC image, padding with edge pixels where it leaves the frame,
    and resize it to size x size (area interpolation when shrinking)."""
    h, w = image.shape[:2]
    x1, y1 = int(round(box.x1)), int(round(box.y1))
    x2, y2 = max(x1 + 1, int(round(box.x2))), max(y1 + 1, int(round(box.y2)))
    pad_l, pad_t = max(0, -x1), max(0, -y1)
    pad_r, pad_b = max(0, x2 - w), max(0, y2 - h)
    region = image[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]
    if region.size == 0:
        region = np.zeros((1, 1) + image.shape[2:], dtype=image.dtype)
    if pad_l or pad_t or pad_r or pad_b:
        region = cv2.copyMakeBorder(region, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def face_crop(image: np.ndarray, box: Box, size: int = FACE_CROP_SIZE) -> np.ndarray:
    """The square face crop with margin that every face branch is trained and served on."""
    return crop_square(image, square_box_with_margin(box), size)


def centre_crop_box(width: int, height: int, fraction: float = 0.6) -> Box:
    """The square centre box used where no face is found (side = fraction of the short side)."""
    side = min(width, height) * fraction
    cx, cy = width / 2.0, height / 2.0
    return Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def mouth_box(landmarks: np.ndarray, face_box: Box) -> Box:
    """Square mouth-region box from MTCNN's five landmarks (rows: left eye, right eye,
    nose, mouth left, mouth right). Centred between the mouth corners, slightly below;
    side = 0.5 of the face box's width, never smaller than 1.6x the mouth width."""
    mouth_left, mouth_right = landmarks[3], landmarks[4]
    cx = float(mouth_left[0] + mouth_right[0]) / 2.0
    cy = float(mouth_left[1] + mouth_right[1]) / 2.0
    mouth_width = float(np.hypot(*(mouth_right - mouth_left)))
    side = max(0.5 * face_box.width, 1.6 * mouth_width, 8.0)
    cy += 0.1 * side
    return Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def mouth_crop(image: np.ndarray, landmarks: np.ndarray, face_box: Box,
               size: int = MOUTH_CROP_SIZE) -> np.ndarray:
    """The mouth-region crop the sync branch is trained and served on."""
    return crop_square(image, mouth_box(landmarks, face_box), size)
