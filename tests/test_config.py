"""Configuration: each service's own prefix over the shared DFMESH_ names, fusion's
per-branch settings made from the registry, and a clear error at start-up for a bad value."""

from __future__ import annotations

import pytest

from dfmesh.branches import BRANCHES
from dfmesh.runtime.config import load_settings, service_prefix
from services.fusion.settings import FusionSettings
from services.ingest.settings import IngestSettings
from services.temporal.service import TemporalSettings


def test_a_service_prefix_overrides_the_shared_name_for_that_service_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFMESH_MAX_FRAMES", "7")
    monkeypatch.setenv("DFMESH_TEMPORAL_MAX_FRAMES", "10")
    assert TemporalSettings().max_frames == 10
    assert IngestSettings().max_frames == 7
    assert service_prefix(TemporalSettings) == "DFMESH_TEMPORAL_"
    assert service_prefix(FusionSettings) == "DFMESH_FUSION_"


def test_fusion_has_an_address_and_a_deadline_per_registry_branch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFMESH_VISUAL_ADDR", "dns:///visual.dfmesh:50054")
    monkeypatch.setenv("DFMESH_TEMPORAL_DEADLINE_SECONDS", "7")
    settings = FusionSettings()
    assert settings.branch_address("visual") == "dns:///visual.dfmesh:50054"
    assert settings.branch_deadline("temporal") == 7.0
    for branch in BRANCHES:
        assert settings.branch_address(branch.name) == f"127.0.0.1:{branch.port}" \
            or branch.name == "visual"
        assert settings.branch_deadline(branch.name) == (
            7.0 if branch.name == "temporal" else branch.deadline_seconds)


def test_a_bad_value_stops_the_service_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DFMESH_SYNC_DEADLINE_SECONDS", "-1")
    with pytest.raises(SystemExit) as info:
        load_settings(FusionSettings)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid configuration for FusionSettings" in err
    assert "DFMESH_SYNC_DEADLINE_SECONDS (or DFMESH_FUSION_SYNC_DEADLINE_SECONDS)" in err
    assert "greater than 0" in err


def test_a_bad_value_is_not_repeated_in_the_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DFMESH_TEMPORAL_MAX_FRAMES", "s3cret-not-a-number")
    with pytest.raises(SystemExit):
        load_settings(TemporalSettings)
    err = capsys.readouterr().err
    assert "DFMESH_MAX_FRAMES (or DFMESH_TEMPORAL_MAX_FRAMES)" in err
    assert "s3cret" not in err
