from deepfake.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BranchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BRANCH_STATUS_UNSPECIFIED: _ClassVar[BranchStatus]
    OK: _ClassVar[BranchStatus]
    NO_INPUT: _ClassVar[BranchStatus]
    FALLBACK: _ClassVar[BranchStatus]
BRANCH_STATUS_UNSPECIFIED: BranchStatus
OK: BranchStatus
NO_INPUT: BranchStatus
FALLBACK: BranchStatus

class BranchHeader(_message.Message):
    __slots__ = ("analysis_id",)
    ANALYSIS_ID_FIELD_NUMBER: _ClassVar[int]
    analysis_id: str
    def __init__(self, analysis_id: _Optional[str] = ...) -> None: ...

class FrameEmbedding(_message.Message):
    __slots__ = ("frame_index", "timestamp_seconds", "values", "source_model_sha256")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    timestamp_seconds: float
    values: _containers.RepeatedScalarFieldContainer[float]
    source_model_sha256: str
    def __init__(self, frame_index: _Optional[int] = ..., timestamp_seconds: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ..., source_model_sha256: _Optional[str] = ...) -> None: ...

class BranchRequest(_message.Message):
    __slots__ = ("header", "media", "embedding")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    header: BranchHeader
    media: _media_pb2.MediaPacket
    embedding: FrameEmbedding
    def __init__(self, header: _Optional[_Union[BranchHeader, _Mapping]] = ..., media: _Optional[_Union[_media_pb2.MediaPacket, _Mapping]] = ..., embedding: _Optional[_Union[FrameEmbedding, _Mapping]] = ...) -> None: ...

class ItemScore(_message.Message):
    __slots__ = ("item", "frame_index", "timestamp_seconds", "prob_fake")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROB_FAKE_FIELD_NUMBER: _ClassVar[int]
    item: str
    frame_index: int
    timestamp_seconds: float
    prob_fake: float
    def __init__(self, item: _Optional[str] = ..., frame_index: _Optional[int] = ..., timestamp_seconds: _Optional[float] = ..., prob_fake: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "sha256", "provider")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    provider: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class BranchResult(_message.Message):
    __slots__ = ("branch", "status", "detail", "features", "prob_fake", "item_scores", "embeddings", "model", "timings_ms")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PROB_FAKE_FIELD_NUMBER: _ClassVar[int]
    ITEM_SCORES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    branch: str
    status: BranchStatus
    detail: str
    features: _containers.ScalarMap[str, float]
    prob_fake: float
    item_scores: _containers.RepeatedCompositeFieldContainer[ItemScore]
    embeddings: _containers.RepeatedCompositeFieldContainer[FrameEmbedding]
    model: ModelInfo
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, branch: _Optional[str] = ..., status: _Optional[_Union[BranchStatus, str]] = ..., detail: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ..., prob_fake: _Optional[float] = ..., item_scores: _Optional[_Iterable[_Union[ItemScore, _Mapping]]] = ..., embeddings: _Optional[_Iterable[_Union[FrameEmbedding, _Mapping]]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...
