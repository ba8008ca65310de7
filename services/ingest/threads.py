"""Blocking work off the event loop: a blocking iterator stepped in worker threads, a
prefetching decoder thread, and a stopwatch of milliseconds per stage."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

T = TypeVar("T")


class Stopwatch:
    """Milliseconds per stage, accumulated across calls."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """Run a blocking iterator one step at a time in a worker thread."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, items, done)
        if item is done:
            return
        yield item  # type: ignore[misc]


class Prefetch(Iterator[T]):
    """Items of a blocking iterator produced by a worker thread up to `depth` ahead, so
    decoding (OpenCV releases the GIL) overlaps the consumer's face detection. `close()`
    stops the worker and waits for it (the capture it reads must outlive it)."""

    _END = object()

    def __init__(self, items: Iterator[T], depth: int, clock: Stopwatch, stage: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items, clock, stage),
                                        name="ingest-decode", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator[T], clock: Stopwatch, stage: str) -> None:
        try:
            while not self._stop.is_set():
                with clock.time(stage):
                    item = next(items, self._END)
                if not self._put(item) or item is self._END:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __next__(self) -> T:
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
