"""The runtime's logging and tracing pieces on their own: the JSON log line, the span file."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from dfmesh.runtime.logging import JsonFormatter, analysis_id_var
from dfmesh.runtime.tracing import JsonLinesSpanExporter, trace_file_for


def _provider(service: str, path: Path) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(str(path))))
    return provider


def test_a_log_line_has_the_operator_fields_and_the_stack_stays_in_it(tmp_path: Path) -> None:
    tracer = _provider("visual", tmp_path / "spans.jsonl").get_tracer("test")
    record_logger = logging.getLogger("test.json")
    formatter = JsonFormatter("visual")
    token = analysis_id_var.set("a1b2")
    try:
        with tracer.start_as_current_span("work") as span:
            try:
                raise ValueError("model output has the wrong shape")
            except ValueError:
                record = record_logger.makeRecord(
                    "test.json", logging.ERROR, __file__, 1, "failed: %s", ("visual",),
                    exc_info=sys.exc_info(), extra={"branch": "visual"})
            entry = json.loads(formatter.format(record))
            context = span.get_span_context()
    finally:
        analysis_id_var.reset(token)
    assert entry["service"] == "visual" and entry["severity"] == "ERROR"
    assert entry["message"] == "failed: visual" and entry["branch"] == "visual"
    assert entry["timestamp"].endswith("Z")
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")
    assert entry["analysis_id"] == "a1b2"
    assert "Traceback" in entry["stack"] and "wrong shape" in entry["stack"]


def test_exporters_can_share_one_span_file(tmp_path: Path) -> None:
    """Two exporters with their own O_APPEND descriptors, as two processes of `dfmesh up`
    without {service} in DFMESH_TRACE_FILE: every line stays whole."""
    path = tmp_path / "all.jsonl"
    tracers = [_provider(name, path).get_tracer("test") for name in ("fusion", "ingest")]
    for i in range(50):
        for tracer in tracers:
            with tracer.start_as_current_span(f"span-{i}") as span:
                span.set_attribute("payload", "x" * 5000)  # lines longer than a pipe buffer
    lines = path.read_text().splitlines()
    assert len(lines) == 100
    services = [json.loads(line)["resource"]["attributes"]["service.name"] for line in lines]
    assert services.count("fusion") == services.count("ingest") == 50


def test_a_service_placeholder_gives_one_file_per_service() -> None:
    assert trace_file_for("mri", "/tmp/t/{service}.jsonl") == "/tmp/t/mri.jsonl"
    assert trace_file_for("mri", "/tmp/t/all.jsonl") == "/tmp/t/all.jsonl"
