"""The orchestrator against real servers on loopback, in one process: the real ingest (MTCNN,
ffmpeg) and the six real branch services serving small ONNX models whose outputs are known
functions of their inputs, and a real scikit-learn fusion bundle. Real media from
../shared/data. The whole-mesh-as-processes test is tests/test_e2e_mesh.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepfake.v1 import media_pb2, orchestrator_pb2
from dfmesh.client import Client, Progress, result_to_dict
from dfmesh.preprocess.stats import FEATURE_COLS
from dfmesh.runtime.errors import ModelIntegrityError
from dfmesh.runtime.model_repo import load_verified
from dfmesh.runtime.server import create_server, running
from services.audio.service import AudioServer, AudioSettings
from services.fusion.fusion import adaptive_fuse, load_bundle
from services.fusion.service import FusionService
from services.fusion.settings import FusionSettings
from services.ingest.servicer import IngestService
from services.ingest.settings import IngestSettings
from services.mri.service import MriServer, MriSettings
from services.sync.service import SyncServer, SyncSettings
from services.temporal.service import TemporalServer, TemporalSettings
from services.tiny_gate.service import TinyGateServer, TinyGateSettings
from services.visual.service import VisualServer, VisualSettings
from tests import media
from tests.branch_support import speech_file
from tests.fusion_support import build_test_repo

pytestmark = pytest.mark.asyncio(loop_scope="module")

BRANCH_SERVERS = {
    "tiny_gate": (TinyGateServer, TinyGateSettings), "visual": (VisualServer, VisualSettings),
    "audio": (AudioServer, AudioSettings), "temporal": (TemporalServer, TemporalSettings),
    "sync": (SyncServer, SyncSettings), "mri": (MriServer, MriSettings),
}
ALL = tuple(BRANCH_SERVERS)
RESULT_KEYS = {"verdict", "confidence", "probFake", "features", "branches", "missingBranches",
               "degraded", "earlyExit", "explanation", "timingsMs"}
GRID = "lipnet__GRID_bbaf2n.mpg"


@dataclass
class Mesh:
    repo: Path
    ports: dict[str, int]
    clip: Path

    def settings(self, **overrides: object) -> FusionSettings:
        addrs = {f"{n}_addr": f"127.0.0.1:{p}" for n, p in self.ports.items()}
        return FusionSettings(**{"model_repo": self.repo, "metrics_port": 0, **addrs,
                                 **overrides})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> AsyncIterator[Mesh]:
    repo = tmp_path_factory.mktemp("models")
    build_test_repo(repo, prefer_shipped=False)
    spool = tmp_path_factory.mktemp("spool")
    clip = shared_data / "talking" / GRID
    async with AsyncExitStack() as stack:
        ingest_settings = IngestSettings(metrics_port=0, temp_dir=spool)
        ingest = await stack.enter_async_context(
            running(IngestService(ingest_settings), ingest_settings))
        ports = {"ingest": ingest.port}
        for name, (server_cls, settings_cls) in BRANCH_SERVERS.items():
            settings = settings_cls(model_repo=repo, metrics_port=0)
            server = await stack.enter_async_context(running(server_cls(settings), settings))
            ports[name] = server.port
        yield Mesh(repo, ports, clip)


@asynccontextmanager
async def fusion(mesh: Mesh, **overrides: object) -> AsyncIterator[tuple[Client, int]]:
    settings = mesh.settings(**overrides)
    async with running(FusionService(settings), settings) as server, \
            Client(f"127.0.0.1:{server.port}") as client:
        yield client, server.port


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def default_fusion(mesh: Mesh) -> AsyncIterator[Client]:
    async with fusion(mesh) as (client, _):
        yield client


async def analyze(client: Client, path: Path, **kwargs: object):
    events = [e async for e in client.analyze(path, **kwargs)]
    assert isinstance(events[-1], orchestrator_pb2.AnalysisResult)
    assert all(isinstance(e, Progress) for e in events[:-1])
    return events[:-1], events[-1]


def statuses(result: orchestrator_pb2.AnalysisResult) -> dict[str, str]:
    return {n: b["status"] for n, b in result_to_dict(result)["branches"].items()}


async def test_full_path_reports_every_branch(mesh: Mesh, default_fusion: Client) -> None:
    progress, result = await analyze(default_fusion, mesh.clip, early_exit=False)
    out = result_to_dict(result)
    assert set(out) >= RESULT_KEYS
    assert statuses(result) == {n: "OK" for n in ALL}
    assert not out["degraded"] and out["missingBranches"] == [] and not out["earlyExit"]
    assert set(out["features"]) == set(FEATURE_COLS)
    assert out["fusionHead"] == "5way" and out["method"] == "fusion"
    for name, branch in out["branches"].items():
        assert branch["modelVersion"] == "1.0.0", name
        assert 0.0 <= branch["prob"] <= 1.0
    # The fused probability is the bundle's 5-way head on the reported features.
    bundle = load_bundle(mesh.repo)
    assert out["probFake"] == pytest.approx(bundle.full.probability(out["features"]), abs=1e-6)
    expected_verdict = "Deepfake" if out["probFake"] >= 0.5 else "Authentic"
    assert out["verdict"] == expected_verdict
    assert out["confidence"] == pytest.approx(
        100 * (out["probFake"] if expected_verdict == "Deepfake" else 1 - out["probFake"]))
    assert {"ingest", "fusion", "total", *ALL} <= set(out["timingsMs"])
    assert out["clip"]["kind"] == "VIDEO" and out["clip"]["hasAudio"]
    assert out["explanation"]
    # Progress: starts Queued at 0, never goes back, ends at 100, names every branch.
    assert (progress[0].stage, progress[0].percent) == ("Queued", 0.0)
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    stages = [p.stage for p in progress]
    assert stages.index("Extracting frames") < stages.index("Running models") \
        < stages.index("Final classification")
    assert {p.branch for p in progress if p.branch} == set(ALL)
    assert {p.branch: p.branch_state for p in progress if p.branch} == {n: "OK" for n in ALL}
    frames = [p for p in progress if p.stage == "Extracting frames" and "/" in p.message]
    assert len(frames) == 16


async def test_result_warns_about_a_branch_model_fusion_was_not_fitted_on(
        mesh: Mesh, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(mesh.repo / "fusion", repo / "fusion")
    manifest_path = next((repo / "fusion").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    served = {b: load_verified(mesh.repo, b) for b in ALL}
    fitted = {b: f"{m.name}:{m.version}:{m.sha256[:12]}" for b, m in served.items()}
    old_visual = "visual-old:0.9.0:0123456789ab"
    manifest["training_data"] = {"scored_with": dict(fitted, visual=old_visual)}
    manifest_path.write_text(json.dumps(manifest))
    async with fusion(mesh, model_repo=repo) as (client, _):
        _, result = await analyze(client, mesh.clip, early_exit=False)
    [warning] = result_to_dict(result)["warnings"]
    assert warning.startswith(f"visual served model {served['visual'].sha256[:12]}")
    assert "visual-old:0.9.0:0123456789ab" in warning
    manifest["training_data"] = {"scored_with": fitted}
    manifest_path.write_text(json.dumps(manifest))
    async with fusion(mesh, model_repo=repo) as (client, _):
        _, result = await analyze(client, mesh.clip, early_exit=False)
    assert list(result.warnings) == []


async def test_early_exit_and_switching_it_off(mesh: Mesh) -> None:
    # A threshold every patch stays under: the gate decides and nothing else runs.
    async with fusion(mesh, early_exit_threshold=0.999999) as (client, _):
        _, result = await analyze(client, mesh.clip)
        out = result_to_dict(result)
        assert out["earlyExit"] and out["verdict"] == "Authentic" and not out["degraded"]
        assert statuses(result) == {"tiny_gate": "OK", **{n: "NOT_RUN" for n in ALL[1:]}}
        assert out["probFake"] == out["branches"]["tiny_gate"]["features"]["tiny_prob_max"]
        assert out["confidence"] == pytest.approx(100 * (1 - out["probFake"]))
        assert out["fusionHead"] == "early_exit:tiny_gate"
        assert "early exit" in out["explanation"]
        # Per request: the full path runs.
        _, result = await analyze(client, mesh.clip, early_exit=False)
        assert not result.early_exit and statuses(result) == {n: "OK" for n in ALL}
    # By configuration (DFMESH_EARLY_EXIT=false): the full path runs.
    async with fusion(mesh, early_exit_threshold=0.999999, early_exit=False) as (client, _):
        _, result = await analyze(client, mesh.clip)
        assert not result.early_exit and statuses(result) == {n: "OK" for n in ALL}


async def test_branch_down_degrades_to_matching_head(mesh: Mesh) -> None:
    async with fusion(mesh, audio_addr=f"127.0.0.1:{free_port()}") as (client, _):
        _, result = await analyze(client, mesh.clip, early_exit=False)
    out = result_to_dict(result)
    assert out["degraded"] and out["missingBranches"] == ["audio"]
    assert out["branches"]["audio"]["status"] == "MISSING"
    assert out["fusionHead"] == "4way:sync+temporal+tiny_gate+visual"
    assert "audio_prob_fake" not in out["features"]
    assert "missing: audio" in out["explanation"]


async def test_gate_down_runs_the_full_path_degraded(mesh: Mesh) -> None:
    async with fusion(mesh, tiny_gate_addr=f"127.0.0.1:{free_port()}",
                      early_exit_threshold=0.999999) as (client, _):
        _, result = await analyze(client, mesh.clip)
    out = result_to_dict(result)
    assert not out["earlyExit"] and out["missingBranches"] == ["tiny_gate"]
    assert out["fusionHead"] == "4way:audio+sync+temporal+visual"
    assert {n for n, s in statuses(result).items() if s == "OK"} == set(ALL) - {"tiny_gate"}


async def test_not_serving_branch_is_left_out_without_a_call(mesh: Mesh) -> None:
    settings = MriSettings(model_repo=mesh.repo, metrics_port=0)
    loading = await create_server(MriServer(settings), settings, port=0)  # never loaded
    try:
        async with fusion(mesh, mri_addr=f"127.0.0.1:{loading.port}") as (client, _):
            _, result = await analyze(client, mesh.clip, early_exit=False)
    finally:
        await loading.drain_and_stop(0.5)
    out = result_to_dict(result)
    assert out["missingBranches"] == ["mri"] and out["degraded"]
    assert out["branches"]["mri"]["detail"] == "not serving"
    assert out["fusionHead"] == "5way"  # mri is not an LR branch


async def test_late_branch_is_left_out(mesh: Mesh) -> None:
    async with fusion(mesh, visual_deadline_seconds=0.001) as (client, _):
        _, result = await analyze(client, mesh.clip, early_exit=False)
    out = result_to_dict(result)
    assert sorted(out["missingBranches"]) == ["temporal", "visual"]
    assert out["branches"]["visual"]["detail"].startswith("late")
    assert out["fusionHead"] == "3way:audio+sync+tiny_gate"


async def test_no_audio_track_is_no_input_not_missing(mesh: Mesh, default_fusion: Client,
                                                      tmp_path: Path) -> None:
    silent = media.make_clip(tmp_path / "silent.mp4", source=mesh.clip, seconds=2.0,
                             size=(360, 288), audio=False)
    _, result = await analyze(default_fusion, silent, early_exit=False)
    out = result_to_dict(result)
    assert out["branches"]["audio"]["status"] == "NO_INPUT"
    assert not out["degraded"] and out["missingBranches"] == []
    assert "audio" not in out["fusionHead"]
    assert "no input for audio" in out["explanation"]


async def test_still_image_runs_frame_branches_only(default_fusion: Client,
                                                    shared_data: Path) -> None:
    image = sorted((shared_data / "faces").glob("*.jpg"))[0]
    _, result = await analyze(default_fusion, image, early_exit=False)
    out = result_to_dict(result)
    assert out["clip"]["kind"] == "IMAGE"
    assert {n for n, s in statuses(result).items() if s == "NOT_RUN"} == {"audio", "sync",
                                                                          "temporal"}
    assert out["fusionHead"] == "2way:tiny_gate+visual" and not out["degraded"]
    assert "still image" in out["explanation"]


async def test_audio_file_runs_audio_only(default_fusion: Client, shared_data: Path) -> None:
    _, result = await analyze(default_fusion, speech_file(shared_data))
    out = result_to_dict(result)
    assert out["clip"]["kind"] == "AUDIO"
    assert statuses(result)["audio"] == "OK"
    assert {s for n, s in statuses(result).items() if n != "audio"} == {"NOT_RUN"}
    assert out["fusionHead"] == "1way:audio"
    assert out["probFake"] == pytest.approx(out["branches"]["audio"]["prob"])
    assert "audio-only" in out["explanation"]
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(default_fusion, speech_file(shared_data), method="temporal")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "method temporal cannot score audio files" in info.value.details()


async def test_methods_and_adaptive_fusion(mesh: Mesh, default_fusion: Client) -> None:
    _, plain = await analyze(default_fusion, mesh.clip, method="plain_frames")
    assert plain.prob_fake == pytest.approx(plain.branches["visual"].prob_fake)
    assert statuses(plain)["visual"] == "OK" and statuses(plain)["tiny_gate"] == "NOT_RUN"
    _, temporal = await analyze(default_fusion, mesh.clip, method="temporal")
    assert temporal.prob_fake == pytest.approx(temporal.branches["temporal"].prob_fake)
    _, adaptive = await analyze(default_fusion, mesh.clip, fusion="adaptive", early_exit=False)
    probs = {n: b.prob_fake for n, b in adaptive.branches.items()}
    expected, _ = adaptive_fuse(probs, load_bundle(mesh.repo).adaptive_temperatures)
    assert adaptive.fusion_head == "adaptive:" + "+".join(sorted(ALL))
    assert adaptive.prob_fake == pytest.approx(expected)


async def test_ingest_down_is_unavailable_with_address(mesh: Mesh) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with fusion(mesh, ingest_addr=address) as (client, _):
        with pytest.raises(aio.AioRpcError) as info:
            await analyze(client, mesh.clip)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"ingest service unavailable at {address}" in info.value.details()


async def test_bad_input_and_limits_pass_through(mesh: Mesh, default_fusion: Client,
                                                 tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(media.random_bytes(50_000))
    with pytest.raises(aio.AioRpcError) as info:
        await analyze(default_fusion, junk)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() and "upstream" not in info.value.details()
    async with fusion(mesh, max_upload_bytes=10_000) as (client, _):
        with pytest.raises(aio.AioRpcError) as info:
            await analyze(client, mesh.clip)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10000 bytes" in info.value.details()


async def raw_stream_error(client: Client, requests: list[orchestrator_pb2.AnalyzeRequest],
                           ) -> aio.AioRpcError:
    """Header, wait for Queued, the other requests; then read until the server's status (no
    half-close, so no write races the status: grpc/grpc#36066)."""
    call = client.stub.Analyze(timeout=60)
    await call.write(orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader(
        upload=media_pb2.UploadHeader(filename="clip.mpg"))))
    assert (await call.read()).progress.stage == orchestrator_pb2.QUEUED
    for request in requests:
        await call.write(request)
    with pytest.raises(aio.AioRpcError) as info:
        while (await call.read()) is not aio.EOF:
            pass
    return info.value


async def test_upload_limit_while_streaming_and_bad_stream(mesh: Mesh,
                                                          default_fusion: Client) -> None:
    data = mesh.clip.read_bytes()
    chunks = [orchestrator_pb2.AnalyzeRequest(data=data[i:i + 4096]) for i in (0, 4096, 8192)]
    async with fusion(mesh, max_upload_bytes=10_000) as (client, _):
        error = await raw_stream_error(client, chunks)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "upload exceeds the limit of 10000 bytes" in error.details()
    second_header = orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader())
    error = await raw_stream_error(default_fusion, [chunks[0], second_header])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only data chunks may follow" in error.details()


async def test_busy_orchestrator_refuses_with_retry_after(mesh: Mesh) -> None:
    release = asyncio.Event()

    async def held_upload():
        yield orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader(
            upload=media_pb2.UploadHeader(filename="held.mpg")))
        yield orchestrator_pb2.AnalyzeRequest(data=mesh.clip.read_bytes()[:1000])
        await release.wait()

    async with fusion(mesh, max_concurrent_analyses=1, busy_retry_seconds=3) as (client, _):
        first = client.stub.Analyze(held_upload(), timeout=30)
        event = await first.read()
        assert event.progress.stage == orchestrator_pb2.QUEUED
        with pytest.raises(aio.AioRpcError) as info:
            await analyze(client, mesh.clip)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(info.value.trailing_metadata())["retry-after"] == "3"
        first.cancel()
        release.set()


async def test_busy_ingest_passes_through_with_retry_after(mesh: Mesh) -> None:
    release = asyncio.Event()

    async def held_upload():
        yield orchestrator_pb2.AnalyzeRequest(header=orchestrator_pb2.AnalyzeHeader(
            upload=media_pb2.UploadHeader(filename="held.mpg")))
        yield orchestrator_pb2.AnalyzeRequest(data=mesh.clip.read_bytes()[:1000])
        await release.wait()

    async with fusion(mesh, max_concurrent_analyses=4) as (client, _):  # above ingest
        held = [client.stub.Analyze(held_upload(), timeout=60) for _ in range(2)]  # ingest's 2
        for call in held:
            while (await call.read()).progress.stage != orchestrator_pb2.EXTRACTING_FRAMES:
                pass
        await asyncio.sleep(1.0)  # both ingest calls hold a slot once their header arrives
        with pytest.raises(aio.AioRpcError) as info:
            await analyze(client, mesh.clip)
        for call in held:
            call.cancel()
        release.set()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "ingest is busy" in info.value.details()
    assert dict(info.value.trailing_metadata())["retry-after"] == "2"


async def test_cli_prints_json_and_table(mesh: Mesh, default_fusion: Client,
                                         shared_data: Path) -> None:
    address = default_fusion.address
    image = sorted((shared_data / "faces").glob("*.jpg"))[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dfmesh.cli", "analyze", str(mesh.clip), str(image), "--json",
        "--no-early-exit", "--address", address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    reports = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [r["file"] for r in reports] == [str(mesh.clip), str(image)]
    for report in reports:
        assert set(report) >= RESULT_KEYS
        assert set(report["branches"]) == set(ALL)
        assert {"status", "prob", "features", "modelVersion"} <= set(report["branches"]["visual"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dfmesh.cli", "analyze", str(mesh.clip), "--address", address,
        "--method", "plain_frames", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = stdout.decode()
    assert proc.returncode == 0
    assert text.startswith(f"{mesh.clip}: ") and "head method:plain_frames" in text
    assert "visual" in text and "explanation:" in text


async def test_health_serving_after_bundle_load(mesh: Mesh, default_fusion: Client) -> None:
    stub = health_pb2_grpc.HealthStub(default_fusion.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(
        service="deepfake.v1.OrchestratorService"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # A tampered bundle stops the service from loading at all.
    bad_repo = mesh.repo.parent / "tampered"
    shutil.copytree(mesh.repo / "fusion", bad_repo / "fusion")
    artifact = next((bad_repo / "fusion").glob("*/fusion.joblib"))
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    settings = FusionSettings(model_repo=bad_repo, metrics_port=0)
    with pytest.raises(ModelIntegrityError, match="checksum"):
        async with running(FusionService(settings), settings):
            pass
