"""One analysis's use of the result cache: the key from its clip and options, the lookup
(counted hit or miss) once ingest has described the clip, and the store of a complete
result. Without a cache every step is a no-op."""

from __future__ import annotations

from typing import Any, Protocol

from deepfake.v1 import media_pb2
from dfmesh.runtime import metrics
from services.fusion.outcome import AnalysisOutcome


class ResultCacheLike(Protocol):
    """services.fusion.cache.ResultCache as an analysis uses it."""

    models: Any

    def key(self, clip_sha256: str, options: dict[str, object],
            bundle_sha256: str) -> str | None: ...

    async def get(self, key: str) -> AnalysisOutcome | None: ...

    async def put(self, key: str, outcome: AnalysisOutcome) -> None: ...


class AnalysisCache:
    """The result cache for one analysis's options (request.cache_options) and bundle."""

    def __init__(self, cache: ResultCacheLike | None, options: dict[str, object],
                 bundle_sha256: str) -> None:
        self.cache = cache
        self.options = options
        self.bundle_sha256 = bundle_sha256

    @property
    def models(self) -> Any:
        """Where the branches' models are noted (the cache key needs them), or None."""
        return self.cache.models if self.cache is not None else None

    def key(self, clip: media_pb2.ClipInfo) -> str | None:
        """None without a cache, or while a branch's model is not known."""
        if self.cache is None:
            return None
        return self.cache.key(clip.sha256, self.options, self.bundle_sha256)

    async def lookup(self, clip: media_pb2.ClipInfo) -> AnalysisOutcome | None:
        """The cached result of this clip with these options, if any."""
        if self.cache is None:
            return None
        key = self.key(clip)
        found = await self.cache.get(key) if key is not None else None
        metrics.FUSION_CACHE_LOOKUPS.labels("hit" if found else "miss").inc()
        return found

    async def store(self, clip: media_pb2.ClipInfo | None, outcome: AnalysisOutcome) -> None:
        """Keep a result for the next identical upload; a degraded one is not kept."""
        if self.cache is None or clip is None or outcome.degraded:
            return
        key = self.key(clip)
        if key is not None:
            await self.cache.put(key, outcome)
