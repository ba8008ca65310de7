"""Load against the REST gateway (and fusion's gRPC port) on loopback, bounded in count and
time: concurrent clients below and above the configured concurrency limit, with memory per
service read from /proc at the start, middle and end.

    python -m bench.load_test --long                  # starts its own mesh + gateway, 500 requests
    python -m bench.load_test --url http://127.0.0.1:8080 --requests 200 --pid gateway=1234 ...

What it checks, and reports as JSON (and a short table):
- below the limit (concurrency == the gateway's DFMESH_MAX_CONCURRENT_ANALYSES) every
  request completes with 200;
- above it the excess is refused at once with 429 and Retry-After (REST) or
  RESOURCE_EXHAUSTED with a retry-after trailer (gRPC), never a timeout, a 5xx or a hang;
- resident memory of every service at start, middle and end (flat = the end within a
  margin of the middle).

Uploads are small still images (PNG), each made unique by bytes after its IEND chunk (which
decoders ignore) so fusion's result cache cannot answer for the mesh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc import aio

from bench.common import proc_memory_mib
from deepfake.v1 import media_pb2, orchestrator_pb2, orchestrator_pb2_grpc

REQUEST_TIMEOUT_SECONDS = 120.0
QUICK = {"requests": 40, "concurrency_above": 6, "grpc_requests": 12}
LONG = {"requests": 500, "concurrency_above": 8, "grpc_requests": 60}


def make_image(out: Path) -> Path:
    """A 160x120 test-pattern PNG (ffmpeg's testsrc2)."""
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f",
                    "lavfi", "-i", "testsrc2=size=160x120:rate=1", "-frames:v", "1", str(out)],
                   check=True, timeout=60, capture_output=True)
    return out


def unique(payload: bytes) -> bytes:
    """The same picture with different bytes: a distinct sha256 per request."""
    return payload + uuid.uuid4().bytes


@dataclass
class Phase:
    """What one phase of the load did."""

    name: str
    concurrency: int
    requests: int
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    retry_after: list[str] = field(default_factory=list)
    latency_ok_ms: dict[str, float] = field(default_factory=dict)
    slowest_refusal_ms: float = 0.0
    throughput_per_s: float = 0.0


def _latency_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 1),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "max": round(ordered[-1], 1)}


async def rest_phase(url: str, image: bytes, name: str, requests: int,
                     concurrency: int) -> Phase:
    """`requests` POST /analyze from `concurrency` clients, each waiting for its answer."""
    phase = Phase(name, concurrency, requests)
    statuses: Counter[str] = Counter()
    ok_ms: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                try:
                    reply = await http.post("/analyze", files={
                        "file": ("still.png", unique(image), "image/png")})
                except httpx.TimeoutException:
                    statuses["timeout"] += 1
                    continue
                except httpx.TransportError as exc:
                    statuses[f"transport:{type(exc).__name__}"] += 1
                    continue
                ms = (time.perf_counter() - start) * 1000
                statuses[str(reply.status_code)] += 1
                if reply.status_code == 200:
                    ok_ms.append(ms)
                elif reply.status_code == 429:
                    phase.retry_after.append(reply.headers.get("retry-after", ""))
                    phase.slowest_refusal_ms = max(phase.slowest_refusal_ms, ms)
                    await asyncio.sleep(0.05)  # a client that backs off a little

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    phase.seconds = round(time.perf_counter() - start, 2)
    phase.statuses = dict(statuses)
    phase.latency_ok_ms = _latency_summary(ok_ms)
    phase.throughput_per_s = round(len(ok_ms) / phase.seconds, 2) if phase.seconds else 0.0
    return phase


async def grpc_phase(address: str, image: bytes, requests: int, concurrency: int) -> Phase:
    """The same above the limit straight to fusion: RESOURCE_EXHAUSTED + retry-after."""
    phase = Phase("grpc above limit", concurrency, requests)
    statuses: Counter[str] = Counter()
    ok_ms: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def one(stub: orchestrator_pb2_grpc.OrchestratorServiceStub) -> None:
        data = unique(image)
        call = stub.Analyze(timeout=REQUEST_TIMEOUT_SECONDS)
        start = time.perf_counter()
        await call.write(orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader(
            upload=media_pb2.UploadHeader(filename="still.png", declared_size=len(data)))))
        sent = False
        try:
            while (event := await call.read()) is not aio.EOF:
                if not sent:
                    await call.write(orchestrator_pb2.AnalyzeRequest(data=data))
                    await call.done_writing()
                    sent = True
                del event
        except (aio.AioRpcError, aio.UsageError, asyncio.InvalidStateError):
            pass
        code = await call.code()
        statuses[code.name] += 1
        if code == grpc.StatusCode.OK:
            ok_ms.append((time.perf_counter() - start) * 1000)
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            trailers = dict(await call.trailing_metadata() or ())
            phase.retry_after.append(str(trailers.get("retry-after", "")))
            await asyncio.sleep(0.05)

    async def client() -> None:
        async with aio.insecure_channel(address) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await one(stub)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    phase.seconds = round(time.perf_counter() - start, 2)
    phase.statuses = dict(statuses)
    phase.latency_ok_ms = _latency_summary(ok_ms)
    phase.throughput_per_s = round(len(ok_ms) / phase.seconds, 2) if phase.seconds else 0.0
    return phase


def memory(pids: dict[str, int]) -> dict[str, float]:
    """Resident MiB per service now."""
    return {name: round(proc_memory_mib(pid)[0], 1) for name, pid in pids.items()}


async def run_load(url: str, image: bytes, *, limit: int, requests: int,
                   concurrency_above: int, pids: dict[str, int], fusion_addr: str = "",
                   grpc_requests: int = 0) -> dict:
    """The whole run: warm-up, below the limit (half the requests), above it (the other
    half), then gRPC above the limit; memory sampled at start, middle and end."""
    await rest_phase(url, image, "warm-up", limit, limit)
    report: dict = {"limit": limit, "memory_mib": {"start": memory(pids)}}
    below = await rest_phase(url, image, "below limit", requests // 2, limit)
    report["memory_mib"]["middle"] = memory(pids)
    above = await rest_phase(url, image, "above limit", requests - requests // 2,
                             concurrency_above)
    phases = [below, above]
    if fusion_addr and grpc_requests:
        phases.append(await grpc_phase(fusion_addr, image, grpc_requests, concurrency_above))
    report["memory_mib"]["end"] = memory(pids)
    report["phases"] = [asdict(p) for p in phases]
    report["requests_total"] = sum(p.requests for p in phases)
    return report


def table(report: dict) -> str:
    lines = [f"concurrency limit {report['limit']}",
             "| phase | clients | requests | seconds | statuses | ok/s | ok median / p95 ms |",
             "|---|---|---|---|---|---|---|"]
    for p in report["phases"]:
        lat = p["latency_ok_ms"]
        lines.append(f"| {p['name']} | {p['concurrency']} | {p['requests']} | {p['seconds']} | "
                     f"{p['statuses']} | {p['throughput_per_s']} | "
                     f"{lat.get('median', '-')} / {lat.get('p95', '-')} |")
    lines += ["", "| service | RSS start MiB | middle | end |", "|---|---|---|---|"]
    mem = report["memory_mib"]
    for name in mem["start"]:
        lines.append(f"| {name} | {mem['start'][name]} | {mem['middle'].get(name)} | "
                     f"{mem['end'].get(name)} |")
    return "\n".join(lines)


def _own_mesh_run(args: argparse.Namespace, sizes: dict[str, int], image: bytes) -> dict:
    """Start the mesh (dfmesh.launcher; the shipped models unless
    DFMESH_TEST_SHIPPED_MODELS=0) and a gateway with limit `args.limit` on every hop, run,
    stop."""
    from devkit.known_models import build_test_repo
    from dfmesh.launcher import isolated_env, start_gateway, start_mesh

    limits = {"DFMESH_MAX_CONCURRENT_ANALYSES": str(args.limit),
              "DFMESH_MAX_CONCURRENT_INGESTS": str(args.limit),
              "DFMESH_BUSY_RETRY_SECONDS": "2", "DFMESH_LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="dfmesh-load-") as tmp:
        repo = Path(tmp) / "models"
        build_test_repo(repo, prefer_shipped=os.environ.get("DFMESH_TEST_SHIPPED_MODELS") != "0")
        mesh = start_mesh(Path(tmp) / "logs", isolated_env(DFMESH_MODEL_REPO=str(repo), **limits))
        try:
            gateway, url = start_gateway(mesh.env, mesh.logs, **limits)
            mesh.extra.append(gateway)
            pids = {p.name: p.popen.pid for p in mesh.processes + mesh.extra}
            return asyncio.run(run_load(url, image, limit=args.limit, pids=pids,
                                        fusion_addr=mesh.fusion_addr, **sizes))
        finally:
            mesh.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running gateway; without it a mesh is started")
    parser.add_argument("--fusion", default="", help="fusion's gRPC address for the gRPC phase")
    parser.add_argument("--pid", action="append", default=[], help="name=PID to measure")
    parser.add_argument("--limit", type=int, default=2, help="the gateway's concurrency limit")
    parser.add_argument("--long", action="store_true", help=f"{LONG['requests']} requests")
    parser.add_argument("--requests", type=int, help="override the request count")
    parser.add_argument("--out", type=Path, default=Path("artifacts/reliability/load.json"))
    args = parser.parse_args(argv)
    sizes = dict(LONG if args.long else QUICK)
    if args.requests:
        sizes["requests"] = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        image = make_image(Path(tmp) / "still.png").read_bytes()
    if args.url:
        pids = dict(item.split("=", 1) for item in args.pid)
        report = asyncio.run(run_load(args.url, image, limit=args.limit,
                                      pids={k: int(v) for k, v in pids.items()},
                                      fusion_addr=args.fusion, **sizes))
    else:
        report = _own_mesh_run(args, sizes, image)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
