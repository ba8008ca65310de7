"""One traced mesh for the observability tests: every service as a process with tracing to
a JSON-lines file per service and Prometheus on grpc port + 1000, a gateway with an API
key. Two analyses: one through the async REST flow with the early exit off (every branch
takes part) whose upload carries a marker in its name and its bytes (the logs must not),
then one straight to fusion over gRPC with the early exit asked for per request (the gate
ends it; the mesh's exit threshold is set so that it does)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deepfake.v1 import orchestrator_pb2
from dfmesh.client import Client
from tests.gateway_support import poll_until_finished
from tests.media import make_clip
from tests.mesh import GRPC_SERVICES, Mesh, Process, start_gateway, start_mesh, stop

MARKER = "ZQXJ-marker-5be1c0de"
"""In the upload's file name and inside its bytes (container metadata)."""
API_KEY = "obs-test-key-9f27c1d4e8b3a605"
TRACED_SERVICES = ("gateway", *GRPC_SERVICES)


@dataclass
class TracedMesh:
    mesh: Mesh
    gateway: Process
    url: str
    traces: Path

    def metrics_port(self, service: str) -> int:
        return next(p.port for p in self.mesh.processes if p.name == service) + 1000

    def log_lines(self) -> dict[str, list[str]]:
        """Every service's log (stdout and stderr) as lines."""
        return {p.name: p.log.read_text(errors="replace").splitlines()
                for p in [*self.mesh.processes, self.gateway]}


@dataclass
class Analysis:
    analysis_id: str
    post_headers: httpx.Headers
    final: dict[str, Any]
    upload: Path


def read_spans(traces: Path) -> list[dict[str, Any]]:
    """Every span every service exported (one JSON object per line)."""
    spans = []
    for path in sorted(traces.glob("*.jsonl")):
        spans += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return spans


def service_of(span: dict[str, Any]) -> str:
    return span["resource"]["attributes"]["service.name"]


def hex_id(value: str) -> str:
    """The SDK writes ids as 0x-prefixed hex."""
    return value.removeprefix("0x")


@pytest.fixture(scope="package")
def traced_mesh(shared_data: Path) -> Iterator[TracedMesh]:
    with tempfile.TemporaryDirectory(prefix="dfmesh-obs-") as tmp:
        root = Path(tmp)
        traces = root / "traces"
        traces.mkdir()
        # Early exit off: every branch takes part, so the trace must cover all of them.
        mesh = start_mesh(root, DFMESH_TRACING="1",
                          DFMESH_TRACE_FILE=str(traces / "{service}.jsonl"),
                          DFMESH_METRICS_PORT="-1", DFMESH_EARLY_EXIT="false",
                          DFMESH_EARLY_EXIT_THRESHOLD="0.999")
        try:
            gateway, url = start_gateway(mesh.env, mesh.logs,
                                         DFMESH_API_KEYS=f"{API_KEY}=observability-test")
            mesh.extra.append(gateway)
            yield TracedMesh(mesh, gateway, url, traces)
        finally:
            stop(mesh.processes + mesh.extra)


@pytest.fixture(scope="package")
def analysis(traced_mesh: TracedMesh, shared_data: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """One analysis through POST /v1/analyses (the background-task path), polled to its end;
    returns once the spans of every service that took part are in the files."""
    source = shared_data / "talking" / "lipnet__GRID_bbaf2n.mpg"
    clip = make_clip(tmp_path_factory.mktemp("media") / f"{MARKER}.mp4", source=source,
                     seconds=2.0, size=(320, 240), extra=["-metadata", f"title={MARKER}"])
    assert MARKER.encode() in clip.read_bytes()
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(timeout=120.0, headers=headers) as client, clip.open("rb") as f:
        reply = client.post(traced_mesh.url + "/v1/analyses",
                            files={"file": (clip.name, f, "video/mp4")})
        assert reply.status_code == 202, reply.text
        analysis_id = reply.json()["analysisId"]
        final, _ = poll_until_finished(client, traced_mesh.url + reply.json()["statusUrl"])
    assert final["status"] == "complete", final
    wait_for_spans(traced_mesh.traces, set(TRACED_SERVICES))
    return Analysis(analysis_id, reply.headers, final, clip)


def wait_for_spans(traces: Path, services: set[str]) -> None:
    """Until every service in `services` has written spans; the outermost server spans end
    just after the last message, so a little longer."""
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        if {service_of(s) for s in read_spans(traces)} >= services:
            break
        time.sleep(0.2)
    time.sleep(0.5)


@pytest.fixture(scope="package")
def early_exit_result(traced_mesh: TracedMesh, analysis: Analysis
                      ) -> orchestrator_pb2.AnalysisResult:
    """The second analysis (after `analysis`): gRPC to fusion, early exit asked for."""

    async def run() -> orchestrator_pb2.AnalysisResult:
        async with Client(traced_mesh.mesh.fusion_addr) as client:
            return await client.analyze_result(analysis.upload, early_exit=True)

    result = asyncio.run(run())
    assert result.early_exit, result
    wait_for_spans(traced_mesh.traces, set(TRACED_SERVICES))
    return result
