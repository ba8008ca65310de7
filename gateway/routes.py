"""The HTTP API. Handlers translate HTTP <-> the analysis functions; nothing else."""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.analyses import Admission, new_analysis_id, run_analysis, run_spooled, running_snapshot
from gateway.errors import ApiError
from gateway.fusion import FusionClient
from gateway.models import AnalysisAccepted, AnalysisStatus, ErrorBody
from gateway.settings import GatewaySettings
from gateway.store import AnalysisStore
from gateway.uploads import MultipartFileStream, check_declared_length

router = APIRouter()

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "a video, audio file or image; the type is read from its "
                                "bytes, not its name"}}}}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "larger than DFMESH_MAX_UPLOAD_BYTES"},
    415: {"model": ErrorBody, "description": "not a video, audio or image file"},
    422: {"model": ErrorBody, "description": "no file field, empty, undecodable, too long, "
                                             "or nothing usable in it"},
    429: {"model": ErrorBody, "description": "too many analyses at once; see Retry-After"},
    503: {"model": ErrorBody, "description": "the analysis service is unavailable"},
}


def _state(request: Request) -> tuple[GatewaySettings, FusionClient, AnalysisStore, Admission]:
    s = request.app.state
    return s.settings, s.fusion, s.store, s.admission


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


@router.post("/analyze", response_model=AnalysisStatus, responses=ERRORS,
             openapi_extra=UPLOAD_BODY, tags=["analyses"],
             summary="Analyze an upload and answer when done (the first design's contract)")
async def analyze(request: Request) -> dict[str, Any]:
    """The upload streams to fusion as it arrives, in chunks; the reply comes when the
    analysis completes, with `result.verdict` and `result.confidence`."""
    settings, fusion, store, admission = _state(request)
    check_declared_length(request, settings.max_upload_bytes)
    admission.acquire()
    try:
        upload = MultipartFileStream(request, "file", max_bytes=settings.max_upload_bytes,
                                     chunk_bytes=settings.upload_chunk_bytes)
        filename, content_type = await upload.open()
        head = await upload.sniff()
        analysis_id = new_analysis_id()
        await store.create(analysis_id, running_snapshot(analysis_id))
        return await run_analysis(
            fusion, store, analysis_id=analysis_id, filename=filename,
            content_type=upload.media_type or content_type, declared_size=0,
            chunks=_prepend(head, upload.chunks()))
    finally:
        admission.release()


async def _spool_upload(upload: MultipartFileStream, directory: Path | None) -> Path:
    """Write the upload to a temp file: the request ends before the analysis does."""
    fd, name = tempfile.mkstemp(prefix="dfmesh-upload-", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            await asyncio.to_thread(f.write, await upload.sniff())
            async for chunk in upload.chunks():
                await asyncio.to_thread(f.write, chunk)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ApiError(503, "no_space", "the gateway has no disk space left to hold the "
                           "upload (DFMESH_SPOOL_DIR is full); try again shortly",
                           retry_after=5) from None
        raise
    return path


@router.post("/v1/analyses", status_code=202, response_model=AnalysisAccepted,
             responses=ERRORS, openapi_extra=UPLOAD_BODY, tags=["analyses"],
             summary="Start an analysis; follow it with GET or the events stream")
async def start_analysis(request: Request) -> JSONResponse:
    """Answers 202 with the analysis id once the upload has arrived (it is spooled to a
    temp file, removed when the analysis ends) and been checked."""
    settings, fusion, store, admission = _state(request)
    check_declared_length(request, settings.max_upload_bytes)
    admission.acquire()
    spool: Path | None = None
    try:
        upload = MultipartFileStream(request, "file", max_bytes=settings.max_upload_bytes,
                                     chunk_bytes=settings.upload_chunk_bytes)
        filename, content_type = await upload.open()
        spool = await _spool_upload(upload, settings.spool_dir)
        analysis_id = new_analysis_id()
        await store.create(analysis_id, running_snapshot(analysis_id))
    except BaseException:
        admission.release()
        if spool is not None:
            spool.unlink(missing_ok=True)
        raise
    task = asyncio.create_task(run_spooled(
        fusion, store, admission, analysis_id=analysis_id, spool=spool, filename=filename,
        content_type=upload.media_type or content_type, size=upload.size,
        chunk_bytes=settings.upload_chunk_bytes))
    tasks: set[asyncio.Task] = request.app.state.tasks
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    status_url = f"/v1/analyses/{analysis_id}"
    body = AnalysisAccepted(analysisId=analysis_id, status="running", statusUrl=status_url,
                            eventsUrl=status_url + "/events")
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": status_url})


async def _snapshot_or_404(store: AnalysisStore, analysis_id: str) -> dict[str, Any]:
    snapshot = await store.snapshot(analysis_id)
    if snapshot is None:
        raise ApiError(404, "not_found", f"no analysis {analysis_id!r}: it never existed or "
                                         "its result has expired")
    return snapshot


async def existing_analysis(analysis_id: str, request: Request) -> str:
    """The path's analysis id, checked before a streaming response starts (404)."""
    await _snapshot_or_404(request.app.state.store, analysis_id)
    return analysis_id


@router.get("/v1/analyses/{analysis_id}", response_model=AnalysisStatus, tags=["analyses"],
            responses={404: {"model": ErrorBody}}, summary="An analysis's state or result")
async def get_analysis(analysis_id: str, request: Request) -> dict[str, Any]:
    return await _snapshot_or_404(request.app.state.store, analysis_id)


@router.get("/status/{analysis_id}", response_model=AnalysisStatus, tags=["analyses"],
            responses={404: {"model": ErrorBody}}, summary="Alias of GET /v1/analyses/{id}")
async def get_status(analysis_id: str, request: Request) -> dict[str, Any]:
    return await _snapshot_or_404(request.app.state.store, analysis_id)


@router.get("/v1/analyses/{analysis_id}/events", response_class=EventSourceResponse,
            tags=["analyses"],
            responses={404: {"model": ErrorBody, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}},
            summary="Server-sent events: progress in order, then `result` or `error`")
async def analysis_events(
    analysis_id: Annotated[str, Depends(existing_analysis)], request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Events `progress` ({stage, stageName, percent, message, branch}), then one `result`
    (the full result) or `error` ({code, message, httpStatus}). Each has an id; a
    reconnecting EventSource resumes after Last-Event-ID."""
    store: AnalysisStore = request.app.state.store
    start = int(last_event_id) + 1 if last_event_id and last_event_id.isdigit() else 0
    async for index, event in store.follow(analysis_id, start):
        yield ServerSentEvent(event=event["type"], data=event["data"], id=str(index))


@router.get("/healthz", tags=["operations"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}},
            summary="Ready when fusion answers SERVING (and Redis, when configured, answers)")
async def readyz(request: Request) -> JSONResponse:
    settings, fusion, store, _ = _state(request)
    fusion_ok, store_ok = await asyncio.gather(
        fusion.serving(settings.readiness_timeout_seconds), store.ping())
    body = {"status": "ready" if fusion_ok and store_ok else "not ready",
            "fusion": "SERVING" if fusion_ok else "not serving",
            "store": "ok" if store_ok else "unreachable"}
    return JSONResponse(body, status_code=200 if fusion_ok and store_ok else 503)


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}})
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

