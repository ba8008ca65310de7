"""Configuration: each service's own prefix over the shared DFMESH_ names, per-service knobs
read only under the service's name, one field and one type behind every name, fusion's
per-branch settings made from the registry, and a clear error at start-up for a bad value,
a per-service knob set under the shared name, or a retired name."""

from __future__ import annotations

import subprocess
import sys
import typing
from collections import defaultdict

import pytest

from dfmesh.branches import BRANCHES
from dfmesh.launcher import isolated_env
from dfmesh.runtime.config import REPO_ROOT, ServiceSettings, load_settings, service_prefix
from dfmesh.runtime.model_server import ModelServerSettings
from gateway.settings import GatewaySettings
from services.audio.service import AudioSettings
from services.branch_servers import branch_servers
from services.fusion.settings import FusionSettings
from services.ingest.settings import IngestSettings
from services.sync.service import SyncSettings
from services.temporal.service import TemporalSettings
from services.tiny_gate.service import TinyGateSettings
from services.visual.service import VisualSettings

SETTINGS: dict[str, type[ServiceSettings]] = {
    "gateway": GatewaySettings, "fusion": FusionSettings, "ingest": IngestSettings,
    **{name: classes[1] for name, classes in branch_servers().items()}}
SAME_MEANING = {
    "max_upload_bytes": "the largest upload this service accepts",
    "max_concurrent_analyses": "analyses at once in this service (gateway, fusion)",
    "busy_retry_seconds": "the retry hint this service gives when it refuses work as busy",
    "redis_url": "the Redis this service keeps its state in (gateway: analyses, fusion: "
                 "results)",
}
"""Fields that more than one service declares for itself (not through a shared base), and
the one thing each means everywhere."""


def test_a_service_prefix_overrides_the_shared_name_for_that_service_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFMESH_BUSY_RETRY_SECONDS", "3")
    monkeypatch.setenv("DFMESH_GATEWAY_BUSY_RETRY_SECONDS", "7")
    assert GatewaySettings().busy_retry_seconds == 7.0
    assert FusionSettings().busy_retry_seconds == IngestSettings().busy_retry_seconds == 3.0
    assert service_prefix(TemporalSettings) == "DFMESH_TEMPORAL_"
    assert service_prefix(FusionSettings) == "DFMESH_FUSION_"


def test_a_per_service_knob_is_read_only_under_the_services_name(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DFMESH_VISUAL_MAX_BATCH_SIZE", "4")
    assert VisualSettings().max_batch_size == 4
    assert TinyGateSettings().max_batch_size == 1024  # patches, not crops: its own default
    monkeypatch.setenv("DFMESH_MAX_BATCH_SIZE", "16")
    assert TinyGateSettings().max_batch_size == 1024
    with pytest.raises(SystemExit) as info:
        load_settings(TinyGateSettings)
    assert info.value.code == 2
    assert ("DFMESH_MAX_BATCH_SIZE: set per service, as DFMESH_TINY_GATE_MAX_BATCH_SIZE"
            in capsys.readouterr().err)
    load_settings(IngestSettings)  # ingest has no batch: the name is not its business


def test_no_name_means_two_things_and_each_has_one_type() -> None:
    """Every variable any service reads -> one field name and one type; a field several
    services declare for themselves means one thing (SAME_MEANING) or is per service."""
    readers: dict[str, set[tuple[str, str]]] = defaultdict(set)
    declared: dict[str, list[str]] = defaultdict(list)
    for service, cls in SETTINGS.items():
        own = service_prefix(cls)
        for name, field in cls.model_fields.items():
            kind = str(field.annotation)
            readers[f"{own}{name.upper()}"].add((name, kind))
            if name not in cls.per_service:
                readers[f"DFMESH_{name.upper()}"].add((name, kind))
            base = ModelServerSettings if issubclass(cls, ModelServerSettings) else \
                ServiceSettings
            if name not in base.model_fields and name != "service_name":
                declared[name].append(service)
    clashes = {var: found for var, found in readers.items() if len(found) > 1}
    assert not clashes, f"one name, several fields or types: {clashes}"
    for name, services in declared.items():
        per_service = all(name in SETTINGS[s].per_service for s in services)
        assert len(services) == 1 or per_service or name in SAME_MEANING, (name, services)


def test_durations_and_sizes_have_one_type() -> None:
    for service, cls in SETTINGS.items():
        for name, field in cls.model_fields.items():
            types = set(typing.get_args(field.annotation)) - {type(None)} or {field.annotation}
            if name.endswith(("_seconds", "_ms")):
                assert types == {float}, (service, name, field.annotation)
            if name.endswith(("_bytes", "port", "_threads")) or name.startswith("max_") \
                    and not name.endswith(("_seconds", "_ms", "_bytes")):
                assert types == {int}, (service, name, field.annotation)


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
    monkeypatch.setenv("DFMESH_TEMPORAL_MAX_EMBEDDINGS", "s3cret-not-a-number")
    with pytest.raises(SystemExit):
        load_settings(TemporalSettings)
    err = capsys.readouterr().err
    assert "DFMESH_MAX_EMBEDDINGS (or DFMESH_TEMPORAL_MAX_EMBEDDINGS)" in err
    assert "s3cret" not in err


def test_a_bad_per_service_value_names_only_the_services_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DFMESH_VISUAL_MAX_BATCH_SIZE", "0")
    with pytest.raises(SystemExit):
        load_settings(VisualSettings)
    err = capsys.readouterr().err
    assert "  DFMESH_VISUAL_MAX_BATCH_SIZE: Input should be greater than or equal to 1" in err
    assert "(or" not in err


@pytest.mark.parametrize(("cls", "variable"), [
    (AudioSettings, "DFMESH_MAX_WINDOWS"), (SyncSettings, "DFMESH_SYNC_MAX_WINDOWS"),
    (TemporalSettings, "DFMESH_TEMPORAL_MAX_FRAMES"), (IngestSettings, "DFMESH_AUDIO_SAMPLE_RATE")])
def test_a_retired_name_stops_the_service_that_read_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cls: type[ServiceSettings], variable: str) -> None:
    monkeypatch.setenv(variable, "8")
    with pytest.raises(SystemExit):
        load_settings(cls)
    assert f"  {variable}: no longer a setting; " in capsys.readouterr().err


def test_ingest_still_reads_its_max_frames_beside_temporal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFMESH_MAX_FRAMES", "7")
    assert load_settings(IngestSettings).max_frames == 7
    assert load_settings(TemporalSettings).max_embeddings == 256


def test_the_configuration_reference_is_current() -> None:
    done = subprocess.run([sys.executable, "scripts/gen_config_doc.py", "--check"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_no_variable_renames_a_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFMESH_SERVICE_NAME", "other")
    monkeypatch.setenv("DFMESH_VISUAL_SERVICE_NAME", "other")
    settings = load_settings(VisualSettings)
    assert settings.service_name == "visual" and settings.grpc_port == 50054


def test_a_service_process_refuses_to_start_with_a_bad_value() -> None:
    """The real start-up: `python -m services.temporal` exits 2 before serving, naming the
    variable (and a retired one beside it)."""
    env = isolated_env(DFMESH_TEMPORAL_MAX_EMBEDDINGS="1", DFMESH_TEMPORAL_MIN_FRAMES="3")
    done = subprocess.run([sys.executable, "-m", "services.temporal"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "invalid configuration for TemporalSettings:" in done.stderr
    assert ("DFMESH_MAX_EMBEDDINGS (or DFMESH_TEMPORAL_MAX_EMBEDDINGS): Input should be "
            "greater than or equal to 2") in done.stderr
    assert ("DFMESH_TEMPORAL_MIN_FRAMES: no longer a setting; use "
            "DFMESH_TEMPORAL_MIN_EMBEDDINGS") in done.stderr
