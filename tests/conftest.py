"""Fixtures shared across the test suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.media import shared_data_dir
from dfmesh.runtime.config import REPO_ROOT
from tests.mesh import local_mesh  # noqa: F401  (session fixture: the mesh as processes)

__all__ = ["REPO_ROOT", "shared_data", "shared_data_dir", "smoke_cache"]

SMOKE_PHOTOS = ("face_recognition__obama.jpg", "face_recognition__biden.jpg",
                "openface__clapton-1.jpg", "openface__lennon-1.jpg")
SMOKE_CLIP = "lipnet__GRID_bbaf2n.mpg"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public media in ../shared/data; tests needing it skip where it is absent."""
    path = shared_data_dir()
    if not (path / "MANIFEST.csv").is_file():
        pytest.skip(f"shared media not found at {path} (set DFMESH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def smoke_cache(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face cache (`python -m training prepare`'s) of four real photos and one real clip
    (6 frames), built by the real MTCNN pipeline into a temporary folder."""
    from training.data.faces import build_face_cache
    from training.data.identities import SPLITS

    data = tmp_path_factory.mktemp("data")
    (data / "faces").mkdir()
    (data / "talking").mkdir()
    for name in SMOKE_PHOTOS:
        if not (shared_data / "faces" / name).is_file():
            pytest.skip(f"{name} missing from the shared data")
        (data / "faces" / name).symlink_to(shared_data / "faces" / name)
    (data / "talking" / SMOKE_CLIP).symlink_to(shared_data / "talking" / SMOKE_CLIP)
    cache = tmp_path_factory.mktemp("cache")
    index = json.loads(build_face_cache(data, cache, frames_per_clip=6).read_text())
    assert {e["split"] for e in index} == set(SPLITS)
    assert sum(e["count"] for e in index) >= 8
    return cache
