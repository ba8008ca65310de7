"""The embedded default: every service as its own process on loopback.

`start_mesh` launches `python -m services.<name>` (and `python -m gateway`) with the same
DFMESH_* environment the Kubernetes manifests set, then waits for each to report SERVING.
Process ids and logs live in a state directory so `dfmesh down` and `dfmesh status` work
from another shell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dfmesh.runtime.config import DEFAULT_PORTS, REPO_ROOT, SERVICES

GRPC_SERVICES = tuple(s for s in SERVICES if s != "gateway")
START_ORDER = ("ingest", "tiny_gate", "visual", "audio", "temporal", "sync", "mri", "fusion",
               "gateway")


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    port: int
    pid: int
    log: str


def available_services() -> list[str]:
    """Services whose entry point exists in this checkout, in start order."""
    found = []
    for name in START_ORDER:
        main = (REPO_ROOT / "gateway" / "__main__.py" if name == "gateway"
                else REPO_ROOT / "services" / name / "__main__.py")
        if main.is_file():
            found.append(name)
    return found


def state_dir() -> Path:
    return Path(os.environ.get("DFMESH_STATE_DIR", REPO_ROOT / ".dfmesh"))


def mesh_environment(ports: dict[str, int], base: dict[str, str] | None = None) -> dict[str, str]:
    """The DFMESH_* addresses every process gets (what the k8s ConfigMap holds)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("DFMESH_HOST", "127.0.0.1")
    for name, port in ports.items():
        if name != "gateway":
            env[f"DFMESH_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def launch(name: str, port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start one service process; its stdout and stderr go to log_path."""
    module = "gateway" if name == "gateway" else f"services.{name}"
    proc_env = dict(env, DFMESH_PORT=str(port))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT, env=proc_env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def grpc_health(port: int, timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING or DOWN for the gRPC service on a loopback port."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError:
        return "DOWN"


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


def wait_serving(procs: dict[str, tuple[subprocess.Popen, int]], timeout: float) -> dict[str, str]:
    """Poll until every process reports SERVING, one exits, or the timeout passes."""
    deadline = time.monotonic() + timeout
    status = {name: "DOWN" for name in procs}
    while time.monotonic() < deadline:
        for name, (proc, port) in procs.items():
            if status[name] == "SERVING":
                continue
            if proc.poll() is not None:
                status[name] = f"EXITED({proc.returncode})"
            else:
                status[name] = health(name, port)
        if all(s == "SERVING" or s.startswith("EXITED") for s in status.values()):
            break
        time.sleep(0.5)
    return status


def write_state(processes: list[ServiceProcess]) -> None:
    path = state_dir() / "mesh.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([p.__dict__ for p in processes], indent=2))


def read_state() -> list[ServiceProcess]:
    path = state_dir() / "mesh.json"
    if not path.is_file():
        return []
    return [ServiceProcess(**item) for item in json.loads(path.read_text())]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


def start_mesh(ports: dict[str, int] | None = None, timeout: float = 180.0,
               only: list[str] | None = None) -> tuple[list[ServiceProcess], dict[str, str]]:
    """Launch every available service and wait for SERVING. Returns processes and status."""
    running_now = [p for p in read_state() if pid_alive(p.pid)]
    if running_now:
        names = ", ".join(p.name for p in running_now)
        raise RuntimeError(f"a mesh is already running ({names}); run `dfmesh down` first")
    ports = {**DEFAULT_PORTS, **(ports or {})}
    names = [n for n in available_services() if only is None or n in only]
    env = mesh_environment(ports)
    logs = state_dir() / "logs"
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    for name in names:
        procs[name] = (launch(name, ports[name], env, logs / f"{name}.log"), ports[name])
    processes = [ServiceProcess(n, port, p.pid, str(logs / f"{n}.log"))
                 for n, (p, port) in procs.items()]
    write_state(processes)
    return processes, wait_serving(procs, timeout)


def stop_mesh(grace: float = 25.0) -> list[tuple[str, str]]:
    """SIGTERM every process of the mesh, wait for the drain, SIGKILL what remains."""
    processes = read_state()
    outcome = []
    for p in processes:
        if pid_alive(p.pid):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        while pid_alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(p.pid):
            os.kill(p.pid, signal.SIGKILL)
            outcome.append((p.name, "killed"))
        else:
            outcome.append((p.name, "stopped"))
    (state_dir() / "mesh.json").unlink(missing_ok=True)
    return outcome


def mesh_status() -> list[tuple[str, int, str]]:
    """(name, port, health) for every service of the running mesh, or of the default ports."""
    processes = read_state()
    if processes:
        return [(p.name, p.port, health(p.name, p.port) if pid_alive(p.pid) else "DOWN")
                for p in processes]
    return [(n, DEFAULT_PORTS[n], health(n, DEFAULT_PORTS[n])) for n in available_services()]
