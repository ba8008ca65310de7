"""Result cache: an upload already analysed is answered without running the mesh again.

The key is a sha256 over the clip's content hash (ingest's ClipInfo.sha256, computed while
it spools), every option that changes the answer (method, fusion mode, early exit, ingest
options, thresholds), the fusion bundle's sha256 and the branch models (name, version,
sha256) the branches last reported. A branch's model is known only from its answers, so
the view of branch models goes stale: the cache is consulted only while every branch has
answered within `model_max_age` seconds; otherwise the analysis runs in full and refreshes
the view. A model rollout is thus noticed within that window
(DFMESH_RESULT_CACHE_MODEL_MAX_AGE_SECONDS).

Only complete results are stored (none with a missing branch). Entries live in this process
(bounded LRU with a TTL) or, with DFMESH_REDIS_URL, in Redis with the same TTL, so every
fusion replica shares them. Values are JSON (protobuf messages inside as base64), never
pickles: whoever can write to Redis must not be able to run code here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Protocol, cast

from deepfake.v1 import branch_pb2, media_pb2
from services.fusion.outcome import AnalysisOutcome, BranchOutcome

log = logging.getLogger(__name__)

KEY_PREFIX = "dfmesh:result:"
FORMAT_VERSION = 1


class ResultStore(Protocol):
    """Where encoded results live: get/put by key, both never raising for the store's own
    failures (a cache that is down is a miss)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """Bounded LRU with a time to live, in this process."""

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() >= entry[0]:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def put(self, key: str, value: bytes) -> None:
        self._entries[key] = (time.monotonic() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisStore:
    """Entries in Redis (SET with EX), shared by every fusion replica."""

    def __init__(self, url: str, ttl_seconds: float, timeout_seconds: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self.ttl_seconds = ttl_seconds
        self._redis = aioredis.from_url(url, socket_timeout=timeout_seconds,
                                        socket_connect_timeout=timeout_seconds)

    async def get(self, key: str) -> bytes | None:
        try:
            # decode_responses is off, so redis hands back bytes.
            return cast("bytes | None", await self._redis.get(KEY_PREFIX + key))
        except Exception as exc:  # noqa: BLE001 - a cache that is down is a miss
            log.warning("result cache unavailable (get): %s", exc)
            return None

    async def put(self, key: str, value: bytes) -> None:
        try:
            await self._redis.set(KEY_PREFIX + key, value, ex=max(1, int(self.ttl_seconds)))
        except Exception as exc:  # noqa: BLE001
            log.warning("result cache unavailable (put): %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


class ModelView:
    """The model each branch last reported, and when."""

    def __init__(self, branches: tuple[str, ...], max_age_seconds: float) -> None:
        self.branches = branches
        self.max_age_seconds = max_age_seconds
        self._seen: dict[str, tuple[float, str]] = {}

    def update(self, branch: str, model: branch_pb2.ModelInfo) -> None:
        self._seen[branch] = (time.monotonic(), f"{model.name}:{model.version}:{model.sha256}")

    def digest(self) -> str | None:
        """The models of every branch as one string, or None where one is unknown or older
        than max_age_seconds."""
        now = time.monotonic()
        parts = []
        for branch in self.branches:
            seen = self._seen.get(branch)
            if seen is None or now - seen[0] > self.max_age_seconds:
                return None
            parts.append(f"{branch}={seen[1]}")
        return ";".join(parts)


def cache_key(clip_sha256: str, options: dict[str, object], bundle_sha256: str,
              models: str) -> str:
    """sha256 over everything that decides the answer."""
    material = json.dumps({"v": FORMAT_VERSION, "clip": clip_sha256, "options": options,
                           "bundle": bundle_sha256, "models": models}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def _b64(message: object | None) -> str | None:
    if message is None:
        return None
    return base64.b64encode(message.SerializeToString()).decode()  # type: ignore[attr-defined]


def encode_outcome(outcome: AnalysisOutcome) -> bytes:
    """An AnalysisOutcome as JSON bytes."""
    data = asdict(outcome)  # protobuf fields are replaced below
    data["branches"] = {
        name: {**{k: v for k, v in asdict(b).items() if k != "result"},
               "result": _b64(b.result)} for name, b in outcome.branches.items()}
    data["clip"] = _b64(outcome.clip)
    return json.dumps(data).encode()


def decode_outcome(raw: bytes) -> AnalysisOutcome:
    """The inverse of encode_outcome."""
    data = json.loads(raw)
    branches = {}
    for name, b in data["branches"].items():
        result = None
        if b["result"] is not None:
            result = branch_pb2.BranchResult.FromString(base64.b64decode(b["result"]))
        branches[name] = BranchOutcome(**{**b, "result": result})
    clip = media_pb2.ClipInfo.FromString(base64.b64decode(data["clip"])) if data["clip"] else None
    return AnalysisOutcome(**{**data, "branches": branches, "clip": clip})


class ResultCache:
    """Looks results up and stores them; see the module docstring for the key."""

    def __init__(self, store: ResultStore, models: ModelView) -> None:
        self.store = store
        self.models = models

    def key(self, clip_sha256: str, options: dict[str, object], bundle_sha256: str) -> str | None:
        """The key for these inputs, or None while the branch models are not known."""
        models = self.models.digest()
        if models is None or not clip_sha256:
            return None
        return cache_key(clip_sha256, options, bundle_sha256, models)

    async def get(self, key: str) -> AnalysisOutcome | None:
        raw = await self.store.get(key)
        if raw is None:
            return None
        try:
            return decode_outcome(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("result cache entry unreadable, ignored: %s", exc)
            return None

    async def put(self, key: str, outcome: AnalysisOutcome) -> None:
        await self.store.put(key, encode_outcome(outcome))

    async def close(self) -> None:
        await self.store.close()
