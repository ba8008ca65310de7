"""Faults injected into a real mesh (its own, module-scoped: these tests kill processes):
a branch killed mid-request, a branch frozen past its deadline (SIGSTOP), a branch draining
(NOT_SERVING), ingest down, fusion stopped with SIGTERM mid-request and restarted, full
temp directories (tmpfs of 2 MiB). Each gives a degraded result or a clear 503 /
UNAVAILABLE in bounded time, and the mesh recovers when the process comes back on its port,
without restarting the rest. Figures go to artifacts/reliability/faults.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc import aio

from deepfake.v1 import branch_pb2, branch_pb2_grpc
from dfmesh.client import Client, Progress, result_to_dict
from dfmesh.runtime.config import REPO_ROOT
from tests.media import make_clip
from tests.mesh import (
    Mesh,
    Process,
    grpc_serving,
    http_ok,
    launch,
    start_gateway,
    start_mesh,
    stop,
    wait_until,
)

pytestmark = pytest.mark.slow

BRANCH_DEADLINE_SECONDS = 8.0
GRACE_SECONDS = 30.0
RECOVERY_SECONDS = 15.0
"""A process back on its port is used again within this (fusion's reconnect backoff)."""
TMPFS_BYTES = 2 * 1024 * 1024
FIGURES = REPO_ROOT / "artifacts" / "reliability" / "faults.json"
RECORD: dict[str, dict] = {}


def _mount_tmpfs(directory: Path) -> bool:
    """A 2 MiB tmpfs on `directory` (needs root); False where mounting is not allowed."""
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                           str(directory)], capture_output=True, timeout=30, check=False)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def fault_mesh() -> Iterator[tuple[Mesh, str, dict[str, Path]]]:
    """The mesh, a gateway, and the temp dirs of ingest and the gateway (tmpfs when root).
    Fusion's result cache is off: a repeated clip would be answered without the branches."""
    with tempfile.TemporaryDirectory(prefix="dfmesh-faults-") as tmp:
        root = Path(tmp)
        dirs = {"ingest": root / "ingest-tmp", "gateway": root / "spool"}
        mounted = []
        for d in dirs.values():
            d.mkdir()
            if _mount_tmpfs(d):
                mounted.append(d)
        deadlines = {f"DFMESH_{b.upper()}_DEADLINE_SECONDS": str(BRANCH_DEADLINE_SECONDS)
                     for b in ("tiny_gate", "visual", "audio", "temporal", "sync", "mri")}
        mesh = start_mesh(root, DFMESH_MAX_DURATION_SECONDS="20", DFMESH_HEALTH_CACHE_SECONDS="0",
                          DFMESH_GRACE_SECONDS=str(GRACE_SECONDS), DFMESH_EARLY_EXIT="false",
                          DFMESH_TEMP_DIR=str(dirs["ingest"]), DFMESH_RESULT_CACHE_SIZE="0",
                          **deadlines)
        try:
            gateway, url = start_gateway(mesh.env, mesh.logs, "fault-gateway",
                                         DFMESH_SPOOL_DIR=str(dirs["gateway"]),
                                         DFMESH_READINESS_TIMEOUT_SECONDS="1")
            mesh.extra.append(gateway)
            yield mesh, url, {**dirs, "tmpfs": root if len(mounted) == len(dirs) else None}
        finally:
            stop(mesh.processes + mesh.extra, grace=15)
            for d in mounted:
                subprocess.run(["umount", str(d)], capture_output=True, timeout=30, check=False)
            FIGURES.parent.mkdir(parents=True, exist_ok=True)
            FIGURES.write_text(json.dumps(RECORD, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("fault-media") / "clip.mp4", seconds=2.0,
                     size=(160, 120))


def process(mesh: Mesh, name: str) -> Process:
    return next(p for p in mesh.processes if p.name == name)


def restart(mesh: Mesh, name: str) -> float:
    """Start `name` again on its port with the mesh's environment; seconds to SERVING."""
    old = process(mesh, name)
    if old.popen.poll() is None:
        old.popen.kill()
    old.popen.wait(timeout=30)
    start = time.monotonic()
    new = launch(f"services.{name}", name, old.port, mesh.env, mesh.logs)
    mesh.processes[mesh.processes.index(old)] = new
    wait_until(lambda: grpc_serving(new.port), [new], 120.0, name)
    return time.monotonic() - start


async def analyze(mesh: Mesh, clip: Path, on_progress=None) -> dict:
    async with Client(mesh.fusion_addr) as client:
        async for event in client.analyze(clip, timeout=120):
            if isinstance(event, Progress):
                if on_progress is not None:
                    on_progress(event)
            else:
                return result_to_dict(event)
    raise AssertionError("no result")


def run_analysis(mesh: Mesh, clip: Path, on_progress=None) -> tuple[float, dict]:
    start = time.monotonic()
    result = asyncio.run(analyze(mesh, clip, on_progress))
    return time.monotonic() - start, result


def recovered(mesh: Mesh, clip: Path, within: float = RECOVERY_SECONDS) -> tuple[float, dict]:
    """Seconds until an analysis is no longer degraded (the restarted process is used)."""
    start = time.monotonic()
    while True:
        try:
            _, result = run_analysis(mesh, clip)
        except aio.AioRpcError as exc:
            if time.monotonic() - start > within:
                raise
            result = {"degraded": True, "error": exc.details()}
        if not result["degraded"] or time.monotonic() - start > within:
            return time.monotonic() - start, result
        time.sleep(0.5)


def test_baseline_is_not_degraded(fault_mesh, clip: Path) -> None:
    mesh, _, _ = fault_mesh
    seconds, result = run_analysis(mesh, clip)
    assert not result["degraded"] and result["missingBranches"] == [], {
        b: result["branches"][b] for b in result["missingBranches"]}
    RECORD["baseline"] = {"seconds": round(seconds, 2)}


@pytest.fixture(scope="module")
def longer_clip(clip: Path) -> Path:
    """8 s at 320x240 (16 sampled frames): ingest works for seconds after the branch calls
    are opened."""
    return make_clip(clip.with_name("longer.mp4"), seconds=8.0, size=(320, 240))


def at_fourth_frame(action) -> tuple:
    """A progress hook running `action` once, at the fourth sampled frame: ClipInfo came
    three frames (several MTCNN passes) earlier, so fusion has checked health and opened
    every branch call; none of them has its whole input yet (16 frames, then the dense
    window and the audio follow)."""
    done = threading.Event()

    def hook(event: Progress) -> None:
        if event.message.startswith("Extracting frames (4/") and not done.is_set():
            action()
            done.set()
    return hook, done


def test_branch_killed_mid_request_degrades_then_recovers(fault_mesh, clip: Path,
                                                         longer_clip: Path) -> None:
    mesh, _, _ = fault_mesh
    victim = process(mesh, "mri")
    hook, killed = at_fourth_frame(lambda: os.kill(victim.popen.pid, signal.SIGKILL))
    seconds, during = run_analysis(mesh, longer_clip, hook)
    assert killed.is_set()
    assert during["degraded"] and during["missingBranches"] == ["mri"], during["branches"]
    assert during["branches"]["mri"]["status"] == "MISSING"
    assert during["branches"]["mri"]["detail"] == "unavailable: UNAVAILABLE"
    assert "missing: mri" in during["explanation"], during["explanation"]
    assert seconds < 60
    restart_s = restart(mesh, "mri")
    recovery_s, after = recovered(mesh, clip)
    assert not after["degraded"] and after["branches"]["mri"]["status"] in ("OK", "FALLBACK")
    RECORD["branch_killed"] = {"seconds": round(seconds, 2), "detail":
                               during["branches"]["mri"]["detail"],
                               "restart_to_serving_s": round(restart_s, 1),
                               "serving_to_full_result_s": round(recovery_s, 1)}


def test_frozen_branch_is_left_out_at_its_deadline(fault_mesh, clip: Path,
                                                   longer_clip: Path) -> None:
    """SIGSTOP once fusion has opened the branch's call: the call hangs, fusion gives up
    at the branch's deadline (counted from its input being complete) and answers without
    it; SIGCONT and the branch is used again."""
    mesh, _, _ = fault_mesh
    victim = process(mesh, "audio")
    hook, frozen = at_fourth_frame(lambda: os.kill(victim.popen.pid, signal.SIGSTOP))
    try:
        seconds, during = run_analysis(mesh, longer_clip, hook)
    finally:
        os.kill(victim.popen.pid, signal.SIGCONT)
    assert frozen.is_set()
    assert during["missingBranches"] == ["audio"], during["branches"]["audio"]
    detail = during["branches"]["audio"]["detail"]
    assert detail == f"late (over {BRANCH_DEADLINE_SECONDS:g} s)", detail
    assert seconds < BRANCH_DEADLINE_SECONDS + 30, seconds
    recovery_s, after = recovered(mesh, clip)
    assert not after["degraded"], after
    RECORD["branch_frozen"] = {"seconds": round(seconds, 2), "detail": detail,
                               "deadline_s": BRANCH_DEADLINE_SECONDS,
                               "sigcont_to_full_result_s": round(recovery_s, 1)}


async def _held_branch_call(port: int, release: asyncio.Event) -> None:
    """A call to a branch that stays open (its input never ends) until `release`."""
    async def requests() -> AsyncIterator[branch_pb2.BranchRequest]:
        yield branch_pb2.BranchRequest(header=branch_pb2.BranchHeader(analysis_id="held"))
        await release.wait()

    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with contextlib.suppress(aio.AioRpcError):
            await branch_pb2_grpc.BranchServiceStub(channel).Analyze(requests(), timeout=120)


async def test_not_serving_branch_is_skipped_until_it_recovers(fault_mesh, clip: Path) -> None:
    """SIGTERM with a call in flight: the branch says NOT_SERVING while it drains (up to
    its grace period); fusion leaves it out without calling it, then uses it again once it
    is back on its port."""
    mesh, _, _ = fault_mesh
    victim = process(mesh, "sync")
    release = asyncio.Event()
    held = asyncio.create_task(_held_branch_call(victim.port, release))
    await asyncio.sleep(1.0)
    victim.popen.send_signal(signal.SIGTERM)
    await asyncio.sleep(1.0)
    try:
        assert victim.popen.poll() is None, "the branch should drain, not exit"
        assert not await asyncio.to_thread(grpc_serving, victim.port)
        during = await analyze(mesh, clip)
    finally:
        release.set()
        await held
    assert during["missingBranches"] == ["sync"], (during["branches"]["sync"],
                                                   victim.tail(8))
    assert during["branches"]["sync"]["detail"] == "not serving"
    log = victim.log.read_text()
    assert '"message": "draining"' in log
    await asyncio.to_thread(victim.popen.wait, GRACE_SECONDS)
    restart_s = await asyncio.to_thread(restart, mesh, "sync")
    recovery_s, after = await asyncio.to_thread(recovered, mesh, clip)
    assert not after["degraded"], after["branches"]["sync"]
    RECORD["branch_not_serving"] = {"detail": "not serving", "restart_to_serving_s":
                                    round(restart_s, 1),
                                    "serving_to_full_result_s": round(recovery_s, 1)}


def test_ingest_down_is_503_and_unavailable_then_recovers(fault_mesh, clip: Path) -> None:
    """REST says the service is unavailable with Retry-After (the gateway keeps socket
    details to its log); gRPC callers get UNAVAILABLE naming ingest and its address."""
    mesh, url, _ = fault_mesh
    ingest = process(mesh, "ingest")
    ingest.popen.kill()
    ingest.popen.wait(timeout=30)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            start = time.monotonic()
            reply = http.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes())})
            rest_s = time.monotonic() - start
        with pytest.raises(aio.AioRpcError) as info:
            run_analysis(mesh, clip)
    finally:
        restart_s = restart(mesh, "ingest")
    assert reply.status_code == 503 and reply.json()["code"] == "unavailable", reply.text
    assert "unavailable; try again" in reply.json()["error"]
    assert int(reply.headers["retry-after"]) >= 1
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "ingest service unavailable at 127.0.0.1:" in info.value.details()
    recovery_s, after = recovered(mesh, clip)
    assert not after["degraded"]
    RECORD["ingest_down"] = {"rest_status": 503, "rest_seconds": round(rest_s, 2),
                             "rest_message": reply.json()["error"],
                             "grpc": info.value.code().name,
                             "grpc_message": info.value.details()[:120],
                             "restart_to_serving_s": round(restart_s, 1),
                             "serving_to_result_s": round(recovery_s, 1)}


def test_full_temp_dirs_give_clear_errors_then_recover(fault_mesh, clip: Path) -> None:
    mesh, url, dirs = fault_mesh
    if dirs["tmpfs"] is None:
        pytest.skip("cannot mount a tmpfs here (needs root); see docs/RELIABILITY.md")
    big = make_clip(clip.with_name("big.mp4"), seconds=6.0, size=(640, 480),
                    extra=["-b:v", "3M"])
    assert big.stat().st_size > TMPFS_BYTES
    outcomes = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        # Ingest's temp dir full: the upload does not fit.
        reply = http.post("/analyze", files={"file": ("big.mp4", big.read_bytes())})
        outcomes["ingest_full"] = (reply.status_code, reply.json()["error"])
        assert reply.status_code == 503 and "disk space" in reply.json()["error"], reply.text
        # The gateway's spool full: the async upload does not fit.
        reply = http.post("/v1/analyses", files={"file": ("big.mp4", big.read_bytes())})
        outcomes["spool_full"] = (reply.status_code, reply.json()["error"])
        assert reply.status_code == 503 and "disk space" in reply.json()["error"], reply.text
        assert list(dirs["ingest"].iterdir()) == [] and list(dirs["gateway"].iterdir()) == []
        # A clip that fits still works through both.
        ok = http.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes())})
        assert ok.status_code == 200, ok.text
    RECORD["temp_dirs_full"] = {k: {"http": s, "message": m} for k, (s, m) in outcomes.items()}


def test_sigterm_fusion_mid_request_finishes_then_gateway_recovers(fault_mesh,
                                                                   clip: Path) -> None:
    """The analysis in flight when fusion gets SIGTERM completes (drain within the grace
    period); fusion exits 0; the gateway answers 503 while it is gone and recovers, without
    a restart of its own, once fusion is back on its port."""
    mesh, url, _ = fault_mesh
    fusion = process(mesh, "fusion")
    long_clip = make_clip(clip.with_name("long.mp4"), seconds=8.0, size=(320, 240))
    with httpx.Client(base_url=url, timeout=60) as http:
        accepted = http.post("/v1/analyses", files={"file": ("long.mp4", long_clip.read_bytes())})
        assert accepted.status_code == 202, accepted.text
        status_url = accepted.json()["statusUrl"]
        wait_until(lambda: http.get(status_url).json()["stageName"] != "Queued", [fusion],
                   30.0, "the analysis to start")
        fusion.popen.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        exit_code = fusion.popen.wait(timeout=GRACE_SECONDS + 10)
        drained_s = time.monotonic() - sent
        final = http.get(status_url).json()
        assert final["status"] == "complete", (final["error"], fusion.tail(15)[-3000:])
        assert exit_code == 0 and drained_s < GRACE_SECONDS + 5
        down = http.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes())})
        assert down.status_code == 503 and down.headers.get("retry-after"), down.text
        assert http.get("/readyz").status_code == 503
        restart_s = restart(mesh, "fusion")
        start = time.monotonic()
        wait_until(lambda: http_ok(url + "/readyz"), [], 60.0, "gateway readiness")
        ready_s = time.monotonic() - start
        again = http.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes())})
    assert again.status_code == 200, again.text
    RECORD["fusion_sigterm_restart"] = {"in_flight": final["status"],
                                        "sigterm_to_exit_s": round(drained_s, 1),
                                        "down_status": 503, "down_message": down.json()["error"],
                                        "restart_to_serving_s": round(restart_s, 1),
                                        "serving_to_gateway_ready_s": round(ready_s, 1)}
