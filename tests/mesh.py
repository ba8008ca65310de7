"""The whole mesh as real processes on loopback, for end-to-end tests.

`local_mesh` (session-scoped) starts ingest, the six branches and fusion with
`python -m services.<name>` on free ports, waits for gRPC health SERVING and yields their
addresses; `start_gateway` adds a `python -m gateway` process. The model repository holds
small real ONNX models whose logit is a known function of the input and a real
logistic-regression fusion bundle (devkit.known_models.build_test_repo; see model_repo).
The processes are started by dfmesh.launcher, the launcher `dfmesh up` and bench use.
The verdicts come from real inference over real media with untrained weights: the tests
check the contract and the plumbing, not accuracy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.known_models import build_test_repo
from dfmesh.branches import BRANCH_NAMES
from dfmesh.launcher import (
    GRPC_SERVICES,
    STARTUP_SECONDS,
    Mesh,
    Process,
    entry_point,
    free_port,
    grpc_serving,
    http_ok,
    isolated_env,
    launch,
    start_gateway,
    stop,
    wait_until,
)
from dfmesh.launcher import start_mesh as launch_mesh
from dfmesh.runtime.config import REPO_ROOT

__all__ = ["BRANCHES", "GRPC_SERVICES", "REPO_ROOT", "STARTUP_SECONDS", "Mesh", "Process",
           "base_env", "free_port", "grpc_serving", "http_ok", "launch", "local_mesh",
           "model_repo", "start_gateway", "start_mesh", "stop", "wait_until"]

BRANCHES = BRANCH_NAMES
base_env = isolated_env


def model_repo(tmp: Path) -> Path:
    """The model repository the shared mesh serves (devkit.known_models.build_test_repo).

    The shipped release in models/ when it is complete, so the gateway, UI, reliability and
    observability tests run the real models; small test-built models with known outputs
    otherwise, or with DFMESH_TEST_SHIPPED_MODELS=0 (to test the plumbing while a branch's
    export and its preprocessing code are out of step)."""
    root = tmp / "models"
    build_test_repo(root, prefer_shipped=os.environ.get("DFMESH_TEST_SHIPPED_MODELS") != "0")
    return root


def start_mesh(tmp: Path, **env_overrides: str) -> Mesh:
    """Every gRPC service as its own process, SERVING on free ports."""
    missing = [n for n in GRPC_SERVICES if not entry_point(n).is_file()]
    if missing:
        pytest.skip(f"services not in this checkout yet: {', '.join(missing)}")
    env = base_env(DFMESH_MODEL_REPO=str(model_repo(tmp)), **env_overrides)
    return launch_mesh(tmp / "logs", env)


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
