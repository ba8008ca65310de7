from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MediaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_KIND_UNSPECIFIED: _ClassVar[MediaKind]
    VIDEO: _ClassVar[MediaKind]
    IMAGE: _ClassVar[MediaKind]
    AUDIO: _ClassVar[MediaKind]
MEDIA_KIND_UNSPECIFIED: MediaKind
VIDEO: MediaKind
IMAGE: MediaKind
AUDIO: MediaKind

class UploadHeader(_message.Message):
    __slots__ = ("filename", "content_type", "declared_size", "analysis_id")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DECLARED_SIZE_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_ID_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    declared_size: int
    analysis_id: str
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., declared_size: _Optional[int] = ..., analysis_id: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class IngestOptions(_message.Message):
    __slots__ = ("num_frames", "dense_window_seconds", "include_full_frames", "full_frames_only_without_faces")
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DENSE_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FULL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FULL_FRAMES_ONLY_WITHOUT_FACES_FIELD_NUMBER: _ClassVar[int]
    num_frames: int
    dense_window_seconds: float
    include_full_frames: bool
    full_frames_only_without_faces: bool
    def __init__(self, num_frames: _Optional[int] = ..., dense_window_seconds: _Optional[float] = ..., include_full_frames: _Optional[bool] = ..., full_frames_only_without_faces: _Optional[bool] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("width", "height", "encoding", "data")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[Image.Encoding]
        RAW_RGB8: _ClassVar[Image.Encoding]
        RAW_GRAY8: _ClassVar[Image.Encoding]
        JPEG: _ClassVar[Image.Encoding]
        PNG: _ClassVar[Image.Encoding]
    ENCODING_UNSPECIFIED: Image.Encoding
    RAW_RGB8: Image.Encoding
    RAW_GRAY8: Image.Encoding
    JPEG: Image.Encoding
    PNG: Image.Encoding
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    encoding: Image.Encoding
    data: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., encoding: _Optional[_Union[Image.Encoding, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "score", "landmarks", "crop", "mouth_crop")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    MOUTH_CROP_FIELD_NUMBER: _ClassVar[int]
    box: BoundingBox
    score: float
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    crop: Image
    mouth_crop: Image
    def __init__(self, box: _Optional[_Union[BoundingBox, _Mapping]] = ..., score: _Optional[float] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., crop: _Optional[_Union[Image, _Mapping]] = ..., mouth_crop: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class ClipInfo(_message.Message):
    __slots__ = ("analysis_id", "kind", "container", "video_codec", "audio_codec", "duration_seconds", "fps", "width", "height", "frame_count", "has_video", "has_audio", "audio_sample_rate", "transcoded", "sha256", "size_bytes")
    ANALYSIS_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CODEC_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CODEC_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    HAS_VIDEO_FIELD_NUMBER: _ClassVar[int]
    HAS_AUDIO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    TRANSCODED_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    analysis_id: str
    kind: MediaKind
    container: str
    video_codec: str
    audio_codec: str
    duration_seconds: float
    fps: float
    width: int
    height: int
    frame_count: int
    has_video: bool
    has_audio: bool
    audio_sample_rate: int
    transcoded: bool
    sha256: str
    size_bytes: int
    def __init__(self, analysis_id: _Optional[str] = ..., kind: _Optional[_Union[MediaKind, str]] = ..., container: _Optional[str] = ..., video_codec: _Optional[str] = ..., audio_codec: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_count: _Optional[int] = ..., has_video: _Optional[bool] = ..., has_audio: _Optional[bool] = ..., audio_sample_rate: _Optional[int] = ..., transcoded: _Optional[bool] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class SampledFrame(_message.Message):
    __slots__ = ("index", "frame_number", "timestamp_seconds", "faces", "frame")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FRAME_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    frame_number: int
    timestamp_seconds: float
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    frame: Image
    def __init__(self, index: _Optional[int] = ..., frame_number: _Optional[int] = ..., timestamp_seconds: _Optional[float] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., frame: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class DenseFrame(_message.Message):
    __slots__ = ("index", "frame_number", "timestamp_seconds", "face_found", "mouth_crop")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FRAME_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    MOUTH_CROP_FIELD_NUMBER: _ClassVar[int]
    index: int
    frame_number: int
    timestamp_seconds: float
    face_found: bool
    mouth_crop: Image
    def __init__(self, index: _Optional[int] = ..., frame_number: _Optional[int] = ..., timestamp_seconds: _Optional[float] = ..., face_found: _Optional[bool] = ..., mouth_crop: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("sample_rate", "start_sample", "pcm_f32le")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    PCM_F32LE_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    start_sample: int
    pcm_f32le: bytes
    def __init__(self, sample_rate: _Optional[int] = ..., start_sample: _Optional[int] = ..., pcm_f32le: _Optional[bytes] = ...) -> None: ...

class IngestSummary(_message.Message):
    __slots__ = ("num_frames", "num_frames_with_face", "num_dense_frames", "audio_num_samples", "dense_start_seconds", "dense_end_seconds", "notes", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    NUM_DENSE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DENSE_START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DENSE_END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    num_frames: int
    num_frames_with_face: int
    num_dense_frames: int
    audio_num_samples: int
    dense_start_seconds: float
    dense_end_seconds: float
    notes: _containers.RepeatedScalarFieldContainer[str]
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, num_frames: _Optional[int] = ..., num_frames_with_face: _Optional[int] = ..., num_dense_frames: _Optional[int] = ..., audio_num_samples: _Optional[int] = ..., dense_start_seconds: _Optional[float] = ..., dense_end_seconds: _Optional[float] = ..., notes: _Optional[_Iterable[str]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class MediaPacket(_message.Message):
    __slots__ = ("clip_info", "frame", "dense_frame", "audio", "summary")
    CLIP_INFO_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    DENSE_FRAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    clip_info: ClipInfo
    frame: SampledFrame
    dense_frame: DenseFrame
    audio: AudioChunk
    summary: IngestSummary
    def __init__(self, clip_info: _Optional[_Union[ClipInfo, _Mapping]] = ..., frame: _Optional[_Union[SampledFrame, _Mapping]] = ..., dense_frame: _Optional[_Union[DenseFrame, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., summary: _Optional[_Union[IngestSummary, _Mapping]] = ...) -> None: ...
