"""Ingest alone, in process, under the configurations that made it faster: the MTCNN path
(facenet-pytorch's torch code or ONNX Runtime) and the decoder (OpenCV decoding every frame
or PyAV skipping non-reference frames outside the dense window). Same clips, same run,
interleaved, so the comparison holds on a loaded machine."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import self_cpu_seconds

CONFIGS = (("torch", "opencv"), ("onnx", "opencv"), ("onnx", "pyav"))


@dataclass(frozen=True)
class IngestRun:
    backend: str
    decoder: str
    wall: float
    cpu: float
    stages_ms: dict[str, float]
    frames_with_face: int


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(1 << 20):
            yield data


async def compare_ingest(clips: list[Path], repeats: int, spool: Path
                         ) -> dict[str, list[IngestRun]]:
    """clip name -> runs of every configuration, `repeats` rounds (after one warm-up)."""
    import torch

    from services.ingest.faces import FaceDetector
    from services.ingest.pipeline import SummaryResult, UploadRequest, ingest_upload
    from services.ingest.settings import IngestSettings

    torch.set_num_threads(1)
    detectors = {b: FaceDetector(backend=b) for b in {c[0] for c in CONFIGS}}
    for detector in detectors.values():
        detector.warm_up()
    out: dict[str, list[IngestRun]] = {}
    for clip in clips:
        runs = out.setdefault(clip.name, [])
        for round_ in range(repeats + 1):
            for backend, decoder in CONFIGS:
                settings = IngestSettings(metrics_port=0, temp_dir=spool, decoder=decoder,
                                          mtcnn_backend=backend)
                request = UploadRequest(filename=clip.name, include_full_frames=True,
                                        full_frames_only_without_faces=True)
                cpu, start = self_cpu_seconds(), time.perf_counter()
                summary = None
                async for item in ingest_upload(request, _chunks(clip), settings,
                                                detectors[backend]):
                    if isinstance(item, SummaryResult):
                        summary = item
                assert summary is not None
                if round_:  # the first round warms caches and is not counted
                    runs.append(IngestRun(backend, decoder, time.perf_counter() - start,
                                          self_cpu_seconds() - cpu, dict(summary.timings_ms),
                                          summary.num_frames_with_face))
    return out
