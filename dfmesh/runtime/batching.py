"""Micro-batching of concurrent requests inside a branch service (Triton's dynamic batcher,
in small).

Requests hand their model feeds to `MicroBatcher.predict`. The first waiting request opens
a window of `window_seconds`; requests arriving within it whose feeds have the same shapes
past the batch axis join it, up to `max_rows` rows, and the batch goes to the model as one
session run (at once when it is full). Outputs are split back by each request's row count.
Only one batch runs at a time (ONNX Runtime already uses the threads it is given), and the
requests that queue behind it form the next batch without waiting for another window.

Where the joined run fails, each request is run alone so that an error belongs to the
request that caused it, never to its neighbours. Models whose batch axis is fixed (e.g.
temporal's [1, T, E]) are not batched: `batchable` tells.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dfmesh.runtime import metrics

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


def shape_key(feeds: Feeds) -> tuple:
    """Requests with equal keys can be concatenated along axis 0."""
    return tuple(sorted((name, a.shape[1:], a.dtype.str) for name, a in feeds.items()))


def rows_of(feeds: Feeds) -> int:
    return len(next(iter(feeds.values()))) if feeds else 0


def concatenate(parts: list[Feeds]) -> Feeds:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split(outputs: Outputs, rows: list[int]) -> list[Outputs] | None:
    """Outputs cut back into per-request pieces, or None where an output does not have one
    row per input row (such a model cannot be batched across requests)."""
    total = sum(rows)
    if any(len(v) != total for v in outputs.values()):
        return None
    bounds = np.cumsum([0, *rows])
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()}
            for i in range(len(rows))]


@dataclass(eq=False)
class _Waiting:
    feeds: Feeds
    rows: int
    key: tuple
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)
    started: float = 0.0  # when its session run began: started - arrived is its queue time


class MicroBatcher:
    """Joins concurrent `predict` calls into shared session runs; see the module docstring.

    `run` is the blocking model call (rows of any count; it slices to the session's own
    limit). `label` names the branch in metrics.
    """

    def __init__(self, run: Callable[[Feeds], Outputs], window_seconds: float, max_rows: int,
                 label: str = "") -> None:
        self._run = run
        self.window_seconds = max(0.0, window_seconds)
        self.max_rows = max(1, max_rows)
        self.label = label
        self._waiting: list[_Waiting] = []
        self._arrival = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self.session_runs = 0
        self.requests_served = 0

    async def predict(self, feeds: Feeds) -> Outputs:
        """The model's outputs for these feeds (possibly computed in a shared run)."""
        outputs, _ = await self.predict_timed(feeds)
        return outputs

    async def predict_timed(self, feeds: Feeds) -> tuple[Outputs, float]:
        """`predict`, and the seconds the feeds waited for their session run (the window
        and the runs ahead of it): queue time, an autoscaling input."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        waiting = _Waiting(feeds, rows_of(feeds), shape_key(feeds), future)
        self._waiting.append(waiting)
        self._arrival.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        outputs = await future
        return outputs, max(0.0, waiting.started - waiting.arrived)

    def _joinable(self, first: _Waiting) -> list[_Waiting]:
        group, rows = [first], first.rows
        for w in self._waiting[1:]:
            if w.key == first.key and rows + w.rows <= self.max_rows:
                group.append(w)
                rows += w.rows
        return group

    async def _drain(self) -> None:
        while self._waiting:
            first = self._waiting[0]
            deadline = first.arrived + self.window_seconds
            while (sum(w.rows for w in self._joinable(first)) < self.max_rows
                   and (remaining := deadline - time.perf_counter()) > 0):
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), remaining)
                except TimeoutError:
                    break
            group = [w for w in self._joinable(first) if not w.future.done()]
            taken = {id(w) for w in group}
            self._waiting = [w for w in self._waiting
                             if id(w) not in taken and not w.future.done()]
            if group:
                await self._serve(group)

    async def _serve(self, group: list[_Waiting]) -> None:
        metrics.BATCH_REQUESTS.labels(self.label).observe(len(group))
        started = time.perf_counter()
        for w in group:
            w.started = started
        self.session_runs += 1
        self.requests_served += len(group)
        pieces: list[Outputs] | None = None
        if len(group) > 1:
            try:
                joined = await asyncio.to_thread(self._run, concatenate([w.feeds for w in group]))
                pieces = split(joined, [w.rows for w in group])
            except Exception:  # noqa: BLE001 - retried one by one below, errors go to their owner
                pieces = None
        if pieces is not None:
            for w, piece in zip(group, pieces, strict=True):
                if not w.future.done():
                    w.future.set_result(piece)
            return
        for w in group:
            try:
                result = await asyncio.to_thread(self._run, w.feeds)
            except Exception as exc:  # noqa: BLE001 - handed to the request's own caller
                if not w.future.done():
                    w.future.set_exception(exc)
            else:
                if not w.future.done():
                    w.future.set_result(result)
            if len(group) > 1:
                self.session_runs += 1
