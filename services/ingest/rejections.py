"""Why ingest refuses an upload: domain errors with a short `reason` label for metrics.

    InvalidInput (INVALID_ARGUMENT)       LimitExceeded (RESOURCE_EXHAUSTED)
    ├── EmptyUpload         empty         ├── TooLarge     too_large
    ├── NotMedia            not_media     ├── TooLong      too_long
    ├── Truncated           truncated     ├── TooManyFrames too_many_frames
    ├── Undecodable         undecodable   └── Busy         busy
    ├── ExtensionMismatch   extension_mismatch
    └── BadRequest          bad_request
    NotReady (UNAVAILABLE)
    └── NoSpace             no_space     the temp dir is full: another replica may have room
"""

from __future__ import annotations

from dfmesh.runtime.errors import DfmeshError, InvalidInput, LimitExceeded, NotReady


class EmptyUpload(InvalidInput):
    reason = "empty"


class NotMedia(InvalidInput):
    reason = "not_media"


class Truncated(InvalidInput):
    reason = "truncated"


class Undecodable(InvalidInput):
    reason = "undecodable"


class ExtensionMismatch(InvalidInput):
    reason = "extension_mismatch"


class BadRequest(InvalidInput):
    reason = "bad_request"


class NoSpace(NotReady):
    reason = "no_space"


class TooLarge(LimitExceeded):
    reason = "too_large"


class TooLong(LimitExceeded):
    reason = "too_long"


class TooManyFrames(LimitExceeded):
    reason = "too_many_frames"


class Busy(LimitExceeded):
    reason = "busy"


def rejection_reason(exc: DfmeshError) -> str:
    """The metrics label for a refused upload."""
    return getattr(exc, "reason", type(exc).__name__.lower())
