"""Analysis state: a snapshot (the REST shape) and the ordered list of events (progress,
then one result or error) per analysis id.

MemoryStore keeps it in this process (the embedded default, one replica). RedisStore keeps
it in Redis so any gateway replica answers GET and SSE for an analysis another accepted:
events go to a list, the snapshot to a string, and a pub/sub message wakes followers, who
always re-read the list, so no event is missed or reordered. Finished analyses expire after
the result TTL; running ones after the analysis deadline plus the TTL, in case a replica
died mid-analysis.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import redis.asyncio as aioredis

FINAL_EVENTS = ("result", "error")


class AnalysisStore(Protocol):
    async def create(self, analysis_id: str, snapshot: dict[str, Any]) -> None: ...

    async def publish(self, analysis_id: str, event: dict[str, Any],
                      snapshot: dict[str, Any]) -> None:
        """Append `event` ({"type", "data"}) and replace the snapshot; a result or error
        event ends the analysis and starts its TTL."""

    async def snapshot(self, analysis_id: str) -> dict[str, Any] | None: ...

    def follow(self, analysis_id: str, start: int = 0) -> AsyncIterator[tuple[int, dict]]:
        """Yield (index, event) from `start`, live, until the final event (or expiry)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


@dataclass
class _Entry:
    snapshot: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    expires_at: float = float("inf")


def _has_more(entry: _Entry, index: int) -> bool:
    return len(entry.events) > index


class MemoryStore:
    """State in this process; lost on restart, invisible to other replicas."""

    def __init__(self, *, result_ttl_seconds: float, running_ttl_seconds: float) -> None:
        self.result_ttl = result_ttl_seconds
        self.running_ttl = running_ttl_seconds
        self._entries: dict[str, _Entry] = {}

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]

    async def create(self, analysis_id: str, snapshot: dict[str, Any]) -> None:
        self._sweep()
        self._entries[analysis_id] = _Entry(
            snapshot, expires_at=time.monotonic() + self.running_ttl + self.result_ttl)

    async def publish(self, analysis_id: str, event: dict[str, Any],
                      snapshot: dict[str, Any]) -> None:
        entry = self._entries.get(analysis_id)
        if entry is None:
            return
        async with entry.changed:
            entry.events.append(event)
            entry.snapshot = snapshot
            if event["type"] in FINAL_EVENTS:
                entry.expires_at = time.monotonic() + self.result_ttl
            entry.changed.notify_all()

    async def snapshot(self, analysis_id: str) -> dict[str, Any] | None:
        self._sweep()
        entry = self._entries.get(analysis_id)
        return entry.snapshot if entry else None

    async def follow(self, analysis_id: str, start: int = 0) -> AsyncIterator[tuple[int, dict]]:
        entry = self._entries.get(analysis_id)
        if entry is None:
            return
        index = start
        while True:
            async with entry.changed:
                await entry.changed.wait_for(partial(_has_more, entry, index))
                batch = entry.events[index:]
            for event in batch:
                yield index, event
                index += 1
                if event["type"] in FINAL_EVENTS:
                    return

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._entries.clear()


class RedisStore:
    """State in Redis, shared by every gateway replica."""

    POLL_SECONDS = 1.0
    """Followers re-read the list at least this often, in case a notification was lost."""

    def __init__(self, url: str, *, result_ttl_seconds: float, running_ttl_seconds: float,
                 prefix: str = "dfmesh:analysis:") -> None:
        self.client = aioredis.from_url(url, decode_responses=True)
        self.result_ttl = max(1, int(result_ttl_seconds))
        self.running_ttl = max(1, int(running_ttl_seconds + result_ttl_seconds))
        self.prefix = prefix

    def _keys(self, analysis_id: str) -> tuple[str, str, str]:
        base = self.prefix + analysis_id
        return base, base + ":events", base + ":notify"

    async def create(self, analysis_id: str, snapshot: dict[str, Any]) -> None:
        state, _, _ = self._keys(analysis_id)
        await self.client.set(state, json.dumps(snapshot), ex=self.running_ttl)

    async def publish(self, analysis_id: str, event: dict[str, Any],
                      snapshot: dict[str, Any]) -> None:
        state, events, notify = self._keys(analysis_id)
        ttl = self.result_ttl if event["type"] in FINAL_EVENTS else self.running_ttl
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(events, json.dumps(event))
            pipe.set(state, json.dumps(snapshot), ex=ttl)
            pipe.expire(events, ttl)
            pipe.publish(notify, event["type"])
            await pipe.execute()

    async def snapshot(self, analysis_id: str) -> dict[str, Any] | None:
        raw = await self.client.get(self._keys(analysis_id)[0])
        return json.loads(raw) if raw else None

    async def follow(self, analysis_id: str, start: int = 0) -> AsyncIterator[tuple[int, dict]]:
        state, events, notify = self._keys(analysis_id)
        pubsub = self.client.pubsub()
        await pubsub.subscribe(notify)  # before reading, so nothing slips in between
        try:
            index = start
            while True:
                for raw in await self.client.lrange(events, index, -1):
                    event = json.loads(raw)
                    yield index, event
                    index += 1
                    if event["type"] in FINAL_EVENTS:
                        return
                if not await self.client.exists(state):
                    return
                await pubsub.get_message(ignore_subscribe_messages=True,
                                         timeout=self.POLL_SECONDS)
        finally:
            await pubsub.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except aioredis.RedisError:
            return False

    async def close(self) -> None:
        await self.client.aclose()
