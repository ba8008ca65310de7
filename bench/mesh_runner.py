"""The local mesh as real processes (dfmesh.launcher starts them) and what is measured through it:
per-clip latency and stages, throughput under concurrency, CPU seconds and memory per
service from /proc."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import idle_share, machine_cpu_ticks, proc_cpu_seconds, proc_memory_mib
from deepfake.v1 import orchestrator_pb2
from dfmesh.client import Client

BENCH_ENV = {
    # Repeated clips must run in full: no result cache (it is measured on its own).
    "DFMESH_RESULT_CACHE_SIZE": "0",
    # Concurrency 8 must reach the services instead of being refused at admission.
    "DFMESH_MAX_CONCURRENT_ANALYSES": "8",
    "DFMESH_MAX_CONCURRENT_INGESTS": "8",
    "DFMESH_LOG_LEVEL": "WARNING",
}


@dataclass
class RunningMesh:
    """Fusion's address, the model repository, and every service process by name."""

    address: str
    repo: Path
    repo_kind: str
    pids: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}

    def memory(self) -> dict[str, tuple[float, float]]:
        return {name: proc_memory_mib(pid) for name, pid in self.pids.items()}


def build_repo(root: Path, models: str) -> str:
    """A model repository at `root`; returns what it holds.

    shipped: every model from models/ where that holds a complete release, else test-built
    throughout (devkit.known_models.build_test_repo); mixed: each model from models/ where
    it has been exported, test-built for the rest (timing before every model is trained);
    test: small real ONNX models with known outputs and a real LR fusion bundle."""
    from devkit.known_models import (
        KNOWN_MODELS,
        SHIPPED_MODELS,
        build_fusion_bundle,
        build_model,
        build_test_repo,
        shipped,
    )

    if models != "mixed":
        return build_test_repo(root, prefer_shipped=models == "shipped")
    kinds = []
    for name, (inputs, ops, extra) in KNOWN_MODELS.items():
        if shipped(name):
            shutil.copytree(SHIPPED_MODELS / name, root / name)
            kinds.append(f"{name} shipped")
        else:
            build_model(root / name / "1.0.0", name, inputs, ops, extra_outputs=extra)
            kinds.append(f"{name} test-built")
    if shipped("fusion"):
        shutil.copytree(SHIPPED_MODELS / "fusion", root / "fusion")
        kinds.append("fusion shipped")
    else:
        build_fusion_bundle(root / "fusion" / "1.0.0")
        kinds.append("fusion test-built")
    return "mixed (" + ", ".join(kinds) + ")"


@contextmanager
def local_mesh(workdir: Path, models: str, **env: str) -> Iterator[RunningMesh]:
    """Every gRPC service as its own process on loopback (dfmesh.launcher), SERVING, on a
    model repository from `build_repo`."""
    from dfmesh.launcher import isolated_env, start_mesh

    repo = workdir / "models"
    kind = build_repo(repo, models)
    mesh = start_mesh(workdir / "logs", isolated_env(DFMESH_MODEL_REPO=str(repo),
                                                     **{**BENCH_ENV, **env}))
    try:
        yield RunningMesh(mesh.fusion_addr, repo, kind,
                          {p.name: p.popen.pid for p in mesh.processes}, mesh.env)
    finally:
        mesh.stop()


@dataclass(frozen=True)
class Analysis:
    wall_seconds: float
    timings_ms: dict[str, float]
    early_exit: bool
    degraded: bool
    verdict: str


async def analyze_once(client: Client, path: Path, early_exit: bool) -> Analysis:
    start = time.perf_counter()
    result = await client.analyze_result(path, early_exit=early_exit, timeout=900)
    wall = time.perf_counter() - start
    return Analysis(wall, dict(result.timings_ms), result.early_exit, result.degraded,
                    orchestrator_pb2.Verdict.Name(result.verdict))


async def analyze_sequential(address: str, path: Path, times: int, early_exit: bool = False,
                             warmup: int = 1) -> list[Analysis]:
    """`times` analyses one after another (after `warmup` uncounted ones)."""
    async with Client(address) as client:
        for _ in range(warmup):
            await analyze_once(client, path, early_exit)
        return [await analyze_once(client, path, early_exit) for _ in range(times)]


@dataclass(frozen=True)
class Throughput:
    concurrency: int
    clips: int
    wall_seconds: float
    cpu_seconds: dict[str, float]   # per service, for the whole run
    latencies: list[float]
    machine_idle: float             # share of the machine's CPU left idle during the run

    @property
    def clips_per_minute(self) -> float:
        return 60.0 * self.clips / self.wall_seconds

    @property
    def cpu_per_clip(self) -> float:
        return sum(self.cpu_seconds.values()) / self.clips

    def bound_clips_per_minute(self, cores: int) -> float:
        """What the CPU seconds per clip allow on `cores` cores, with no waiting."""
        return 60.0 * cores / self.cpu_per_clip


async def run_concurrent(mesh: RunningMesh, path: Path, concurrency: int, clips: int
                         ) -> Throughput:
    """`clips` analyses of `path` by `concurrency` clients at once (full path)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(clips):
        queue.put_nowait(i)
    latencies: list[float] = []

    async def worker() -> None:
        async with Client(mesh.address) as client:
            while not queue.empty():
                queue.get_nowait()
                latencies.append((await analyze_once(client, path, False)).wall_seconds)

    before, ticks = mesh.cpu(), machine_cpu_ticks()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    after = mesh.cpu()
    return Throughput(concurrency, clips, wall, {k: after[k] - before[k] for k in after},
                      latencies, idle_share(ticks, machine_cpu_ticks()))


@dataclass(frozen=True)
class MemoryRun:
    clips: int
    rss_after_warmup: dict[str, float]
    rss_end: dict[str, float]
    samples: list[dict[str, float]]

    def growth_percent(self, name: str) -> float:
        base = self.rss_after_warmup[name]
        return 100.0 * (self.rss_end[name] - base) / base if base else 0.0


async def run_memory(mesh: RunningMesh, paths: list[Path], clips: int, concurrency: int = 4,
                     samples: int = 10) -> MemoryRun:
    """`clips` analyses cycling over `paths`; RSS per service sampled `samples` times. The
    first sample (after a tenth of the clips) is the baseline: start-up and first-use
    allocations are over by then."""
    done = 0
    step = max(1, clips // samples)
    taken: list[dict[str, float]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(clips):
        queue.put_nowait(i)

    async def worker() -> None:
        nonlocal done
        async with Client(mesh.address) as client:
            while not queue.empty():
                i = queue.get_nowait()
                await analyze_once(client, paths[i % len(paths)], False)
                done += 1
                if done % step == 0:
                    taken.append({k: v[0] for k, v in mesh.memory().items()})

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if not taken:
        taken.append({k: v[0] for k, v in mesh.memory().items()})
    return MemoryRun(clips, taken[0], taken[-1], taken)
