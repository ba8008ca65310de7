"""The whole mesh as real processes on loopback, for end-to-end tests.

`local_mesh` (session-scoped) starts ingest, the six branches and fusion with
`python -m services.<name>` on free ports, waits for gRPC health SERVING and yields their
addresses; `start_gateway` adds a `python -m gateway` process. The model repository holds
small real ONNX models whose logit is a known function of the input and a real
logistic-regression fusion bundle (tests/fusion_support.build_test_repo; see model_repo).
The verdicts come from real inference over real media with untrained weights: the tests
check the contract and the plumbing, not accuracy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dfmesh.runtime.config import REPO_ROOT

BRANCHES = ("tiny_gate", "visual", "audio", "temporal", "sync", "mri")
GRPC_SERVICES = ("ingest", *BRANCHES, "fusion")
STARTUP_SECONDS = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a model repository ---

def model_repo(tmp: Path) -> Path:
    """The model repository the shared mesh serves (tests/fusion_support.build_test_repo).

    The shipped release in models/ when it is complete, so the gateway, UI, reliability and
    observability tests run the real models; small test-built models with known outputs
    otherwise, or with DFMESH_TEST_SHIPPED_MODELS=0 (to test the plumbing while a branch's
    export and its preprocessing code are out of step)."""
    from tests.fusion_support import build_test_repo

    root = tmp / "models"
    build_test_repo(root, prefer_shipped=os.environ.get("DFMESH_TEST_SHIPPED_MODELS") != "0")
    return root


# --- processes ---

@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def launch(module: str, name: str, port: int, env: dict[str, str], logs: Path) -> Process:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT,
                                 env=dict(env, DFMESH_PORT=str(port)), stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, port, popen, log)


def stop(processes: list[Process], grace: float = 10.0) -> None:
    """SIGTERM each process we started (by pid), then SIGKILL what is left after `grace`."""
    for p in processes:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()


def grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0)
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def wait_until(check, processes: list[Process], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for p in processes:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n"
                       + "\n".join(f"--- {p.name}\n{p.tail(10)}" for p in processes))


@dataclass
class Mesh:
    """A running mesh: fusion's address, the environment it was started with, logs."""

    env: dict[str, str]
    processes: list[Process]
    logs: Path
    extra: list[Process] = field(default_factory=list)

    @property
    def fusion_addr(self) -> str:
        return self.env["DFMESH_FUSION_ADDR"]


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFMESH_")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", DFMESH_HOST="127.0.0.1",
               DFMESH_METRICS_PORT="0", DFMESH_LOG_LEVEL="INFO",
               DFMESH_EXIT_WITH_PID=str(os.getpid()))  # no orphans if pytest dies
    env.update(overrides)
    return env


def start_mesh(tmp: Path, **env_overrides: str) -> Mesh:
    """Every gRPC service as its own process, SERVING on free ports."""
    missing = [n for n in GRPC_SERVICES
               if not (REPO_ROOT / "services" / n / "__main__.py").is_file()]
    if missing:
        pytest.skip(f"services not in this checkout yet: {', '.join(missing)}")
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in GRPC_SERVICES}
    env = base_env(DFMESH_MODEL_REPO=str(model_repo(tmp)), **env_overrides)
    for name, port in ports.items():
        env[f"DFMESH_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
    processes = [launch(f"services.{n}", n, ports[n], env, logs) for n in GRPC_SERVICES]
    try:
        wait_until(lambda: all(grpc_serving(ports[n]) for n in GRPC_SERVICES), processes,
                   STARTUP_SECONDS, "the mesh")
    except BaseException:
        stop(processes)
        raise
    return Mesh(env, processes, logs)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            return reply.status == 200
    except OSError:
        return False


def start_gateway(env: dict[str, str], logs: Path, name: str = "gateway",
                  **overrides: str) -> tuple[Process, str]:
    """A `python -m gateway` process; returns it and its base URL once /healthz answers."""
    port = free_port()
    proc = launch("gateway", name, port, dict(env, **overrides), logs)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/healthz"), [proc], 30.0, name)
    return proc, url


@pytest.fixture(scope="session")
def local_mesh() -> Iterator[Mesh]:
    """The whole mesh, once per test session (the e2e, gateway and browser tests share it).
    Clips longer than 20 s are refused by ingest so the duration limit can be tested."""
    with tempfile.TemporaryDirectory(prefix="dfmesh-mesh-") as tmp:
        mesh = start_mesh(Path(tmp), DFMESH_MAX_DURATION_SECONDS="20")
        try:
            yield mesh
        finally:
            stop(mesh.processes + mesh.extra)
