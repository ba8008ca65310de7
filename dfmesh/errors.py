"""The domain errors every part of dfmesh raises on purpose, free of grpc so that
preprocessing and training can raise them without pulling in the RPC stack.

    DfmeshError                      anything the mesh raises on purpose
    ├── InvalidInput                 INVALID_ARGUMENT   the caller sent something unusable
    ├── LimitExceeded                RESOURCE_EXHAUSTED too big, too long, too many at once
    ├── NotReady                     UNAVAILABLE        still loading, or draining
    ├── UpstreamUnavailable          UNAVAILABLE        a service this one needs is down
    ├── DeadlineExceeded             DEADLINE_EXCEEDED  ran out of time
    └── ModelIntegrityError          FAILED_PRECONDITION a model artifact is missing or modified

`status` names the gRPC status code; `dfmesh.runtime.errors` maps it onto the wire.
"""

from __future__ import annotations

from typing import ClassVar


class DfmeshError(Exception):
    """Base of every deliberate error; `message` is shown to the caller as is."""

    status: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds


class InvalidInput(DfmeshError):
    status = "INVALID_ARGUMENT"


class LimitExceeded(DfmeshError):
    status = "RESOURCE_EXHAUSTED"


class NotReady(DfmeshError):
    status = "UNAVAILABLE"


class UpstreamUnavailable(DfmeshError):
    status = "UNAVAILABLE"


class DeadlineExceeded(DfmeshError):
    status = "DEADLINE_EXCEEDED"


class ModelIntegrityError(DfmeshError):
    status = "FAILED_PRECONDITION"
