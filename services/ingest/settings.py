"""Ingest settings: upload and clip limits, sampling defaults, detector knobs (env DFMESH_*)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from dfmesh.runtime.config import MiB, ServiceSettings


class IngestSettings(ServiceSettings):
    """Everything ingest can be told from the environment, e.g. DFMESH_MAX_UPLOAD_BYTES."""

    service_name: str = "ingest"
    per_service: ClassVar[frozenset[str]] = frozenset({"max_faces_per_frame"})
    retired: ClassVar[dict[str, str]] = {
        "DFMESH_AUDIO_SAMPLE_RATE": "ingest's audio is always 16 kHz, what every audio model "
                                    "expects (dfmesh.preprocess.waveform.SAMPLE_RATE)"}

    max_upload_bytes: int = Field(512 * MiB, ge=1, description="larger uploads are refused")
    max_duration_seconds: float = Field(600.0, gt=0, description="longer clips are refused")
    max_frame_pixels: int = Field(
        7680 * 4320, ge=64 * 64, description="larger frames (8K UHD by default) are refused: "
        "a tiny file can declare huge frames, and each decoded frame is width*height*3 bytes")
    max_frames: int = Field(64, ge=1, description="upper bound on IngestOptions.num_frames")
    default_num_frames: int = Field(16, ge=1, description="frames sampled when the request "
                                    "does not say")
    dense_window_seconds: float = Field(2.5, gt=0, le=10.0,
                                        description="lip-sync window at native fps")
    dense_detect_every: int = Field(5, ge=1,
                                    description="run MTCNN on every Nth dense frame, "
                                                "interpolate boxes between")
    seek_min_gap_seconds: float = Field(8.0, gt=0,
                                        description="seek instead of decoding through gaps "
                                                    "longer than this")
    full_frame_max_side: int = Field(1920, ge=64,
                                     description="longest side of frames sent with "
                                                 "include_full_frames")
    temp_dir: Path | None = Field(None, description="where uploads are spooled; None = system")
    detect_max_side: int = Field(640, ge=64, description="frames are downscaled to this "
                                                         "longest side for MTCNN")
    min_face_size: int = Field(40, ge=8, description="MTCNN minimum face size in detector "
                               "pixels; 40 at 640 halves MTCNN's time against 20 and keeps "
                               "every face big enough to judge")
    max_faces_per_frame: int = Field(5, ge=1, description="largest faces kept per frame")
    min_face_score: float = Field(0.9, ge=0, le=1, description="MTCNN confidence below "
                                  "which a detection is not a face")
    mtcnn_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: facenet-pytorch's MTCNN nets exported to ONNX Runtime at "
        "start-up (about 2.5x less CPU); torch: facenet-pytorch's own code path")
    decoder: Literal["pyav", "opencv"] = Field(
        "pyav", description="pyav: skips non-reference frames outside the dense window "
        "(about 45% less decoding on x264 streams); opencv: decodes every frame")
    decode_prefetch_frames: int = Field(4, ge=1, le=64, description="frames decoded ahead of "
                                        "face detection by the decode thread")
    torch_threads: int = Field(1, ge=1, le=64, description="threads for torch and for "
                               "MTCNN's ONNX Runtime sessions")
    max_concurrent_ingests: int = Field(2, ge=1, description="more at once are refused")
    busy_retry_seconds: float = Field(2.0, ge=0, description="retry hint when busy")
    reject_drain_bytes: int = Field(
        64 * MiB, ge=0, description="after refusing an upload mid-stream, read and discard up to "
        "this much of the rest so the caller's client reports the status (grpc/grpc#36066)")
    reject_drain_seconds: float = Field(5.0, ge=0, description="and for at most this long")
    tool_timeout_seconds: float = Field(120.0, gt=0, description="ffprobe/ffmpeg time limit")
    audio_chunk_seconds: float = Field(1.0, gt=0, le=10.0, description="PCM per AudioChunk "
                                       "packet")
