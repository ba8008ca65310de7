"""The fusion result cache: store and key units, then real servers on loopback (ingest with
MTCNN and ffmpeg, the six branches on test-built ONNX models, fusion) answering a repeated
upload from the cache, in memory and through a real redis-server shared by two fusion
services."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from deepfake.v1 import branch_pb2, media_pb2, orchestrator_pb2
from dfmesh.client import Client
from dfmesh.runtime.server import running
from services.audio.service import AudioServer, AudioSettings
from services.fusion.cache import (
    MemoryStore,
    ModelView,
    RedisStore,
    cache_key,
    decode_outcome,
    encode_outcome,
)
from services.fusion.orchestrator import AnalysisOutcome, BranchOutcome
from services.fusion.service import FusionService
from services.fusion.settings import BRANCH_NAMES, FusionSettings
from services.ingest.servicer import IngestService
from services.ingest.settings import IngestSettings
from services.mri.service import MriServer, MriSettings
from services.sync.service import SyncServer, SyncSettings
from services.temporal.service import TemporalServer, TemporalSettings
from services.tiny_gate.service import TinyGateServer, TinyGateSettings
from services.visual.service import VisualServer, VisualSettings
from tests.fusion_support import build_test_repo

BRANCH_SERVERS = {
    "tiny_gate": (TinyGateServer, TinyGateSettings), "visual": (VisualServer, VisualSettings),
    "audio": (AudioServer, AudioSettings), "temporal": (TemporalServer, TemporalSettings),
    "sync": (SyncServer, SyncSettings), "mri": (MriServer, MriSettings),
}
CLIPS = ("lipnet__GRID_bbaf2n.mpg", "lipnet__GRID_brbk7n.mpg")


# --- units ---

async def test_memory_store_evicts_least_recently_used_and_expires() -> None:
    store = MemoryStore(max_entries=2, ttl_seconds=0.3)
    await store.put("a", b"1")
    await store.put("b", b"2")
    assert await store.get("a") == b"1"  # a is now the most recent
    await store.put("c", b"3")
    assert await store.get("b") is None and await store.get("a") == b"1"
    assert len(store) == 2
    await asyncio.sleep(0.35)
    assert await store.get("a") is None and await store.get("c") is None


def test_model_view_needs_every_branch_recently() -> None:
    view = ModelView(("tiny_gate", "visual"), max_age_seconds=0.2)
    view.update("tiny_gate", branch_pb2.ModelInfo(name="g", version="1", sha256="aa"))
    assert view.digest() is None
    view.update("visual", branch_pb2.ModelInfo(name="v", version="2", sha256="bb"))
    digest = view.digest()
    assert digest == "tiny_gate=g:1:aa;visual=v:2:bb"
    view.update("visual", branch_pb2.ModelInfo(name="v", version="3", sha256="cc"))
    assert view.digest() != digest
    time.sleep(0.25)
    assert view.digest() is None


def test_key_depends_on_content_options_bundle_and_models() -> None:
    base = cache_key("c1", {"method": "fusion"}, "b1", "m1")
    assert base == cache_key("c1", {"method": "fusion"}, "b1", "m1")
    assert len({base, cache_key("c2", {"method": "fusion"}, "b1", "m1"),
                cache_key("c1", {"method": "mri"}, "b1", "m1"),
                cache_key("c1", {"method": "fusion"}, "b2", "m1"),
                cache_key("c1", {"method": "fusion"}, "b1", "m2")}) == 5


def test_outcome_round_trips_through_json() -> None:
    result = branch_pb2.BranchResult(branch="visual", status=branch_pb2.OK, prob_fake=0.25,
                                     features={"visual_prob_mean": 0.25},
                                     model=branch_pb2.ModelInfo(name="v", version="1"))
    outcome = AnalysisOutcome(
        analysis_id="x", verdict="AUTHENTIC", confidence=75.0, prob_fake=0.25,
        features={"visual_prob_mean": 0.25},
        branches={"visual": BranchOutcome("visual", "ok", result, "", 12.0, 3.0),
                  "mri": BranchOutcome("mri", "not_run", reason="not run: method")},
        missing_branches=[], degraded=False, early_exit=False, explanation="text",
        timings_ms={"total": 5.0}, fusion_mode="logreg", method="fusion", fusion_head="5way",
        clip=media_pb2.ClipInfo(sha256="abc", width=640), threshold=0.5)
    back = decode_outcome(encode_outcome(outcome))
    assert back == outcome
    assert b"\x80\x04" not in encode_outcome(outcome)  # JSON, not a pickle


# --- real servers ---

@dataclass
class Mesh:
    repo: Path
    ports: dict[str, int]
    clips: list[Path]

    def settings(self, **overrides: object) -> FusionSettings:
        addrs = {f"{n}_addr": f"127.0.0.1:{p}" for n, p in self.ports.items()}
        return FusionSettings(model_repo=self.repo, metrics_port=0, **{**addrs, **overrides})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> AsyncIterator[Mesh]:
    repo = tmp_path_factory.mktemp("models")
    build_test_repo(repo, prefer_shipped=False)
    spool = tmp_path_factory.mktemp("spool")
    async with AsyncExitStack() as stack:
        ingest_settings = IngestSettings(metrics_port=0, temp_dir=spool)
        ingest = await stack.enter_async_context(
            running(IngestService(ingest_settings), ingest_settings))
        ports = {"ingest": ingest.port}
        for name, (server_cls, settings_cls) in BRANCH_SERVERS.items():
            settings = settings_cls(model_repo=repo, metrics_port=0)
            server = await stack.enter_async_context(running(server_cls(settings), settings))
            ports[name] = server.port
        yield Mesh(repo, ports, [shared_data / "talking" / c for c in CLIPS])


@asynccontextmanager
async def fusion(mesh: Mesh, **overrides: object) -> AsyncIterator[Client]:
    settings = mesh.settings(**overrides)
    async with running(FusionService(settings), settings) as server, \
            Client(f"127.0.0.1:{server.port}") as client:
        yield client


async def analyze(client: Client, path: Path, **kwargs: object
                  ) -> orchestrator_pb2.AnalysisResult:
    return await client.analyze_result(path, timeout=300, **kwargs)


def same_answer(a: orchestrator_pb2.AnalysisResult, b: orchestrator_pb2.AnalysisResult) -> None:
    assert (a.verdict, a.prob_fake, a.fusion_head) == (b.verdict, b.prob_fake, b.fusion_head)
    assert dict(a.features) == dict(b.features)
    assert {n: r.prob_fake for n, r in a.branches.items()} == \
        {n: r.prob_fake for n, r in b.branches.items()}


@pytest.mark.asyncio(loop_scope="module")
async def test_repeated_upload_is_answered_from_memory(mesh: Mesh) -> None:
    async with fusion(mesh) as client:
        first = await analyze(client, mesh.clips[0], early_exit=False)
        assert not first.from_cache and not first.degraded
        second = await analyze(client, mesh.clips[0], early_exit=False)
        assert second.from_cache
        same_answer(first, second)
        assert second.analysis_id != first.analysis_id
        assert second.clip.sha256 == first.clip.sha256
        assert not set(second.timings_ms) & set(BRANCH_NAMES)  # no branch was called
        # Other options are another key; so is other content.
        other = await analyze(client, mesh.clips[0], early_exit=False, method="mri")
        assert not other.from_cache
        assert not (await analyze(client, mesh.clips[1], early_exit=False)).from_cache


@pytest.mark.asyncio(loop_scope="module")
async def test_cache_is_not_used_while_branch_models_are_unconfirmed(mesh: Mesh) -> None:
    async with fusion(mesh, result_cache_model_max_age_seconds=0.01) as client:
        await analyze(client, mesh.clips[0], early_exit=False)
        await asyncio.sleep(0.05)
        assert not (await analyze(client, mesh.clips[0], early_exit=False)).from_cache
    async with fusion(mesh, result_cache_size=0) as client:
        await analyze(client, mesh.clips[0], early_exit=False)
        assert not (await analyze(client, mesh.clips[0], early_exit=False)).from_cache


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.asyncio(loop_scope="module")
async def test_replicas_share_results_through_redis(mesh: Mesh, redis_url: str) -> None:
    async with fusion(mesh, redis_url=redis_url) as a, fusion(mesh, redis_url=redis_url) as b:
        first = await analyze(a, mesh.clips[0], early_exit=False)
        assert not first.from_cache
        # b learns the branch models from a full analysis of its own, then answers a's clip.
        assert not (await analyze(b, mesh.clips[1], early_exit=False)).from_cache
        shared = await analyze(b, mesh.clips[0], early_exit=False)
        assert shared.from_cache
        same_answer(first, shared)


@pytest.mark.asyncio(loop_scope="module")
async def test_redis_down_is_a_miss_not_an_error(mesh: Mesh) -> None:
    store = RedisStore(f"redis://127.0.0.1:{_free_port()}/0", ttl_seconds=60)
    assert await store.get("k") is None
    await store.put("k", b"v")  # logged, not raised
    await store.close()
    async with fusion(mesh, redis_url=f"redis://127.0.0.1:{_free_port()}/0") as client:
        first = await analyze(client, mesh.clips[0], early_exit=False)
        second = await analyze(client, mesh.clips[0], early_exit=False)
        assert not first.from_cache and not second.from_cache
        same_answer(first, second)
