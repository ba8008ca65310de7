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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from dfmesh.branches import BRANCH_NAMES
from dfmesh.client import Client, Progress, result_to_dict
from dfmesh.launcher import Mesh, Process, free_port, isolated_env, start_mesh
from dfmesh.runtime.config import REPO_ROOT
from tests.branch_support import speech_file
from tests.fusion_support import build_test_repo

pytestmark = pytest.mark.slow

BRANCHES = BRANCH_NAMES
CLIP = "lipnet__GRID_bbaf2n.mpg"
START_TIMEOUT_SECONDS = 120.0
RESULT_KEYS = {"verdict", "confidence", "probFake", "features", "branches", "missingBranches",
               "degraded", "earlyExit", "explanation", "timingsMs"}


def process(mesh: Mesh, name: str) -> Process:
    return next(p for p in mesh.processes if p.name == name)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Mesh]:
    repo = tmp_path_factory.mktemp("models")
    build_test_repo(repo, prefer_shipped=True)
    env = isolated_env(DFMESH_MODEL_REPO=str(repo), DFMESH_GRACE_SECONDS="2",
                       # Every test here must run the branches: a cached answer for the same
                       # clip would hide a killed branch (the cache has its own tests).
                       DFMESH_RESULT_CACHE_SIZE="0")
    running = start_mesh(tmp_path_factory.mktemp("logs"), env, timeout=START_TIMEOUT_SECONDS)
    try:
        yield running
    finally:
        running.stop(15)


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
    progress, out = analyze(mesh.fusion_addr, clip, early_exit=False)
    assert set(out) >= RESULT_KEYS
    assert set(out["branches"]) == set(BRANCHES)
    for name, branch in out["branches"].items():
        assert branch["status"] in ("OK", "FALLBACK"), (name, branch, process(mesh, name).tail())
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

    _, out = analyze(mesh.fusion_addr, clip, early_exit=False)
    served = dict(out["features"])
    trained = clip_features(clip, Path(mesh.env["DFMESH_MODEL_REPO"]))
    assert set(trained) == set(served) and len(served) == 12
    for name, value in served.items():
        assert trained[name] == pytest.approx(value, abs=1e-5), name


def test_early_exit_follows_the_request(mesh: Mesh, clip: Path) -> None:
    _, default = analyze(mesh.fusion_addr, clip)
    _, full = analyze(mesh.fusion_addr, clip, early_exit=False)
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
         "--json", "--address", mesh.fusion_addr],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, env=mesh.env)
    assert proc.returncode == 0, proc.stderr
    reports = {Path(r["file"]).suffix: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(reports) == {clip.suffix, image.suffix, audio.suffix}
    assert all(set(r) >= RESULT_KEYS for r in reports.values())
    assert reports[image.suffix]["branches"]["audio"]["status"] == "NOT_RUN"
    assert reports[audio.suffix]["fusionHead"] == "1way:audio"


def test_ingest_down_is_unavailable(mesh: Mesh, clip: Path, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = dict(mesh.env, DFMESH_INGEST_ADDR=dead)
    env.pop("DFMESH_FUSION_ADDR")
    alone = start_mesh(tmp_path, env, names=("fusion",), timeout=START_TIMEOUT_SECONDS)
    try:
        with pytest.raises(aio.AioRpcError) as info:
            analyze(alone.fusion_addr, clip)
    finally:
        alone.stop(15)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"ingest service unavailable at {dead}" in info.value.details()


def test_killed_branch_degrades_the_next_result(mesh: Mesh, clip: Path) -> None:
    victim = "sync"

    async def kill_during_run() -> dict:
        async with Client(mesh.fusion_addr) as client:
            async for event in client.analyze(clip, early_exit=False, timeout=120):
                if isinstance(event, Progress) and event.stage == "Extracting frames" \
                        and process(mesh, victim).popen.poll() is None:
                    os.kill(process(mesh, victim).popen.pid, signal.SIGKILL)
                elif not isinstance(event, Progress):
                    return result_to_dict(event)
        raise AssertionError("no result")

    during = asyncio.run(kill_during_run())
    process(mesh, victim).popen.wait(timeout=10)
    assert set(during) >= RESULT_KEYS  # the run in flight still comes back
    _, after = analyze(mesh.fusion_addr, clip, early_exit=False)
    assert after["degraded"] and after["missingBranches"] == [victim]
    assert after["branches"][victim]["status"] == "MISSING"
    # the shipped heads never mix modalities: without sync a clip takes the face head,
    # which reads visual alone
    assert after["fusionHead"] == "1way:visual"
    assert f"missing: {victim}" in after["explanation"]
