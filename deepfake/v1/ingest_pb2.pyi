from deepfake.v1 import media_pb2 as _media_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: IngestHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[IngestHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class IngestHeader(_message.Message):
    __slots__ = ("upload", "options")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    upload: _media_pb2.UploadHeader
    options: _media_pb2.IngestOptions
    def __init__(self, upload: _Optional[_Union[_media_pb2.UploadHeader, _Mapping]] = ..., options: _Optional[_Union[_media_pb2.IngestOptions, _Mapping]] = ...) -> None: ...
