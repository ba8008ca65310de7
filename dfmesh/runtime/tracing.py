"""OpenTelemetry set-up: switched on by DFMESH_TRACING, exporting over OTLP and/or to a file.

One analysis is one trace. Context crosses gRPC hops through the
opentelemetry-instrumentation-grpc interceptors, which `server.create_server` and
`channels.create_channel` install when tracing is on; the gateway's HTTP span comes from
opentelemetry-instrumentation-fastapi (`instrument_fastapi`), and the gateway answers with a
W3C `traceresponse` header carrying the trace id. Inside a process, asyncio tasks copy the
context they are created in, so spans opened in a task created inside a span are its children.

DFMESH_TRACE_FILE appends every finished span as one JSON line (the SDK's span JSON). A
`{service}` in the path becomes the service name (one file per service); without it every
process of `dfmesh up` appends to the same file, one whole line per write (O_APPEND).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

_enabled = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON line to a file; a whole line per write, so several
    processes can share the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            line = json.dumps(json.loads(span.to_json(indent=None)), separators=(",", ":"))
            os.write(self._fd, (line + "\n").encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def trace_file_for(service: str, trace_file: str) -> str:
    """The file a service writes its spans to: `{service}` in the path becomes its name."""
    return trace_file.replace("{service}", service)


def tracing_enabled() -> bool:
    return _enabled


def setup_tracing(service: str, *, enabled: bool, otlp_endpoint: str = "",
                  trace_file: str = "") -> None:
    """Install a global TracerProvider for `service` when enabled (idempotent per process)."""
    global _enabled
    if not enabled or _enabled:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if trace_file:
        # Synchronous: a span is in the file the moment it ends (tests and `tail -f` read it).
        exporter = JsonLinesSpanExporter(trace_file_for(service, trace_file))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True


# Health checks are traced only inside a trace (fusion's check before a branch call is part
# of the analysis); probes, readiness checks and start-up waits would each be a trace of
# their own, every few seconds per pod.
def _traced_client_call(details: Any) -> bool:
    from opentelemetry.instrumentation.grpc.filters import health_check

    return not health_check()(details) or trace.get_current_span().get_span_context().is_valid


def _traced_server_call(details: Any) -> bool:
    from opentelemetry.instrumentation.grpc.filters import health_check

    metadata = getattr(details, "invocation_metadata", None) or ()
    return not health_check()(details) or any(key == "traceparent" for key, _ in metadata)


def server_interceptors() -> list[Any]:
    if not _enabled:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_traced_server_call)]


def client_interceptors() -> list[Any]:
    if not _enabled:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(filter_=_traced_client_call))


UNTRACED_PATHS = "healthz,readyz,metrics,assets"
"""Gateway paths left out of tracing (probes, scrapes, static files)."""


def instrument_fastapi(app: Any) -> None:
    """Trace every HTTP request of a FastAPI app as the root span of its analysis and answer
    with a `traceresponse` header (W3C Trace Context Level 2: 00-<trace id>-<span id>-<flags>).
    A no-op unless tracing is on."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.propagators import (
        TraceResponsePropagator,
        set_global_response_propagator,
    )

    set_global_response_propagator(TraceResponsePropagator())
    # Upload bodies arrive in many ASGI receive events: one span per chunk says nothing.
    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_PATHS,
                                       exclude_spans=["receive", "send"])


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits, or "" outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def _dotted(attributes: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments as span attributes: `model__version` -> `model.version`; None is
    left out."""
    return {k.replace("__", "."): v for k, v in attributes.items() if v is not None}


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (`a__b=1` sets `a.b`)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_dotted(attributes))


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A child span of the current one, current inside the block (`a__b=1` sets `a.b`)."""
    with tracer.start_as_current_span(name) as current:
        if current.is_recording():
            current.set_attributes(_dotted(attributes))
        yield current


tracer = trace.get_tracer("dfmesh")
