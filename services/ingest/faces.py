"""Faces with facenet-pytorch's MTCNN on downscaled frames; crops cut from full-size frames.

MTCNN runs on a copy of the frame shrunk to `max_side` (its cost grows with pixel count and
faces in uploads are large); boxes and landmarks are scaled back to source pixels, and the
256 face crop and 96 mouth crop are cut from the full-resolution frame with the shared
geometry in dfmesh.preprocess.geometry. In the dense lip-sync window MTCNN runs on every
`every`-th frame only and the boxes in between are interpolated linearly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dfmesh.preprocess.geometry import Box, face_crop, mouth_crop
from services.ingest.decode import DecodedFrame, downscale_to


@dataclass(frozen=True)
class Detection:
    """One face in source-frame pixels: box, detector score, 5 landmarks (5x2)."""

    box: Box
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.box.width) * max(0.0, self.box.height)


@dataclass(frozen=True)
class FaceCrops:
    """A detection with its 256x256 face crop and 96x96 mouth crop (RGB uint8)."""

    detection: Detection
    crop: np.ndarray
    mouth: np.ndarray


class FaceDetector:
    """MTCNN (keep_all, CPU, weights shipped inside facenet-pytorch) behind a small API."""

    def __init__(self, max_side: int = 640, min_face_size: int = 40,
                 min_score: float = 0.9, max_faces: int = 5) -> None:
        from facenet_pytorch import MTCNN

        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.max_faces = max_faces
        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device="cpu")
        self._mtcnn.eval()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB frame, largest first, at most `max_faces`."""
        small, scale = downscale_to(rgb, self.max_side)
        if min(small.shape[:2]) < self.min_face_size:
            # No face of the minimum size fits (and MTCNN fails on an empty scale pyramid).
            return []
        boxes, probs, points = self._mtcnn.detect(np.ascontiguousarray(small), landmarks=True)
        if boxes is None:
            return []
        found = []
        for box, prob, pts in zip(np.asarray(boxes, dtype=np.float64),
                                  np.asarray(probs, dtype=np.float64),
                                  np.asarray(points, dtype=np.float64), strict=True):
            if prob < self.min_score:
                continue
            x1, y1, x2, y2 = (box / scale).tolist()
            found.append(Detection(Box(x1, y1, x2, y2), float(prob),
                                   (pts / scale).astype(np.float32)))
        return sorted(found, key=lambda d: d.area, reverse=True)[: self.max_faces]

    def warm_up(self) -> None:
        """One detection on a blank frame so the first request does not pay for set-up."""
        self.detect(np.zeros((self.max_side // 2, self.max_side // 2, 3), dtype=np.uint8))


def crop_face(rgb: np.ndarray, detection: Detection) -> FaceCrops:
    """The face crop and mouth crop for one detection."""
    return FaceCrops(detection, face_crop(rgb, detection.box),
                     mouth_crop(rgb, detection.landmarks, detection.box))


def interpolate(a: Detection, b: Detection, weight: float) -> Detection:
    """The detection `weight` of the way from `a` to `b` (0 = a, 1 = b)."""
    lerp = lambda p, q: p + (q - p) * weight  # noqa: E731
    box = Box(lerp(a.box.x1, b.box.x1), lerp(a.box.y1, b.box.y1),
              lerp(a.box.x2, b.box.x2), lerp(a.box.y2, b.box.y2))
    return Detection(box, min(a.score, b.score), lerp(a.landmarks, b.landmarks))


@dataclass(frozen=True)
class DenseCrop:
    """The mouth crop of one dense-window frame, None when no face was found near it."""

    frame: DecodedFrame
    mouth: np.ndarray | None
    detected: bool  # True where MTCNN ran on this very frame


class DenseTracker:
    """Mouth crops for consecutive dense frames with MTCNN on every `every`-th frame.

    Frames between two detections wait in a buffer (at most `every - 1` frames) until the
    next detection, then get boxes interpolated between the two; where only one side has a
    face, its box is reused. Feed frames in order with `add`, then call `finish`.
    """

    def __init__(self, detector: FaceDetector, every: int) -> None:
        self.detector = detector
        self.every = max(1, every)
        self._buffer: list[DecodedFrame] = []
        self._last: Detection | None = None
        self._count = 0

    def _largest(self, frame: DecodedFrame) -> Detection | None:
        faces = self.detector.detect(frame.rgb)
        return faces[0] if faces else None

    def _flush(self, until: Detection | None) -> Iterator[DenseCrop]:
        n = len(self._buffer)
        for i, frame in enumerate(self._buffer):
            if self._last is not None and until is not None:
                det: Detection | None = interpolate(self._last, until, (i + 1) / (n + 1))
            else:
                det = self._last or until
            mouth = None if det is None else mouth_crop(frame.rgb, det.landmarks, det.box)
            yield DenseCrop(frame, mouth, detected=False)
        self._buffer.clear()

    def _keyframe(self, frame: DecodedFrame) -> list[DenseCrop]:
        det = self._largest(frame)
        out = list(self._flush(det))
        mouth = None if det is None else mouth_crop(frame.rgb, det.landmarks, det.box)
        out.append(DenseCrop(frame, mouth, detected=True))
        self._last = det
        return out

    def add(self, frame: DecodedFrame) -> list[DenseCrop]:
        """Crops that are complete after this frame (in order; possibly none yet)."""
        index, self._count = self._count, self._count + 1
        if index % self.every == 0:
            return self._keyframe(frame)
        self._buffer.append(frame)
        return []

    def finish(self) -> list[DenseCrop]:
        """The remaining crops; the last buffered frame is detected on as a keyframe."""
        if not self._buffer:
            return []
        last = self._buffer.pop()
        return self._keyframe(last)
