"""What the ingest pipeline yields, in stream order, as plain Python (the servicer turns
each into a MediaPacket), and the upload request it starts from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.ingest.faces import FaceCrops
from services.ingest.probe import MediaProbe


@dataclass(frozen=True)
class UploadRequest:
    """The upload header and options, translated from protobuf."""

    filename: str = ""
    declared_size: int = 0
    analysis_id: str = ""
    num_frames: int = 0
    dense_window_seconds: float = 0.0
    include_full_frames: bool = False
    full_frames_only_without_faces: bool = False

    def wants_full_frame(self, has_faces: bool) -> bool:
        return self.include_full_frames and not (self.full_frames_only_without_faces
                                                 and has_faces)


@dataclass(frozen=True)
class ClipFacts:
    analysis_id: str
    probe: MediaProbe
    transcoded: bool
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class SampledResult:
    index: int
    frame_number: int
    timestamp_seconds: float
    faces: list[FaceCrops]
    full_frame: np.ndarray | None = None


@dataclass(frozen=True)
class DenseResult:
    index: int
    frame_number: int
    timestamp_seconds: float
    mouth: np.ndarray | None


@dataclass(frozen=True)
class AudioResult:
    sample_rate: int
    start_sample: int
    pcm_f32le: bytes


@dataclass
class SummaryResult:
    num_frames: int = 0
    num_frames_with_face: int = 0
    num_dense_frames: int = 0
    audio_num_samples: int = 0
    dense_start_seconds: float = 0.0
    dense_end_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


IngestResult = ClipFacts | SampledResult | DenseResult | AudioResult | SummaryResult
