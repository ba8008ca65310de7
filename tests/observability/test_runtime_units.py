"""The runtime's observability pieces on their own: the JSON log line, the span file, the
micro-batcher's queue time."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from dfmesh.runtime.batching import MicroBatcher
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


async def test_the_micro_batcher_reports_each_request_s_wait_for_its_session_run() -> None:
    """Queue time (deepfake_queue_seconds, an HPA input) includes the wait at the batcher: a
    request whose shapes cannot join the running batch waits for that run to finish."""
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.3)
        return {"logit": feeds["x"].sum(axis=1)}

    batcher = MicroBatcher(run, window_seconds=0.0, max_rows=8, label="test")
    first = asyncio.create_task(batcher.predict_timed({"x": np.ones((2, 3), np.float32)}))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(batcher.predict_timed({"x": np.ones((1, 5), np.float32)}))
    (out1, wait1), (out2, wait2) = await asyncio.gather(first, second)
    assert out1["logit"].tolist() == [3.0, 3.0] and out2["logit"].tolist() == [5.0]
    assert wait1 < 0.05
    assert 0.2 <= wait2 < 1.0
