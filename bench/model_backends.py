"""ONNX Runtime against PyTorch eager for every branch model, and MTCNN's two paths.

Branch models are built by the training code (default architecture arguments, fresh
weights: speed depends on the architecture, not on the weights), exported with
training.export.export_onnx as the trainers export them, and both run on the feeds of a
10 s clip with one face per sampled frame: 16 crops (visual, mri), 16 x 64 patches
(tiny_gate), 16 embeddings (temporal), 4 CQCC windows (audio), 8 lip-sync windows (sync).
One thread each (torch.set_num_threads(1), intra_op_num_threads=1), as the services run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BackendTiming:
    name: str
    shapes: str
    torch_ms: list[float]
    onnx_ms: list[float]

    @property
    def ratio(self) -> float:
        """torch time / ONNX Runtime time (above 1: ONNX Runtime is faster)."""
        return statistics.median(self.torch_ms) / statistics.median(self.onnx_ms)


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def branch_models() -> dict[str, tuple[Callable, list, list, list[tuple[int, ...]]]]:
    """name -> (builder, input specs, output specs, feed shapes)."""
    from dfmesh.preprocess import audio as audio_pre
    from dfmesh.preprocess import mouth as mouth_pre
    from training.audio.model import CQCCNet
    from training.export import TensorSpec as T
    from training.models.mri import MRIDetector
    from training.models.temporal import build_temporal
    from training.models.tiny_ladeda import TinyLaDeDa
    from training.models.visual import VisualDetector
    from training.sync.model import SyncNet

    return {
        "tiny_gate": (TinyLaDeDa, [T("patches", ["N", 3, "H", "W"])], [T("logit", ["N", 1])],
                      [(1024, 3, 32, 32)]),
        "visual": (lambda: VisualDetector("resnet18"), [T("image", ["N", 3, 224, 224])],
                   [T("logit", ["N", 1]), T("embedding", ["N", 512])], [(16, 3, 224, 224)]),
        "mri": (MRIDetector, [T("image", ["N", 3, 256, 256])],
                [T("mri_map", ["N", 1, 256, 256]), T("logit", ["N", 1])], [(16, 3, 256, 256)]),
        "temporal": (lambda: build_temporal("bilstm", 512),
                     [T("embeddings", [1, "T", 512])], [T("logit", [1, 1])], [(1, 16, 512)]),
        "audio": (CQCCNet, [T("cqcc", ["N", 1, audio_pre.N_FEATURES, audio_pre.N_FRAMES])],
                  [T("logit", ["N", 1])], [(4, 1, audio_pre.N_FEATURES, audio_pre.N_FRAMES)]),
        "sync": (SyncNet, [T("mouth", ["N", mouth_pre.WINDOW_FRAMES, mouth_pre.MOUTH_SIZE,
                                       mouth_pre.MOUTH_SIZE]),
                           T("audio", ["N", mouth_pre.N_MELS, mouth_pre.MEL_FRAMES])],
                 [T("logit", ["N", 1])],
                 [(8, mouth_pre.WINDOW_FRAMES, mouth_pre.MOUTH_SIZE, mouth_pre.MOUTH_SIZE),
                  (8, mouth_pre.N_MELS, mouth_pre.MEL_FRAMES)]),
    }


def compare_branch_models(repeats: int, only: tuple[str, ...] = ()) -> list[BackendTiming]:
    import onnxruntime as ort
    import torch

    from training.export import export_onnx

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for name, (build, inputs, outputs, shapes) in branch_models().items():
            if only and name not in only:
                continue
            torch.manual_seed(0)
            module = build().eval()
            feeds = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            tensors = tuple(torch.from_numpy(f) for f in feeds)
            path = export_onnx(module, tuple(t[:2] if t.shape[0] > 1 else t for t in tensors),
                               Path(tmp) / f"{name}.onnx", inputs, outputs)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            named = {spec.name: f for spec, f in zip(inputs, feeds, strict=True)}

            def run_torch(m=module, t=tensors) -> None:
                with torch.inference_mode():
                    m(*t)

            out.append(BackendTiming(
                name, " + ".join("x".join(map(str, s)) for s in shapes),
                _time(run_torch, repeats),
                _time(lambda s=session, f=named: s.run(None, f), repeats)))
    return out


def compare_mtcnn(clip: Path, frames: int, repeats: int) -> BackendTiming:
    """Wall time per frame of FaceDetector.detect on `frames` frames of `clip`
    (downscaled to 640 as ingest does), torch path against ONNX Runtime path."""
    import cv2
    import torch

    from services.ingest.faces import FaceDetector

    torch.set_num_threads(1)
    cap = cv2.VideoCapture(str(clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or frames
    picked, index = [], 0
    wanted = {int((i + 0.5) * total / frames) for i in range(frames)}
    while len(picked) < len(wanted):
        ok, bgr = cap.read()
        if not ok:
            break
        if index in wanted:
            picked.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    detectors = {b: FaceDetector(backend=b) for b in ("torch", "onnx")}

    def per_frame(detector: FaceDetector) -> list[float]:
        times = _time(lambda: [detector.detect(f) for f in picked], repeats)
        return [t / len(picked) for t in times]

    h, w = picked[0].shape[:2]
    return BackendTiming("MTCNN (per frame)", f"{w}x{h} -> 640, min face 40",
                         per_frame(detectors["torch"]), per_frame(detectors["onnx"]))
