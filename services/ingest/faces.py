"""Faces with facenet-pytorch's MTCNN on downscaled frames; crops cut from full-size frames.

MTCNN runs on a copy of the frame shrunk to `max_side` (its cost grows with pixel count and
faces in uploads are large); boxes and landmarks are scaled back to source pixels, and the
256 face crop and 96 mouth crop are cut from the full-resolution frame with the shared
geometry in dfmesh.preprocess.geometry. In the dense lip-sync window MTCNN runs on every
`every`-th frame only, on a small region around the previous face (the whole frame only
where the face is not found there), and the boxes in between are interpolated linearly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from dfmesh.preprocess.geometry import Box, face_crop, mouth_crop
from services.ingest.decode import DecodedFrame, downscale_to
from services.ingest.mtcnn_onnx import OnnxMtcnn, RawFaces

ROI_MARGIN = 0.5
"""detect_near searches the previous box grown by this fraction of its side on every side."""
ROI_FACE_SIDE = 80.0
"""...at a scale where the previous box is this many pixels (twice MTCNN's 40 px minimum, so
the face may shrink by half between keyframes and still be found)."""


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


def _torch_mtcnn(min_face_size: int) -> Callable[[np.ndarray], RawFaces]:
    """facenet-pytorch's own torch path (the reference the ONNX path is checked against)."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device="cpu")
    mtcnn.eval()

    def detect(rgb: np.ndarray) -> RawFaces:
        boxes, probs, points = mtcnn.detect(rgb, landmarks=True)
        if boxes is None:
            return RawFaces.empty()
        return RawFaces(np.asarray(boxes, np.float32), np.asarray(probs, np.float32),
                        np.asarray(points, np.float32))

    return detect


class FaceDetector:
    """MTCNN (keep_all, CPU, weights shipped inside facenet-pytorch) behind a small API.

    `backend` "onnx" (default) runs the same nets on ONNX Runtime (services.ingest.mtcnn_onnx,
    about 2.5x less CPU per frame, boxes within a few pixels); "torch" is facenet-pytorch's
    own code path.
    """

    def __init__(self, max_side: int = 640, min_face_size: int = 40,
                 min_score: float = 0.9, max_faces: int = 5, backend: str = "onnx",
                 threads: int = 1) -> None:
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.max_faces = max_faces
        self.backend = backend
        self._detect_raw: Callable[[np.ndarray], RawFaces]
        if backend == "onnx":
            self._detect_raw = OnnxMtcnn(min_face_size, threads).detect_faces
        elif backend == "torch":
            self._detect_raw = _torch_mtcnn(min_face_size)
        else:
            raise ValueError(f"unknown MTCNN backend {backend!r} (onnx or torch)")

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB frame, largest first, at most `max_faces`."""
        small, scale = downscale_to(rgb, self.max_side)
        if min(small.shape[:2]) < self.min_face_size:
            # No face of the minimum size fits (and MTCNN fails on an empty scale pyramid).
            return []
        raw = self._detect_raw(np.ascontiguousarray(small))
        boxes, probs, points = raw.boxes, raw.scores, raw.landmarks
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

    def detect_near(self, rgb: np.ndarray, previous: Detection) -> Detection | None:
        """The largest face in a region around `previous` (the box grown by ROI_MARGIN of
        its side on every side), searched at a scale where the old box is ROI_FACE_SIDE
        pixels: a few milliseconds instead of a whole-frame pyramid. None if none there."""
        side = max(previous.box.width, previous.box.height)
        if side <= 0:
            return None
        h, w = rgb.shape[:2]
        pad = side * ROI_MARGIN
        x0, y0 = max(0, int(previous.box.x1 - pad)), max(0, int(previous.box.y1 - pad))
        x1, y1 = min(w, int(previous.box.x2 + pad + 1)), min(h, int(previous.box.y2 + pad + 1))
        if x1 - x0 < self.min_face_size or y1 - y0 < self.min_face_size:
            return None
        scale = min(1.0, ROI_FACE_SIDE / side)
        region = rgb[y0:y1, x0:x1]
        if scale < 1.0:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        raw = self._detect_raw(np.ascontiguousarray(region))
        best: Detection | None = None
        for box, prob, pts in zip(raw.boxes, raw.scores, raw.landmarks, strict=True):
            if prob < self.min_score:
                continue
            bx1, by1, bx2, by2 = (np.asarray(box, np.float64) / scale).tolist()
            det = Detection(Box(bx1 + x0, by1 + y0, bx2 + x0, by2 + y0), float(prob),
                            (pts / scale + np.array([x0, y0], np.float32)).astype(np.float32))
            if best is None or det.area > best.area:
                best = det
        return best

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
        # Faces barely move in `every` frames: look near the last one first, and over the
        # whole frame only where it is not found there.
        if self._last is not None:
            near = self.detector.detect_near(frame.rgb, self._last)
            if near is not None:
                return near
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
