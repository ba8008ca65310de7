"""Fixtures shared across the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.media import shared_data_dir
from dfmesh.runtime.config import REPO_ROOT
from tests.mesh import local_mesh  # noqa: F401  (session fixture: the mesh as processes)

__all__ = ["REPO_ROOT", "shared_data", "shared_data_dir"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public media in ../shared/data; tests needing it skip where it is absent."""
    path = shared_data_dir()
    if not (path / "MANIFEST.csv").is_file():
        pytest.skip(f"shared media not found at {path} (set DFMESH_SHARED_DATA)")
    return path
