"""Services as processes on loopback: the one launcher behind `dfmesh up` (dfmesh.mesh), the
test meshes (tests/mesh.py) and the benchmark meshes (bench/mesh_runner.py).

`launch` starts `python -m services.<name>` (or `python -m gateway`) with DFMESH_PORT set
and its output appended to `<logs>/<name>.log`; `wait_serving` polls health until each
process is SERVING or has exited; `start_mesh` launches a set of gRPC services on free ports
and raises, with each log's tail, when one does not come up; `stop` sends SIGTERM and, after
the grace, SIGKILL, to the processes it is given (by pid, never by name).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dfmesh.runtime.config import GRPC_START_ORDER, METRICS_PORT_OFFSET, REPO_ROOT

GRPC_SERVICES = GRPC_START_ORDER
STARTUP_SECONDS = 180.0


def module_of(name: str) -> str:
    """The module `python -m` runs for a service."""
    return "gateway" if name == "gateway" else f"services.{name}"


def entry_point(name: str) -> Path:
    return REPO_ROOT.joinpath(*module_of(name).split("."), "__main__.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` free loopback ports whose metrics ports (port + 1000, where a service with
    DFMESH_METRICS_PORT=-1 serves them) are free as well, no port of one service being the
    other port of another."""
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < count:
        port = free_port()
        pair = {port, port + METRICS_PORT_OFFSET}
        if not pair & taken and _bindable(port + METRICS_PORT_OFFSET):
            chosen.append(port)
            taken |= pair
    return chosen


@dataclass
class Process:
    """One service process we started, and where its output goes."""

    name: str
    port: int
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def launch(module: str, name: str, port: int, env: Mapping[str, str], logs: Path) -> Process:
    """Start `python -m module` on `port`; stdout and stderr go to `<logs>/<name>.log`."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT,
                                 env=dict(env, DFMESH_PORT=str(port)), stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, port, popen, log)


def with_addresses(env: Mapping[str, str], ports: Mapping[str, int]) -> dict[str, str]:
    """`env` plus DFMESH_<NAME>_ADDR on loopback for each gRPC service in `ports`."""
    out = dict(env)
    for name, port in ports.items():
        if name != "gateway":
            out[f"DFMESH_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
    return out


def grpc_health(port: int, timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING or DOWN for the gRPC service on a loopback port."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError:
        return "DOWN"


def grpc_serving(port: int) -> bool:
    return grpc_health(port) == "SERVING"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def http_health(port: int, timeout: float = 1.0) -> str:
    """SERVING when the gateway's /readyz answers 200, NOT_SERVING on another answer, else DOWN."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as r:
            return "SERVING" if r.status == 200 else "NOT_SERVING"
    except urllib.error.HTTPError:
        return "NOT_SERVING"
    except OSError:
        return "DOWN"


def health(name: str, port: int) -> str:
    return http_health(port) if name == "gateway" else grpc_health(port)


def wait_serving(processes: Sequence[Process], timeout: float) -> dict[str, str]:
    """Poll until every process reports SERVING or has exited, or the timeout passes; each
    one's last state by name (SERVING, NOT_SERVING, DOWN or EXITED(code))."""
    deadline = time.monotonic() + timeout
    status = {p.name: "DOWN" for p in processes}
    while time.monotonic() < deadline:
        for p in processes:
            if status[p.name] == "SERVING":
                continue
            code = p.popen.poll()
            status[p.name] = f"EXITED({code})" if code is not None else health(p.name, p.port)
        if all(s == "SERVING" or s.startswith("EXITED") for s in status.values()):
            break
        time.sleep(0.3)
    return status


def wait_until(check: Callable[[], bool], processes: Sequence[Process], timeout: float,
               what: str) -> None:
    """Poll `check` until true; raise with the logs' tails when a process exits first or the
    timeout passes."""
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


def stop(processes: Sequence[Process], grace: float = 10.0) -> None:
    """SIGTERM each process (by pid), then SIGKILL what is left after `grace` seconds."""
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


@dataclass
class Mesh:
    """A running mesh: the environment it was started with (addresses included), its
    processes, where their logs are, and processes added later (a gateway)."""

    env: dict[str, str]
    processes: list[Process]
    logs: Path
    extra: list[Process] = field(default_factory=list)

    @property
    def fusion_addr(self) -> str:
        return self.env["DFMESH_FUSION_ADDR"]

    @property
    def ports(self) -> dict[str, int]:
        return {p.name: p.port for p in self.processes}

    def stop(self, grace: float = 10.0) -> None:
        stop(self.extra + self.processes, grace)


def start_gateway(env: Mapping[str, str], logs: Path, name: str = "gateway",
                  **overrides: str) -> tuple[Process, str]:
    """A `python -m gateway` process; returns it and its base URL once /healthz answers."""
    port = free_port()
    proc = launch("gateway", name, port, dict(env, **overrides), logs)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/healthz"), [proc], 30.0, name)
    return proc, url


def isolated_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any DFMESH_ variable, plus what a mesh of
    children needs: loopback, no metrics ports, and an exit when this process dies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFMESH_")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", DFMESH_HOST="127.0.0.1",
               DFMESH_METRICS_PORT="0", DFMESH_LOG_LEVEL="INFO",
               DFMESH_EXIT_WITH_PID=str(os.getpid()))
    env.update(overrides)
    return env


def start_mesh(logs: Path, env: Mapping[str, str], names: Sequence[str] = GRPC_SERVICES,
               timeout: float = STARTUP_SECONDS, modules: Mapping[str, str] | None = None
               ) -> Mesh:
    """`names` as processes on free loopback ports, each knowing the others' addresses;
    returns once all are SERVING, or stops them and raises with their logs' tails.
    `modules` names the module to run for a service outside services/ (a test's branch)."""
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    full_env = with_addresses(env, ports)
    processes = [launch((modules or {}).get(n) or module_of(n), n, ports[n], full_env, logs)
                 for n in names]
    status = wait_serving(processes, timeout)
    bad = {n: s for n, s in status.items() if s != "SERVING"}
    if bad:
        stop(processes)
        tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in processes if p.name in bad)
        raise RuntimeError(f"services did not reach SERVING: {bad}\n{tails}")
    return Mesh(full_env, processes, logs)
