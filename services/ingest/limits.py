"""A bound on concurrent ingests: excess requests are refused at once with a retry hint,
rather than queued, so memory stays bounded and callers can go to another replica."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.ingest.rejections import Busy


class IngestSlots:
    """At most `limit` ingests at a time (event-loop only; no locking needed)."""

    def __init__(self, limit: int, retry_after_seconds: float) -> None:
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds
        self.in_use = 0

    @contextmanager
    def acquire(self) -> Iterator[None]:
        """Hold a slot for the block; Busy (RESOURCE_EXHAUSTED) when none is free."""
        if self.in_use >= self.limit:
            raise Busy(f"ingest is busy: {self.in_use} uploads in progress, the limit is "
                       f"{self.limit} (DFMESH_MAX_CONCURRENT_INGESTS); retry in "
                       f"{self.retry_after_seconds:g} s",
                       retry_after_seconds=self.retry_after_seconds)
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
