"""Fixtures shared across the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.mesh import local_mesh  # noqa: F401  (session fixture: the mesh as processes)

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """../shared/data next to the repository, or DFMESH_SHARED_DATA."""
    env = os.environ.get("DFMESH_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public media in ../shared/data; tests needing it skip where it is absent."""
    path = shared_data_dir()
    if not (path / "MANIFEST.csv").is_file():
        pytest.skip(f"shared media not found at {path} (set DFMESH_SHARED_DATA)")
    return path
