"""ApiError, the one exception every route raises on purpose, and the mapping from the
orchestrator's gRPC status codes to HTTP.

    INVALID_ARGUMENT     422  nothing usable in the file (undecodable, no frames, no audio)
    RESOURCE_EXHAUSTED   429  busy, when the server sent a retry hint
                         422  the clip is longer than the duration limit
                         413  the upload is larger than a limit
    UNAVAILABLE          503  fusion (or a service it needs) is down or still loading
    FAILED_PRECONDITION  503  a model artifact is missing or modified
    DEADLINE_EXCEEDED    504
    anything else        502
"""

from __future__ import annotations

import math

import grpc
from grpc import aio


class ApiError(Exception):
    """An HTTP error with a message a person can act on (never a stack trace)."""

    def __init__(self, status: int, code: str, message: str, *,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "httpStatus": self.status}


_CONNECTION_NOISE = ("failed to connect", "Failed to connect", "all backends failing",
                     "Connection refused", "Socket closed", "DNS resolution failed")


def _retry_after(exc: aio.AioRpcError) -> int | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            try:
                return max(1, math.ceil(float(value)))
            except ValueError:
                return 1
    return None


def error_from_rpc(exc: aio.AioRpcError, default_retry_after: int) -> ApiError:
    """The HTTP error for a failed Analyze call."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ApiError(422, "unprocessable", details or "the file could not be analyzed")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry = _retry_after(exc)
        lowered = details.lower()
        if retry is not None or "busy" in lowered or "concurrent" in lowered:
            return ApiError(429, "busy", details or "the analyzer is busy; retry shortly",
                            retry_after=retry or default_retry_after)
        # Status details carry no structured reason; duration refusals name the duration.
        if "duration" in lowered or "long" in lowered or "seconds" in lowered:
            return ApiError(422, "too_long", details)
        return ApiError(413, "too_large", details or "the upload is too large")
    if code == grpc.StatusCode.UNAVAILABLE:
        # grpc-core's own connection errors name sockets, not causes: leave them to the log.
        own = details and not any(s in details for s in _CONNECTION_NOISE)
        return ApiError(503, "unavailable",
                        "the analysis service is unavailable; try again shortly"
                        + (f" ({details})" if own else ""),
                        retry_after=default_retry_after)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return ApiError(503, "not_ready", details or "a model is not available")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(504, "timeout", "the analysis took too long and was stopped")
    return ApiError(502, "upstream_error",
                    f"the analysis failed ({code.name.lower()}): {details}".rstrip(": "))
