"""One branch call under its deadline, as a BranchOutcome (never raises for the branch's
own failures), and the translation of ingest's failures into domain errors.

A branch's own deadline counts from the moment its input is complete (its feed closed), so
a long ingest does not eat it; the gRPC deadline on the call is that plus the ingest
deadline, so no call can outlive both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from grpc import aio

from deepfake.v1 import branch_pb2
from dfmesh.errors import (
    DeadlineExceeded,
    DfmeshError,
    InvalidInput,
    LimitExceeded,
    UpstreamUnavailable,
)
from services.fusion.outcome import BranchOutcome, BranchState
from services.fusion.routing import Feed

log = logging.getLogger(__name__)


class BranchClients(Protocol):
    """services.fusion.upstreams.Upstreams as a branch call uses it."""

    async def serving(self, name: str) -> bool: ...

    def branch(self, name: str, requests: AsyncIterator[branch_pb2.BranchRequest],
               timeout: float) -> aio.StreamUnaryCall: ...

    def forget_health(self, name: str) -> None: ...


async def call_branch(upstreams: BranchClients, name: str, feed: Feed, *, deadline: float,
                      stream_deadline: float) -> tuple[BranchOutcome, str]:
    """The branch's outcome and the label its latency is recorded under (ok, not_serving,
    late, unavailable, failed, no_input, missing)."""
    start = time.perf_counter()
    if not await upstreams.serving(name):
        return BranchOutcome(name, BranchState.MISSING, reason="not serving"), "not_serving"
    call = upstreams.branch(name, feed.requests(), timeout=stream_deadline + deadline)

    async def result() -> branch_pb2.BranchResult:
        return await call

    call_task = asyncio.create_task(result())
    input_done = asyncio.create_task(feed.closed.wait())
    try:
        await asyncio.wait({call_task, input_done}, return_when=asyncio.FIRST_COMPLETED)
        if not call_task.done():
            await asyncio.wait({call_task}, timeout=deadline)
        now = time.perf_counter()
        latency = (now - start) * 1000
        after_input = (now - max(start, feed.closed_at or now)) * 1000
        if not call_task.done():
            call.cancel()
            return BranchOutcome(name, BranchState.MISSING, latency_ms=latency,
                                 reason=f"late (over {deadline:g} s)"), "late"
        try:
            reply = call_task.result()
        except aio.AioRpcError as exc:
            upstreams.forget_health(name)
            label = failure_label(exc.code())
            log.warning("branch %s left out: %s %s", name, exc.code().name, exc.details())
            return BranchOutcome(name, BranchState.MISSING, latency_ms=latency,
                                 reason=f"{label}: {exc.code().name}"), label
        state = BranchState.of_status(reply.status)
        outcome = BranchOutcome(name, state, reply, reason=reply.detail, latency_ms=latency,
                                after_input_ms=after_input)
        return outcome, "ok" if state is BranchState.FALLBACK else str(state)
    finally:
        input_done.cancel()
        if not call_task.done():
            call_task.cancel()


def failure_label(code: grpc.StatusCode) -> str:
    """How a failed branch call is named in its reason and metrics."""
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unavailable"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "late"
    return "failed"


def ingest_rpc_error(exc: aio.AioRpcError, address: str) -> DfmeshError:
    """A failed ingest call as the domain error fusion answers with (ingest's retry-after
    hint kept)."""
    retry = dict(exc.trailing_metadata() or ()).get("retry-after")
    return ingest_error(exc.code(), exc.details() or "", str(retry) if retry else None, address)


def ingest_error(code: grpc.StatusCode, details: str, retry_after: str | None,
                 address: str) -> DfmeshError:
    """Ingest's failure as the domain error fusion answers with."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return LimitExceeded(details, retry_after_seconds=float(retry_after)
                             if retry_after else None)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"ingest at {address} did not finish in time")
    if code == grpc.StatusCode.UNAVAILABLE:
        return UpstreamUnavailable(f"ingest service unavailable at {address}: {details}")
    return UpstreamUnavailable(f"ingest at {address} failed with {code.name}: {details}")
