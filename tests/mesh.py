"""The whole mesh as real processes on loopback, for end-to-end tests.

`local_mesh` (session-scoped) starts ingest, the six branches and fusion with
`python -m services.<name>` on free ports, waits for gRPC health SERVING and yields their
addresses; `start_gateway` adds a `python -m gateway` process. The model repository is the
shipped one when every branch and fusion has an exported version; otherwise the fixture
builds one in a temp dir: small real ONNX models whose logit is a known function of the
input (tests/branch_support.build_model) and a real logistic-regression fusion bundle,
each with a checksummed manifest. Verdicts then come from real inference over real media
with untrained weights: tests check the contract and the plumbing, not accuracy.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.config import REPO_ROOT
from dfmesh.runtime.model_repo import write_manifest

BRANCHES = ("tiny_gate", "visual", "audio", "temporal", "sync", "mri")
GRPC_SERVICES = ("ingest", *BRANCHES, "fusion")
LR_BRANCHES = ("tiny_gate", "visual", "audio", "temporal", "sync")
STARTUP_SECONDS = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a model repository ---

def shipped_repo_complete(root: Path = REPO_ROOT / "models") -> bool:
    return all(any((root / name).glob("*/manifest.json")) for name in (*BRANCHES, "fusion"))


def build_branch_models(root: Path) -> None:
    """Known-function ONNX models for the six branches, shaped as the services expect."""
    from dfmesh.preprocess import audio as cqcc
    from dfmesh.preprocess import mouth
    from tests.branch_support import build_model

    build_model(root / "tiny_gate" / "1.0.0", "tiny_gate", {"patches": ["N", 3, 32, 32]},
                {"patches": "ReduceMean"})
    build_model(root / "visual" / "1.0.0", "visual", {"image": ["N", 3, 224, 224]},
                {"image": "ReduceMean"}, extra_outputs=("embedding",))
    build_model(root / "audio" / "1.0.0", "audio",
                {"cqcc": ["W", 1, cqcc.N_FEATURES, cqcc.N_FRAMES]}, {"cqcc": "ReduceMax"})
    # visual's embedding is the per-channel mean: 3 values per frame.
    build_model(root / "temporal" / "1.0.0", "temporal", {"embeddings": [1, "T", 3]},
                {"embeddings": "ReduceMean"})
    build_model(root / "sync" / "1.0.0", "sync",
                {"mouth": ["N", mouth.WINDOW_FRAMES, mouth.MOUTH_SIZE, mouth.MOUTH_SIZE],
                 "audio": ["N", mouth.N_MELS, mouth.MEL_FRAMES]},
                {"mouth": "ReduceMax", "audio": "ReduceMean"})
    build_model(root / "mri" / "1.0.0", "mri", {"image": ["N", 3, 256, 256]},
                {"image": "ReduceMean"}, extra_outputs=("mri_map",))


def build_fusion_bundle(root: Path, seed: int = 7) -> None:
    """A real LR bundle (full head and every 2-4 branch head) fitted on synthetic clip
    features where fakes score higher, with temperature and a checksummed manifest."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)

    def fit(cols: list[str]) -> LogisticRegression:
        y = rng.integers(0, 2, 200)
        x = rng.normal(0.3 + 0.4 * y[:, None], 0.2, size=(200, len(cols)))
        return LogisticRegression(max_iter=500).fit(x, y)

    def cols_for(branches: tuple[str, ...]) -> list[str]:
        wanted = {c for b in branches for c in BRANCH_FEATURES[b]}
        return [c for c in FEATURE_COLS if c in wanted]

    heads = {}
    for k in (2, 3, 4):
        for subset in itertools.combinations(LR_BRANCHES, k):
            cols = cols_for(subset)
            heads["+".join(sorted(subset))] = {"model": fit(cols), "feature_cols": cols,
                                               "temperature": 1.5}
    bundle = {"model": fit(list(FEATURE_COLS)), "feature_cols": list(FEATURE_COLS),
              "temperature": 1.5, "heads": heads, "threshold": 0.5,
              "adaptive": {"temperatures": {}}}
    version_dir = root / "fusion" / "1.0.0"
    version_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, version_dir / "fusion.joblib")
    write_manifest(version_dir, name="fusion-test-lr", branch="fusion", version="1.0.0",
                   fmt="joblib", artifact="fusion.joblib",
                   inputs=[{"name": c} for c in FEATURE_COLS], outputs=[{"name": "p_fake"}],
                   preprocessing={}, training_data="synthetic features: built by the test",
                   metrics={})


def model_repo(tmp: Path) -> Path:
    """The shipped repository when complete, else one built in `tmp`."""
    if shipped_repo_complete():
        return REPO_ROOT / "models"
    root = tmp / "models"
    build_branch_models(root)
    build_fusion_bundle(root)
    return root


# --- processes ---

@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def launch(module: str, name: str, port: int, env: dict[str, str], logs: Path) -> Process:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT,
                                 env=dict(env, DFMESH_PORT=str(port)), stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, port, popen, log)


def stop(processes: list[Process], grace: float = 10.0) -> None:
    """SIGTERM each process we started (by pid), then SIGKILL what is left after `grace`."""
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


def grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0)
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def wait_until(check, processes: list[Process], timeout: float, what: str) -> None:
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


@dataclass
class Mesh:
    """A running mesh: fusion's address, the environment it was started with, logs."""

    env: dict[str, str]
    processes: list[Process]
    logs: Path
    extra: list[Process] = field(default_factory=list)

    @property
    def fusion_addr(self) -> str:
        return self.env["DFMESH_FUSION_ADDR"]


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFMESH_")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", DFMESH_HOST="127.0.0.1",
               DFMESH_METRICS_PORT="0", DFMESH_LOG_LEVEL="INFO")
    env.update(overrides)
    return env


def start_mesh(tmp: Path, **env_overrides: str) -> Mesh:
    """Every gRPC service as its own process, SERVING on free ports."""
    missing = [n for n in GRPC_SERVICES
               if not (REPO_ROOT / "services" / n / "__main__.py").is_file()]
    if missing:
        pytest.skip(f"services not in this checkout yet: {', '.join(missing)}")
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in GRPC_SERVICES}
    env = base_env(DFMESH_MODEL_REPO=str(model_repo(tmp)), **env_overrides)
    for name, port in ports.items():
        env[f"DFMESH_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
    processes = [launch(f"services.{n}", n, ports[n], env, logs) for n in GRPC_SERVICES]
    try:
        wait_until(lambda: all(grpc_serving(ports[n]) for n in GRPC_SERVICES), processes,
                   STARTUP_SECONDS, "the mesh")
    except BaseException:
        stop(processes)
        raise
    return Mesh(env, processes, logs)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            return reply.status == 200
    except OSError:
        return False


def start_gateway(env: dict[str, str], logs: Path, name: str = "gateway",
                  **overrides: str) -> tuple[Process, str]:
    """A `python -m gateway` process; returns it and its base URL once /healthz answers."""
    port = free_port()
    proc = launch("gateway", name, port, dict(env, **overrides), logs)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/healthz"), [proc], 30.0, name)
    return proc, url


@pytest.fixture(scope="session")
def local_mesh() -> Iterator[Mesh]:
    """The whole mesh, once per test session (the e2e, gateway and browser tests share it).
    Clips longer than 20 s are refused by ingest so the duration limit can be tested."""
    with tempfile.TemporaryDirectory(prefix="dfmesh-mesh-") as tmp:
        mesh = start_mesh(Path(tmp), DFMESH_MAX_DURATION_SECONDS="20")
        try:
            yield mesh
        finally:
            stop(mesh.processes + mesh.extra)
