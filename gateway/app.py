"""The FastAPI application: the API, metrics middleware, error handling, the web UI."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dfmesh.runtime import metrics
from dfmesh.runtime.channels import create_channel
from gateway.analyses import Admission
from gateway.auth import ApiKeyMiddleware
from gateway.errors import ApiError
from gateway.fusion import FusionClient
from gateway.models import with_event_schemas
from gateway.routes import router
from gateway.settings import GatewaySettings
from gateway.store import AnalysisStore, MemoryStore, RedisStore

log = logging.getLogger(__name__)

UI_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Web UI not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>The web UI has not been built</h1>
<p>The gateway is running and its API works (see <a href="/docs">/docs</a>), but there is no
built web UI at <code>{dist}</code>.</p>
<p>Build it with Node.js 20+ and npm: run <code>scripts/setup.sh</code>, or
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then reload this page.</p>
</body></html>
"""


def make_store(settings: GatewaySettings) -> AnalysisStore:
    """Redis when DFMESH_REDIS_URL is set (shared by replicas), else this process's memory."""
    ttl, running_ttl = settings.result_ttl_seconds, settings.analysis_timeout_seconds
    if settings.redis_url:
        return RedisStore(settings.redis_url, result_ttl_seconds=ttl,
                          running_ttl_seconds=running_ttl)
    return MemoryStore(result_ttl_seconds=ttl, running_ttl_seconds=running_ttl)


class HttpMetricsMiddleware:
    """Counts requests by route template, method and status; times them to the last byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(template, method, str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(template, method).observe(
                time.perf_counter() - start)


def error_response(error: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"status": "error", "code": error.code, "error": error.message,
                            "percent": 0, "stageName": "Queued", "result": None}
    return JSONResponse(body, status_code=error.status, headers=error.headers())


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def redis_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.warning("analysis state store unavailable: %s", exc)
    return error_response(ApiError(503, "store_unavailable",
                                   "the analysis state store (Redis) is unavailable; "
                                   "try again shortly", retry_after=5))


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(ApiError(500, "internal",
                                   "internal error; the gateway log has the details"))


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway application for `settings`; gRPC and Redis clients open in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = create_channel(settings.fusion_addr, settings)
        app.state.settings = settings
        retry_after = math.ceil(settings.busy_retry_seconds)  # HTTP's Retry-After is whole
        app.state.fusion = FusionClient(channel, timeout_seconds=settings.analysis_timeout_seconds,
                                        retry_after_seconds=retry_after)
        app.state.store = make_store(settings)
        app.state.admission = Admission(settings.max_concurrent_analyses, retry_after)
        app.state.tasks = set()
        log.info("gateway ready to accept requests",
                 extra={"fusion": settings.fusion_addr,
                        "store": "redis" if settings.redis_url else "memory"})
        try:
            yield
        finally:
            for task in list(app.state.tasks):
                task.cancel()
            await asyncio.gather(*app.state.tasks, return_exceptions=True)
            await app.state.store.close()
            await channel.close()

    app = FastAPI(
        title="Deepfake detection gateway",
        version="1.0.0",
        description="Upload a clip, get a calibrated verdict with a per-branch breakdown. "
                    "`POST /analyze` answers when done; `POST /v1/analyses` answers at once "
                    "and the analysis is followed with GET or server-sent events.",
        lifespan=lifespan,
    )
    default_openapi = app.openapi
    app.openapi = lambda: with_event_schemas(default_openapi())  # type: ignore[method-assign]
    keys = settings.client_keys()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys,
                           rate_per_minute=settings.rate_limit_per_minute,
                           burst=settings.rate_limit_burst)
        log.info("API keys required", extra={"clients": len(keys)})
    else:
        log.warning("authentication is off: no API key configured (DFMESH_API_KEYS); "
                    "anyone who reaches this port can start analyses")
    app.add_middleware(HttpMetricsMiddleware)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RedisError, redis_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.include_router(router)

    index = settings.web_dist / "index.html"
    if index.is_file():
        app.mount("/", StaticFiles(directory=settings.web_dist, html=True), name="web")
    else:
        @app.get("/", include_in_schema=False)
        async def ui_not_built() -> HTMLResponse:
            return HTMLResponse(UI_NOT_BUILT.format(dist=settings.web_dist), status_code=503)
    return app
