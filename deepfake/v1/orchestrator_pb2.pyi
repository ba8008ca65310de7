from deepfake.v1 import branch_pb2 as _branch_pb2
from deepfake.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FusionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_MODE_UNSPECIFIED: _ClassVar[FusionMode]
    LOGREG: _ClassVar[FusionMode]
    ADAPTIVE: _ClassVar[FusionMode]

class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METHOD_UNSPECIFIED: _ClassVar[Method]
    FUSION: _ClassVar[Method]
    PLAIN_FRAMES: _ClassVar[Method]
    MRI: _ClassVar[Method]
    TEMPORAL: _ClassVar[Method]

class EarlyExitPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EARLY_EXIT_POLICY_UNSPECIFIED: _ClassVar[EarlyExitPolicy]
    EARLY_EXIT_ENABLED: _ClassVar[EarlyExitPolicy]
    EARLY_EXIT_DISABLED: _ClassVar[EarlyExitPolicy]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    QUEUED: _ClassVar[Stage]
    EXTRACTING_FRAMES: _ClassVar[Stage]
    RUNNING_MODELS: _ClassVar[Stage]
    FINAL_CLASSIFICATION: _ClassVar[Stage]

class BranchState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BRANCH_STATE_UNSPECIFIED: _ClassVar[BranchState]
    BRANCH_STATE_OK: _ClassVar[BranchState]
    BRANCH_STATE_FALLBACK: _ClassVar[BranchState]
    BRANCH_STATE_NO_INPUT: _ClassVar[BranchState]
    BRANCH_STATE_MISSING: _ClassVar[BranchState]
    BRANCH_STATE_NOT_RUN: _ClassVar[BranchState]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    AUTHENTIC: _ClassVar[Verdict]
    DEEPFAKE: _ClassVar[Verdict]
FUSION_MODE_UNSPECIFIED: FusionMode
LOGREG: FusionMode
ADAPTIVE: FusionMode
METHOD_UNSPECIFIED: Method
FUSION: Method
PLAIN_FRAMES: Method
MRI: Method
TEMPORAL: Method
EARLY_EXIT_POLICY_UNSPECIFIED: EarlyExitPolicy
EARLY_EXIT_ENABLED: EarlyExitPolicy
EARLY_EXIT_DISABLED: EarlyExitPolicy
STAGE_UNSPECIFIED: Stage
QUEUED: Stage
EXTRACTING_FRAMES: Stage
RUNNING_MODELS: Stage
FINAL_CLASSIFICATION: Stage
BRANCH_STATE_UNSPECIFIED: BranchState
BRANCH_STATE_OK: BranchState
BRANCH_STATE_FALLBACK: BranchState
BRANCH_STATE_NO_INPUT: BranchState
BRANCH_STATE_MISSING: BranchState
BRANCH_STATE_NOT_RUN: BranchState
VERDICT_UNSPECIFIED: Verdict
AUTHENTIC: Verdict
DEEPFAKE: Verdict

class AnalyzeOptions(_message.Message):
    __slots__ = ("fusion_mode", "method", "early_exit", "ingest")
    FUSION_MODE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EARLY_EXIT_FIELD_NUMBER: _ClassVar[int]
    INGEST_FIELD_NUMBER: _ClassVar[int]
    fusion_mode: FusionMode
    method: Method
    early_exit: EarlyExitPolicy
    ingest: _media_pb2.IngestOptions
    def __init__(self, fusion_mode: _Optional[_Union[FusionMode, str]] = ..., method: _Optional[_Union[Method, str]] = ..., early_exit: _Optional[_Union[EarlyExitPolicy, str]] = ..., ingest: _Optional[_Union[_media_pb2.IngestOptions, _Mapping]] = ...) -> None: ...

class AnalyzeHeader(_message.Message):
    __slots__ = ("upload", "options")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    upload: _media_pb2.UploadHeader
    options: AnalyzeOptions
    def __init__(self, upload: _Optional[_Union[_media_pb2.UploadHeader, _Mapping]] = ..., options: _Optional[_Union[AnalyzeOptions, _Mapping]] = ...) -> None: ...

class AnalyzeRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: AnalyzeHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[AnalyzeHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "percent", "message", "branch", "branch_state")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    BRANCH_STATE_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    percent: float
    message: str
    branch: str
    branch_state: BranchState
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., percent: _Optional[float] = ..., message: _Optional[str] = ..., branch: _Optional[str] = ..., branch_state: _Optional[_Union[BranchState, str]] = ...) -> None: ...

class BranchReport(_message.Message):
    __slots__ = ("status", "prob_fake", "features", "model", "detail", "latency_ms", "state")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROB_FAKE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    status: _branch_pb2.BranchStatus
    prob_fake: float
    features: _containers.ScalarMap[str, float]
    model: _branch_pb2.ModelInfo
    detail: str
    latency_ms: float
    state: BranchState
    def __init__(self, status: _Optional[_Union[_branch_pb2.BranchStatus, str]] = ..., prob_fake: _Optional[float] = ..., features: _Optional[_Mapping[str, float]] = ..., model: _Optional[_Union[_branch_pb2.ModelInfo, _Mapping]] = ..., detail: _Optional[str] = ..., latency_ms: _Optional[float] = ..., state: _Optional[_Union[BranchState, str]] = ...) -> None: ...

class AnalysisResult(_message.Message):
    __slots__ = ("analysis_id", "verdict", "confidence", "prob_fake", "features", "branches", "missing_branches", "degraded", "early_exit", "explanation", "timings_ms", "fusion_mode", "method", "fusion_head", "clip", "trace_id", "threshold", "from_cache", "warnings")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class BranchesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: BranchReport
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[BranchReport, _Mapping]] = ...) -> None: ...
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ANALYSIS_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROB_FAKE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    MISSING_BRANCHES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    EARLY_EXIT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    FUSION_MODE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    FUSION_HEAD_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    analysis_id: str
    verdict: Verdict
    confidence: float
    prob_fake: float
    features: _containers.ScalarMap[str, float]
    branches: _containers.MessageMap[str, BranchReport]
    missing_branches: _containers.RepeatedScalarFieldContainer[str]
    degraded: bool
    early_exit: bool
    explanation: str
    timings_ms: _containers.ScalarMap[str, float]
    fusion_mode: FusionMode
    method: Method
    fusion_head: str
    clip: _media_pb2.ClipInfo
    trace_id: str
    threshold: float
    from_cache: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, analysis_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., confidence: _Optional[float] = ..., prob_fake: _Optional[float] = ..., features: _Optional[_Mapping[str, float]] = ..., branches: _Optional[_Mapping[str, BranchReport]] = ..., missing_branches: _Optional[_Iterable[str]] = ..., degraded: _Optional[bool] = ..., early_exit: _Optional[bool] = ..., explanation: _Optional[str] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., fusion_mode: _Optional[_Union[FusionMode, str]] = ..., method: _Optional[_Union[Method, str]] = ..., fusion_head: _Optional[str] = ..., clip: _Optional[_Union[_media_pb2.ClipInfo, _Mapping]] = ..., trace_id: _Optional[str] = ..., threshold: _Optional[float] = ..., from_cache: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class AnalyzeEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: AnalysisResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[AnalysisResult, _Mapping]] = ...) -> None: ...
