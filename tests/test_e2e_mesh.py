"""End to end: the whole mesh as real processes (`python -m services.<name>`) on free
loopback ports, real clips from ../shared/data/talking, the orchestrator's client and the
`dfmesh analyze` command. The models are the shipped ones when models/ is complete, and small
real ONNX models with known outputs while models/ is not a complete release yet
(tests/fusion_support.py).

One mesh serves the whole module; the branch-kill test runs last because it leaves the
mesh without that branch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc import aio

from dfmesh import mesh as local_mesh
from dfmesh.client import Client, Progress, result_to_dict
from dfmesh.runtime.config import REPO_ROOT
from tests.branch_support import speech_file
from tests.fusion_support import build_test_repo

pytestmark = pytest.mark.slow

GRPC_SERVICES = ("ingest", "tiny_gate", "visual", "audio", "temporal", "sync", "mri", "fusion")
BRANCHES = ("tiny_gate", "visual", "audio", "temporal", "sync", "mri")
CLIP = "lipnet__GRID_bbaf2n.mpg"
START_TIMEOUT_SECONDS = 120.0
RESULT_KEYS = {"verdict", "confidence", "probFake", "features", "branches", "missingBranches",
               "degraded", "earlyExit", "explanation", "timingsMs"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mesh:
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen]
    env: dict[str, str]
    logs: Path
    origin: str

    @property
    def fusion_address(self) -> str:
        return f"127.0.0.1:{self.ports['fusion']}"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(names: tuple[str, ...], ports: dict[str, int], env: dict[str, str],
          logs: Path) -> dict[str, subprocess.Popen]:
    procs = {n: local_mesh.launch(n, ports[n], env, logs / f"{n}.log") for n in names}
    status = local_mesh.wait_serving({n: (p, ports[n]) for n, p in procs.items()},
                                     START_TIMEOUT_SECONDS)
    bad = {n: s for n, s in status.items() if s != "SERVING"}
    if bad:
        stop(procs)
        tails = "\n".join(f"--- {n} ---\n{(logs / f'{n}.log').read_text()[-2000:]}" for n in bad)
        raise RuntimeError(f"services did not reach SERVING: {bad}\n{tails}")
    return procs


def stop(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Mesh]:
    repo = tmp_path_factory.mktemp("models")
    origin = build_test_repo(repo, prefer_shipped=True)
    logs = tmp_path_factory.mktemp("logs")
    ports = {n: free_port() for n in GRPC_SERVICES}
    env = local_mesh.mesh_environment(ports)
    env.update(DFMESH_MODEL_REPO=str(repo), DFMESH_METRICS_PORT="0", OMP_NUM_THREADS="1",
               DFMESH_GRACE_SECONDS="2", PYTHONPATH=str(REPO_ROOT),
               DFMESH_EXIT_WITH_PID=str(os.getpid()),
               # Every test here must run the branches: a cached answer for the same clip
               # would hide a killed branch (the cache has its own tests).
               DFMESH_RESULT_CACHE_SIZE="0")
    procs = start(GRPC_SERVICES, ports, env, logs)
    try:
        yield Mesh(ports, procs, env, logs, origin)
    finally:
        stop(procs)


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "talking" / CLIP


def analyze(address: str, path: Path, **kwargs: object) -> tuple[list[Progress], dict]:
    async def run() -> tuple[list[Progress], dict]:
        async with Client(address) as client:
            events = [e async for e in client.analyze(path, timeout=120, **kwargs)]
        return events[:-1], result_to_dict(events[-1])
    return asyncio.run(run())


def test_every_branch_reports_on_a_real_clip(mesh: Mesh, clip: Path) -> None:
    progress, out = analyze(mesh.fusion_address, clip, early_exit=False)
    assert set(out) >= RESULT_KEYS
    assert set(out["branches"]) == set(BRANCHES)
    for name, branch in out["branches"].items():
        assert branch["status"] in ("OK", "FALLBACK"), (name, branch, mesh.log_tail(name))
        assert branch["modelVersion"], name
    assert not out["degraded"] and out["missingBranches"] == [] and not out["earlyExit"]
    assert out["fusionHead"] == "5way" and len(out["features"]) == 12
    assert out["verdict"] in ("Deepfake", "Authentic") and 0 <= out["confidence"] <= 100
    assert {"ingest", "fusion", "total", *BRANCHES} <= set(out["timingsMs"])
    assert progress[0].stage == "Queued" and progress[-1].percent == 100.0


def test_training_feature_path_gives_the_mesh_numbers(mesh: Mesh, clip: Path) -> None:
    """One feature path: the training extractor (ingest's pipeline in process, then each
    branch service's own code) gives the 12 numbers the live mesh reports for the clip."""
    pytest.importorskip("torch")
    from training.real.features import clip_features

    _, out = analyze(mesh.fusion_address, clip, early_exit=False)
    served = dict(out["features"])
    trained = clip_features(clip, Path(mesh.env["DFMESH_MODEL_REPO"]))
    assert set(trained) == set(served) and len(served) == 12
    for name, value in served.items():
        assert trained[name] == pytest.approx(value, abs=1e-5), name


def test_early_exit_follows_the_request(mesh: Mesh, clip: Path) -> None:
    _, default = analyze(mesh.fusion_address, clip)
    _, full = analyze(mesh.fusion_address, clip, early_exit=False)
    assert not full["earlyExit"]
    assert all(b["status"] in ("OK", "FALLBACK") for b in full["branches"].values())
    if default["earlyExit"]:  # the shipped gate found every patch real
        assert default["verdict"] == "Authentic"
        assert {n for n, b in default["branches"].items() if b["status"] == "NOT_RUN"} \
            == set(BRANCHES) - {"tiny_gate"}
    else:
        assert default["fusionHead"] == full["fusionHead"] == "5way"


def test_cli_on_video_image_and_audio(mesh: Mesh, clip: Path, shared_data: Path) -> None:
    image = sorted((shared_data / "faces").glob("*.jpg"))[0]
    audio = speech_file(shared_data)
    proc = subprocess.run(
        [sys.executable, "-m", "dfmesh.cli", "analyze", str(clip), str(image), str(audio),
         "--json", "--address", mesh.fusion_address],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, env=mesh.env)
    assert proc.returncode == 0, proc.stderr
    reports = {Path(r["file"]).suffix: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(reports) == {clip.suffix, image.suffix, audio.suffix}
    assert all(set(r) >= RESULT_KEYS for r in reports.values())
    assert reports[image.suffix]["branches"]["audio"]["status"] == "NOT_RUN"
    assert reports[audio.suffix]["fusionHead"] == "1way:audio"


def test_ingest_down_is_unavailable(mesh: Mesh, clip: Path, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    ports = {"fusion": free_port()}
    env = dict(mesh.env, DFMESH_INGEST_ADDR=dead)
    procs = start(("fusion",), ports, env, tmp_path)
    try:
        with pytest.raises(aio.AioRpcError) as info:
            analyze(f"127.0.0.1:{ports['fusion']}", clip)
    finally:
        stop(procs)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"ingest service unavailable at {dead}" in info.value.details()


def test_killed_branch_degrades_the_next_result(mesh: Mesh, clip: Path) -> None:
    victim = "sync"

    async def kill_during_run() -> dict:
        async with Client(mesh.fusion_address) as client:
            async for event in client.analyze(clip, early_exit=False, timeout=120):
                if isinstance(event, Progress) and event.stage == "Extracting frames" \
                        and mesh.procs[victim].poll() is None:
                    os.kill(mesh.procs[victim].pid, signal.SIGKILL)
                elif not isinstance(event, Progress):
                    return result_to_dict(event)
        raise AssertionError("no result")

    during = asyncio.run(kill_during_run())
    mesh.procs[victim].wait(timeout=10)
    assert set(during) >= RESULT_KEYS  # the run in flight still comes back
    _, after = analyze(mesh.fusion_address, clip, early_exit=False)
    assert after["degraded"] and after["missingBranches"] == [victim]
    assert after["branches"][victim]["status"] == "MISSING"
    # the shipped heads never mix modalities: without sync a clip takes the face head
    assert after["fusionHead"] == "2way:tiny_gate+visual"
    assert f"missing: {victim}" in after["explanation"]
