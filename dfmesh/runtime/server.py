"""The grpc.aio server factory and serve loop every service process uses.

A service subclasses `BaseService`, registers its servicers in `register`, loads and warms
up in `load`, and its `__main__` calls `run_service`. Health (grpc.health.v1) stays
NOT_SERVING until `load` has returned, and goes NOT_SERVING again on SIGTERM while
in-flight calls drain for `grace_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dfmesh.runtime import metrics
from dfmesh.runtime.config import ServiceSettings, load_settings
from dfmesh.runtime.errors import ErrorMappingInterceptor, status_for
from dfmesh.runtime.lifeline import exit_with
from dfmesh.runtime.logging import configure_logging
from dfmesh.runtime.tracing import server_interceptors, setup_tracing

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BaseService:
    """What a service process serves. Subclasses set `name` and `health_names` (the full
    gRPC service names they implement, e.g. "deepfake.v1.IngestService")."""

    name: str = ""
    health_names: tuple[str, ...] = ()

    def register(self, server: aio.Server) -> None:
        """Add this service's servicers to `server`."""
        raise NotImplementedError

    async def load(self) -> None:
        """Load models and warm up; the service reports SERVING only after this returns."""

    async def close(self) -> None:
        """Release resources after the server has stopped."""


class MetricsInterceptor(aio.ServerInterceptor):
    """Counts requests by final status and times them; tracks in-flight RPCs."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith("/grpc."):
            return handler
        service = self.service

        def finish(start: float, code: grpc.StatusCode) -> None:
            metrics.INFLIGHT.labels(service, method).dec()
            metrics.REQUESTS.labels(service, method, code.name).inc()
            metrics.REQUEST_SECONDS.labels(service, method).observe(time.perf_counter() - start)

        def final_code(context: aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
            if isinstance(exc, asyncio.CancelledError):
                return grpc.StatusCode.CANCELLED
            code = context.code()
            if isinstance(code, grpc.StatusCode):
                return code
            return status_for(exc)[0] if exc is not None else grpc.StatusCode.OK

        def wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request: Any, context: aio.ServicerContext) -> Any:
                metrics.INFLIGHT.labels(service, method).inc()
                start, exc = time.perf_counter(), None
                try:
                    return await behavior(request, context)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(start, final_code(context, exc))
            return wrapped

        def wrap_stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
            async def wrapped(request: Any, context: aio.ServicerContext):
                metrics.INFLIGHT.labels(service, method).inc()
                start, exc = time.perf_counter(), None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(start, final_code(context, exc))
            return wrapped

        kwargs = dict(request_deserializer=handler.request_deserializer,
                      response_serializer=handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), **kwargs)
        return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), **kwargs)


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """Explicit size limits, keepalive, and a max connection age so that clients reconnect
    (and re-resolve) periodically and new replicas receive traffic."""
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_seconds * 1000)),
        ("grpc.so_reuseport", 0),
    ]


def _server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file:
        return None
    pair = (Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())
    ca = Path(settings.tls_ca_file).read_bytes() if settings.tls_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                       require_client_auth=ca is not None)


@dataclass
class RunningServer:
    """A started server, its bound port and its health servicer."""

    service: BaseService
    server: aio.Server
    port: int
    health: health.aio.HealthServicer

    async def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service.health_names):
            await self.health.set(name, status)
        metrics.READY.labels(self.service.name).set(1 if serving else 0)

    async def drain_and_stop(self, grace: float) -> None:
        """NOT_SERVING first (so balancers stop sending), then let in-flight calls finish."""
        await self.health.enter_graceful_shutdown()
        metrics.READY.labels(self.service.name).set(0)
        await self.server.stop(grace)
        await self.service.close()


async def create_server(service: BaseService, settings: ServiceSettings,
                        port: int | None = None) -> RunningServer:
    """Build, bind and start a server for `service` with health NOT_SERVING.

    `port` overrides the configured port (0 binds an ephemeral one, for tests).
    """
    server = aio.server(
        interceptors=[*server_interceptors(), MetricsInterceptor(service.name),
                      ErrorMappingInterceptor()],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service.register(server)
    reflection.enable_server_reflection(
        (*service.health_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bind_port = settings.grpc_port if port is None else port
    address = f"{settings.host}:{bind_port}"
    creds = _server_credentials(settings)
    bound = (server.add_secure_port(address, creds) if creds
             else server.add_insecure_port(address))
    running_server = RunningServer(service, server, bound, health_servicer)
    await running_server.set_serving(False)
    await server.start()
    return running_server


async def start_service(service: BaseService, settings: ServiceSettings,
                        port: int | None = None) -> RunningServer:
    """Start the server, load the service, then report SERVING."""
    running_server = await create_server(service, settings, port)
    log.info("listening", extra={"port": running_server.port, "health": "NOT_SERVING"})
    try:
        await service.load()
    except BaseException:
        await running_server.server.stop(0)
        raise
    await running_server.set_serving(True)
    log.info("serving", extra={"port": running_server.port})
    return running_server


@asynccontextmanager
async def running(service: BaseService, settings: ServiceSettings,
                  port: int = 0) -> AsyncIterator[RunningServer]:
    """Run `service` for the duration of a block (tests: binds an ephemeral port)."""
    running_server = await start_service(service, settings, port)
    try:
        yield running_server
    finally:
        await running_server.drain_and_stop(grace=1.0)


async def serve(service: BaseService, settings: ServiceSettings) -> None:
    """Serve until SIGTERM or SIGINT, then drain for settings.grace_seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running_server = await start_service(service, settings)
    await stop.wait()
    log.info("draining", extra={"grace_seconds": settings.grace_seconds})
    await running_server.drain_and_stop(settings.grace_seconds)
    log.info("stopped")


S = TypeVar("S", bound=ServiceSettings)


def run_service(factory: Callable[[S], BaseService], settings_cls: type[S]) -> None:
    """A service's `__main__`: settings from the environment, logging, tracing, metrics, serve."""
    settings = load_settings(settings_cls)
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    setup_tracing(settings.service_name, enabled=settings.tracing,
                  otlp_endpoint=settings.otlp_endpoint, trace_file=settings.trace_file)
    metrics.start_metrics_server(settings.effective_metrics_port, settings.host)
    if settings.exit_with_pid:
        exit_with(settings.exit_with_pid, settings.grace_seconds)
    service = factory(settings)
    asyncio.run(serve(service, settings))
