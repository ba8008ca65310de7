"""`dfmesh up`, `status`, `analyze` and `down` as a user runs them: the console script in
subprocesses, the whole mesh (gateway included) on free loopback ports, a state directory
of the test's own, real models and a real image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.known_models import build_test_repo
from dfmesh.launcher import free_port, isolated_env
from dfmesh.mesh import START_ORDER, pid_alive

pytestmark = pytest.mark.slow

DFMESH = [sys.executable, "-m", "dfmesh.cli"]


def dfmesh(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*DFMESH, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_up_status_analyze_down(tmp_path: Path, shared_data: Path) -> None:
    repo = tmp_path / "models"
    build_test_repo(repo, prefer_shipped=True)
    env = isolated_env(DFMESH_STATE_DIR=str(tmp_path / "state"), DFMESH_MODEL_REPO=str(repo))
    ports = {name: free_port() for name in START_ORDER}
    port_args = [a for name, port in ports.items() for a in ("--port", f"{name}={port}")]
    up = dfmesh("up", *port_args, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "mesh is up" in up.stdout
        state = json.loads((tmp_path / "state" / "mesh.json").read_text())
        assert [p["name"] for p in state] == list(START_ORDER)
        assert {p["name"]: p["port"] for p in state} == ports

        status = dfmesh("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = [line.split() for line in status.stdout.splitlines()]
        assert [(r[0], int(r[1]), r[2]) for r in rows] == [
            (name, port, "SERVING") for name, port in ports.items()]

        image = sorted((shared_data / "faces").glob("*.jpg"))[0]
        analyzed = dfmesh("analyze", str(image), "--json", "--address",
                          f"127.0.0.1:{ports['fusion']}", env=env)
        assert analyzed.returncode == 0, analyzed.stderr
        report = json.loads(analyzed.stdout)
        assert report["verdict"] in ("Deepfake", "Authentic")
        assert report["branches"]["audio"]["status"] == "NOT_RUN"
    finally:
        down = dfmesh("down", "--grace", "20", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert dict(line.split(": ") for line in down.stdout.splitlines()) == {
        name: "stopped" for name in START_ORDER}
    assert not any(pid_alive(p["pid"]) for p in state)
    assert not (tmp_path / "state" / "mesh.json").exists()
