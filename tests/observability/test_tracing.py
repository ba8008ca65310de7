"""One analysis through the real mesh is one trace: every service's spans, one root, every
parent present, the trace id returned to the caller and carried by every log line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from tests.mesh import BRANCHES, REPO_ROOT
from tests.observability.conftest import (
    TRACED_SERVICES,
    Analysis,
    TracedMesh,
    hex_id,
    read_spans,
    service_of,
)

pytestmark = pytest.mark.slow


def trace_id_of(analysis: Analysis) -> str:
    """The trace id from the POST's W3C traceresponse header (00-<trace>-<span>-<flags>)."""
    version, trace_id, _span_id, _flags = analysis.post_headers["traceresponse"].split("-")
    assert version == "00" and len(trace_id) == 32
    return trace_id


def test_the_trace_id_comes_back_in_the_response_and_the_result(analysis: Analysis) -> None:
    assert analysis.final["result"]["traceId"] == trace_id_of(analysis)


def test_one_analysis_is_one_trace_over_every_service(traced_mesh: TracedMesh,
                                                      analysis: Analysis) -> None:
    spans = read_spans(traced_mesh.traces)
    trace_id = trace_id_of(analysis)
    tagged = {hex_id(s["context"]["trace_id"]) for s in spans
              if s["attributes"].get("analysis.id") == analysis.analysis_id}
    assert tagged == {trace_id}, "spans of the analysis are spread over several traces"

    ours = [s for s in spans if hex_id(s["context"]["trace_id"]) == trace_id]
    by_service = Counter(service_of(s) for s in ours)
    assert set(by_service) == set(TRACED_SERVICES), by_service

    ids = {hex_id(s["context"]["span_id"]) for s in ours}
    roots = [s for s in ours if not s["parent_id"]]
    assert len(roots) == 1, [r["name"] for r in roots]
    assert service_of(roots[0]) == "gateway" and roots[0]["kind"] == "SpanKind.SERVER"
    orphans = [s["name"] for s in ours if s["parent_id"] and hex_id(s["parent_id"]) not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"


def test_spans_cover_the_stages_with_their_attributes(traced_mesh: TracedMesh,
                                                      analysis: Analysis) -> None:
    trace_id = trace_id_of(analysis)
    ours = [s for s in read_spans(traced_mesh.traces)
            if hex_id(s["context"]["trace_id"]) == trace_id]
    named = {}
    for s in ours:
        named.setdefault(s["name"], []).append(s)
    by_id = {hex_id(s["context"]["span_id"]): s for s in ours}

    for name in ("gateway.analysis", "fusion.analysis", "fusion.ingest", "fusion.branches",
                 "fusion.fuse", "ingest.spool", "ingest.probe", "ingest.decode",
                 "ingest.sample_frames", "ingest.detect_faces", "ingest.audio"):
        assert name in named, f"no {name} span; have {sorted(named)}"

    whole = named["fusion.analysis"][0]["attributes"]
    assert whole["analysis.id"] == analysis.analysis_id
    assert (whole["clip.width"], whole["clip.height"]) == (320, 240)
    assert whole["clip.duration_seconds"] == pytest.approx(2.0, abs=0.2)
    assert whole["early_exit"] is False and whole["early_exit.enabled"] is False
    assert whole["degraded"] is False and list(whole["missing_branches"]) == []
    assert whole["verdict"] == analysis.final["result"]["verdict"].upper()

    faces = named["ingest.detect_faces"]
    assert len(faces) == named["ingest.sample_frames"][0]["attributes"]["frames"]

    branches_span = named["fusion.branches"][0]
    assert by_id[hex_id(branches_span["parent_id"])]["name"] == "fusion.analysis"
    for branch in BRANCHES:
        call = named[f"fusion.call.{branch}"][0]
        assert hex_id(call["parent_id"]) in by_id
        assert call["attributes"]["branch.state"] == "ok", call["attributes"]
        reported = analysis.final["result"]["branches"][branch]
        assert call["attributes"]["model.version"] == reported["modelVersion"]
        inference = named[f"{branch}.inference"][0]
        assert service_of(inference) == branch
        assert inference["attributes"]["model.name"] == reported["model"]
        assert inference["attributes"]["model.provider"] == "CPUExecutionProvider"
        # inference -> the branch's RPC span -> fusion's client span -> fusion.call.<branch>
        chain, span = [], inference
        while span["parent_id"]:
            span = by_id[hex_id(span["parent_id"])]
            chain.append(span["name"])
        assert f"fusion.call.{branch}" in chain and chain[-1] == roots_name(ours)


def roots_name(spans: list[dict]) -> str:
    return next(s["name"] for s in spans if not s["parent_id"])


def test_every_log_line_of_the_analysis_carries_its_trace_id(traced_mesh: TracedMesh,
                                                             analysis: Analysis) -> None:
    trace_id = trace_id_of(analysis)
    services_logging = set()
    for service, lines in traced_mesh.log_lines().items():
        for line in lines:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("analysis_id") != analysis.analysis_id:
                continue
            services_logging.add(service)
            assert entry.get("trace_id") == trace_id, (service, entry)
    assert {"gateway", "fusion", "ingest", *BRANCHES} <= services_logging, services_logging


def test_an_early_exit_over_grpc_is_one_trace_rooted_at_fusion(
        traced_mesh: TracedMesh, early_exit_result) -> None:
    trace_id = early_exit_result.trace_id
    assert len(trace_id) == 32
    spans = read_spans(traced_mesh.traces)
    tagged = {hex_id(s["context"]["trace_id"]) for s in spans
              if s["attributes"].get("analysis.id") == early_exit_result.analysis_id}
    assert tagged == {trace_id}
    ours = [s for s in spans if hex_id(s["context"]["trace_id"]) == trace_id]
    roots = [s for s in ours if not s["parent_id"]]
    assert [(service_of(r), r["kind"]) for r in roots] == [("fusion", "SpanKind.SERVER")]
    ids = {hex_id(s["context"]["span_id"]) for s in ours}
    assert all(hex_id(s["parent_id"]) in ids for s in ours if s["parent_id"])
    names = {s["name"] for s in ours}
    assert "fusion.call.tiny_gate" in names and "tiny_gate.inference" in names
    assert not {f"fusion.call.{b}" for b in BRANCHES if b != "tiny_gate"} & names
    whole = next(s for s in ours if s["name"] == "fusion.analysis")["attributes"]
    assert whole["early_exit"] is True and whole["early_exit.enabled"] is True
    assert whole["fusion.head"] == "early_exit:tiny_gate"


def test_trace_tree_prints_the_analysis_from_the_span_files(traced_mesh: TracedMesh,
                                                            analysis: Analysis) -> None:
    """The tool docs/OPERATIONS.md tells operators to use on DFMESH_TRACE_FILE output."""
    files = sorted(str(p) for p in traced_mesh.traces.glob("*.jsonl"))
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "trace_tree.py"), *files,
                          "--analysis", analysis.analysis_id], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0].startswith(f"trace {trace_id_of(analysis)}: ")
    assert "gateway: POST /v1/analyses" in out[1]
    body = "\n".join(out)
    for service in TRACED_SERVICES:
        assert f" {service}: " in body
    assert "early_exit=False" in body and "model.provider=CPUExecutionProvider" in body


def test_health_checks_outside_an_analysis_make_no_traces(traced_mesh: TracedMesh,
                                                          analysis: Analysis) -> None:
    """The gateway's readiness check calls fusion's Health/Check with no trace around it
    (as probes do): no span. Fusion's checks before branch calls are inside the analysis."""
    assert httpx.get(traced_mesh.url + "/readyz", timeout=10.0).status_code == 200
    time.sleep(0.5)
    health = [s for s in read_spans(traced_mesh.traces)
              if s["name"] == "/grpc.health.v1.Health/Check"]
    assert health, "fusion's checks before branch calls should be in the analysis's trace"
    assert all(s["parent_id"] for s in health), "a health check started a trace of its own"
