"""The embedded default: every service as its own process on loopback, on fixed ports.

`start_mesh` launches each service through `dfmesh.launcher` with the same DFMESH_*
environment the Kubernetes manifests set, then waits for each to report SERVING. Process
ids and logs live in a state directory so `dfmesh down` and `dfmesh status` work from
another shell.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dfmesh.launcher import entry_point, health, launch, module_of, wait_serving, with_addresses
from dfmesh.runtime.config import DEFAULT_PORTS, GRPC_START_ORDER, REPO_ROOT

START_ORDER = (*GRPC_START_ORDER, "gateway")


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    port: int
    pid: int
    log: str


def available_services() -> list[str]:
    """Services whose entry point exists in this checkout, in start order."""
    return [name for name in START_ORDER if entry_point(name).is_file()]


def state_dir() -> Path:
    return Path(os.environ.get("DFMESH_STATE_DIR", REPO_ROOT / ".dfmesh"))


def mesh_environment(ports: dict[str, int], base: dict[str, str] | None = None) -> dict[str, str]:
    """The DFMESH_* addresses every process gets (what the k8s ConfigMap holds)."""
    env = with_addresses(os.environ if base is None else base, ports)
    env.setdefault("DFMESH_HOST", "127.0.0.1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


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
        listing = ", ".join(p.name for p in running_now)
        raise RuntimeError(f"a mesh is already running ({listing}); run `dfmesh down` first")
    ports = {**DEFAULT_PORTS, **(ports or {})}
    names = [n for n in available_services() if only is None or n in only]
    env = mesh_environment(ports)
    logs = state_dir() / "logs"
    launched = [launch(module_of(n), n, ports[n], env, logs) for n in names]
    processes = [ServiceProcess(p.name, p.port, p.popen.pid, str(p.log)) for p in launched]
    write_state(processes)
    return processes, wait_serving(launched, timeout)


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
