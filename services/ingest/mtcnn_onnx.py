"""facenet-pytorch's MTCNN executed on ONNX Runtime, with the glue in NumPy and OpenCV.

The P-, R- and O-nets are facenet-pytorch's own modules with their shipped weights,
exported to ONNX in memory when the detector loads; `detect_faces` follows
facenet_pytorch.models.utils.detect_face step for step (scale pyramid, thresholds
0.6/0.7/0.7, NMS 0.5/0.7/0.7 with the last one over the smaller box, box regression, square
boxes). What changes is where it runs: per-op dispatch of the small nets in torch eager and
torch's "area" resampling (adaptive average pooling, one call per candidate box) cost more
than the convolutions; ORT runs each net as one graph and cv2.resize(INTER_AREA) resamples.
The two resamplers differ slightly at non-integer ratios, so boxes move by a few pixels and
faces right at the minimum size can flip either way; tests/test_ingest_fast_paths.py checks
the faces against facenet-pytorch's torch path on real clips.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709


@dataclass(frozen=True)
class RawFaces:
    """MTCNN output in the input image's pixels: boxes (N,4) x1y1x2y2, scores (N,),
    landmarks (N,5,2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> RawFaces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 5, 2), np.float32))


def export_nets() -> dict[str, bytes]:
    """facenet-pytorch's P/R/O-nets (weights shipped in the package) as ONNX bytes."""
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    nets = {"pnet": (PNet(), (1, 3, 48, 64), {0: "n", 2: "h", 3: "w"}),
            "rnet": (RNet(), (4, 3, 24, 24), {0: "n"}),
            "onet": (ONet(), (4, 3, 48, 48), {0: "n"})}
    out = {}
    for name, (net, shape, axes) in nets.items():
        net.eval()
        buffer = io.BytesIO()
        with torch.no_grad():
            # The exporter writes to file objects too; its annotation names paths only.
            torch.onnx.export(net, (torch.zeros(shape),), buffer,  # type: ignore[arg-type]
                              dynamo=False, input_names=["x"], dynamic_axes={"x": axes},
                              opset_version=17)
        out[name] = buffer.getvalue()
    return out


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, over_min: bool = False,
        plus_one: bool = False) -> np.ndarray:
    """Indices kept by greedy NMS, best score first. `over_min` divides the overlap by the
    smaller area (MTCNN's last stage); `plus_one` counts pixels inclusively as it does."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    add = 1.0 if plus_one else 0.0
    area = (x2 - x1 + add) * (y2 - y1 + add)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + add)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + add)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if over_min else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (MTCNN's rerec)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0:4] = boxes[:, 0:4] + reg[:, 0:4] * np.stack([w, h, w, h], axis=1)
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised NCHW crops of `boxes` (clipped to the image, 1-based like MTCNN's pad) at
    size x size, and the mask of boxes that had any pixels."""
    h, w = image.shape[:2]
    ints = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(ints[:, 0], 1), np.maximum(ints[:, 1], 1)
    ex, ey = np.minimum(ints[:, 2], w), np.minimum(ints[:, 3], h)
    valid = (ey > y - 1) & (ex > x - 1)
    crops = [cv2.resize(image[y[k] - 1:ey[k], x[k] - 1:ex[k]], (size, size),
                        interpolation=cv2.INTER_AREA)
             for k in np.flatnonzero(valid)]
    if not crops:
        return np.zeros((0, 3, size, size), np.float32), valid
    batch = (np.stack(crops).astype(np.float32) - 127.5) * 0.0078125
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)), valid


class OnnxMtcnn:
    """MTCNN on ONNX Runtime: `detect_faces(rgb)` -> RawFaces."""

    def __init__(self, min_face_size: int = 20, threads: int = 1,
                 nets: dict[str, bytes] | None = None) -> None:
        nets = nets or export_nets()
        self.min_face_size = min_face_size
        self._pnet = _session(nets["pnet"], threads)
        self._rnet = _session(nets["rnet"], threads)
        self._onet = _session(nets["onet"], threads)

    def _scales(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.min_face_size
        side, scale, scales = min(h, w) * m, m, []
        while side >= 12:
            scales.append(scale)
            scale *= PYRAMID_FACTOR
            side *= PYRAMID_FACTOR
        return scales

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """P-net over the scale pyramid: candidate boxes (K, 9) = box, score, regression."""
        h, w = image.shape[:2]
        found = []
        for scale in self._scales(h, w):
            size = (int(w * scale + 1), int(h * scale + 1))
            scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
            x = ((scaled - 127.5) * 0.0078125).transpose(2, 0, 1)[None]
            reg, prob = self._pnet.run(None, {"x": np.ascontiguousarray(x)})
            score = prob[0, 1]
            ys, xs = np.nonzero(score >= THRESHOLDS[0])
            if not len(ys):
                continue
            cells = np.stack([xs, ys], axis=1).astype(np.float32)
            q1 = np.floor((2 * cells + 1) / scale)
            q2 = np.floor((2 * cells + 12) / scale)
            boxes = np.concatenate([q1, q2, score[ys, xs, None], reg[0][:, ys, xs].T], axis=1)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 9), np.float32)
        boxes = np.concatenate(found)
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]

    def detect_faces(self, rgb: np.ndarray) -> RawFaces:
        """Faces in an RGB uint8 image, in its pixel coordinates."""
        cand = self._proposals(rgb)
        if not len(cand):
            return RawFaces.empty()
        w, h = cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]
        boxes = np.stack([cand[:, 0] + cand[:, 5] * w, cand[:, 1] + cand[:, 6] * h,
                          cand[:, 2] + cand[:, 7] * w, cand[:, 3] + cand[:, 8] * h,
                          cand[:, 4]], axis=1)
        boxes = _square(boxes)

        batch, valid = _crops(rgb, boxes, 24)
        boxes = boxes[valid]
        if not len(boxes):
            return RawFaces.empty()
        reg, prob = self._rnet.run(None, {"x": batch})
        keep = prob[:, 1] > THRESHOLDS[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))

        batch, valid = _crops(rgb, boxes, 48)
        boxes = boxes[valid]
        if not len(boxes):
            return RawFaces.empty()
        reg, points, prob = self._onet.run(None, {"x": batch})
        keep = prob[:, 1] > THRESHOLDS[2]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg, points = reg[keep], points[keep]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        px = bw[:, None] * points[:, :5] + boxes[:, 0:1] - 1
        py = bh[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([px, py], axis=2)
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, over_min=True, plus_one=True)
        return RawFaces(boxes[pick, :4].astype(np.float32), boxes[pick, 4].astype(np.float32),
                        landmarks[pick].astype(np.float32))
