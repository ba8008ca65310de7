"""Running analyses: admission against the concurrency limit, the call to fusion, and the
progress and outcome recorded in the store in the REST shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dfmesh.runtime import metrics
from dfmesh.runtime.logging import analysis_id_var
from dfmesh.runtime.tracing import span
from gateway.errors import ApiError
from gateway.fusion import FusionClient
from gateway.store import AnalysisStore

log = logging.getLogger(__name__)


def new_analysis_id() -> str:
    return uuid.uuid4().hex


def running_snapshot(analysis_id: str, percent: float = 0.0, stage_name: str = "Queued",
                     message: str = "") -> dict[str, Any]:
    """The first source design's shape while an analysis runs."""
    return {"analysisId": analysis_id, "status": "running", "percent": percent,
            "stageName": stage_name, "message": message, "result": None, "error": None}


def complete_snapshot(analysis_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"analysisId": analysis_id, "status": "complete", "percent": 100.0,
            "stageName": "Final classification", "message": "", "result": result,
            "error": None}


def error_snapshot(analysis_id: str, error: ApiError, last: dict[str, Any]) -> dict[str, Any]:
    return {"analysisId": analysis_id, "status": "error", "percent": last.get("percent", 0.0),
            "stageName": last.get("stageName", "Queued"), "message": "", "result": None,
            "error": error.message, "errorCode": error.code, "httpStatus": error.status}


class Admission:
    """At most `limit` analyses at once in this replica; the next one gets 429."""

    def __init__(self, limit: int, retry_after_seconds: int) -> None:
        self.limit = limit
        self.retry_after = retry_after_seconds
        self.active = 0

    def acquire(self) -> None:
        if self.active >= self.limit:
            raise ApiError(429, "busy",
                           f"{self.active} analyses are already running, the most this server "
                           f"takes at once; try again in {self.retry_after} s",
                           retry_after=self.retry_after)
        self.active += 1
        metrics.GATEWAY_ANALYSES_INFLIGHT.set(self.active)

    def release(self) -> None:
        self.active -= 1
        metrics.GATEWAY_ANALYSES_INFLIGHT.set(self.active)


async def run_analysis(fusion: FusionClient, store: AnalysisStore, *, analysis_id: str,
                       filename: str, content_type: str, declared_size: int,
                       chunks: AsyncIterator[bytes]) -> dict[str, Any]:
    """Run one analysis, recording every event; return the final snapshot. Errors are
    recorded too, then raised as ApiError."""
    analysis_id_var.set(analysis_id)
    last = running_snapshot(analysis_id)

    async def on_progress(progress: dict[str, Any]) -> None:
        nonlocal last
        last = running_snapshot(analysis_id, progress["percent"], progress["stageName"],
                                progress["message"])
        await store.publish(analysis_id, {"type": "progress", "data": progress}, last)

    try:
        with span("gateway.analysis", analysis__id=analysis_id):
            result = await fusion.analyze(analysis_id=analysis_id, filename=filename,
                                          content_type=content_type, declared_size=declared_size,
                                          chunks=chunks, on_progress=on_progress)
    except ApiError as exc:
        metrics.GATEWAY_ANALYSES.labels(exc.code).inc()
        log.info("analysis failed: %s", exc.message, extra={"code": exc.code})
        await store.publish(analysis_id, {"type": "error", "data": exc.to_dict()},
                            error_snapshot(analysis_id, exc, last))
        raise
    except asyncio.CancelledError:
        # The client went away (/analyze) or the gateway is stopping: say so to followers.
        cancelled = ApiError(499, "cancelled", "the analysis was cancelled before it finished")
        with contextlib.suppress(Exception):
            await asyncio.shield(store.publish(
                analysis_id, {"type": "error", "data": cancelled.to_dict()},
                error_snapshot(analysis_id, cancelled, last)))
        raise
    except Exception:
        log.exception("analysis failed unexpectedly")
        internal = ApiError(500, "internal", "the analysis failed; the gateway log has details")
        metrics.GATEWAY_ANALYSES.labels(internal.code).inc()
        await store.publish(analysis_id, {"type": "error", "data": internal.to_dict()},
                            error_snapshot(analysis_id, internal, last))
        raise internal from None
    metrics.GATEWAY_ANALYSES.labels("complete").inc()
    final = complete_snapshot(analysis_id, result)
    await store.publish(analysis_id, {"type": "result", "data": result}, final)
    log.info("analysis complete", extra={"verdict": result["verdict"],
                                         "prob_fake": result["probFake"]})
    return final


async def read_spool(path: Path, chunk_bytes: int) -> AsyncIterator[bytes]:
    """A spooled upload in chunks, read off the event loop."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, chunk_bytes):
            yield chunk


async def run_spooled(fusion: FusionClient, store: AnalysisStore, admission: Admission, *,
                      analysis_id: str, spool: Path, filename: str, content_type: str,
                      size: int, chunk_bytes: int) -> None:
    """The background half of POST /v1/analyses: stream the spooled upload to fusion, then
    remove the spool file and free the admission slot, whatever happened."""
    try:
        await run_analysis(fusion, store, analysis_id=analysis_id, filename=filename,
                           content_type=content_type, declared_size=size,
                           chunks=read_spool(spool, chunk_bytes))
    except ApiError:
        pass  # recorded in the store for GET and SSE
    finally:
        admission.release()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool)
