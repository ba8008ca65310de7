"""scripts/k8s_podman.py: the kind overlay rendered for `podman kube play --network host`.
Fast and offline (kubectl only), so part of the default suite; the play itself is
test_kube_play.py (`-m deploy`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.scripts import load_script
from dfmesh.runtime.config import REPO_ROOT, SERVICES

SCRIPT = REPO_ROOT / "scripts" / "k8s_podman.py"
pytest.importorskip("kubernetes_validate", reason="dev extra not installed")
kubectl = load_script("k8s_manifests").kubectl
_podman = load_script("k8s_podman")
deployment_ports, podman_objects, podman_volumes = (
    _podman.deployment_ports, _podman.podman_objects, _podman.podman_volumes)

pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl (dev extra) not installed")


def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "dfmesh-api-keys").mkdir()
    return podman_objects("kind", 10000, secrets)


def test_only_what_podman_plays_one_replica_each(rendered) -> None:
    assert {o["kind"] for o in rendered} == {"ConfigMap", "Deployment"}
    found = deployments(rendered)
    assert set(found) == {s.replace("_", "-") for s in SERVICES}
    assert all(d["spec"]["replicas"] == 1 for d in found.values())


def test_addresses_point_at_loopback_and_ports_move_together(rendered) -> None:
    ports = deployment_ports(rendered)
    assert ports["visual"] == [60054, 61054] and ports["gateway"] == [18080]
    for name, deployment in deployments(rendered).items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert "ports" not in container, name  # host networking refuses port mappings
        for var in container.get("env", []):
            assert "svc.cluster.local" not in var.get("value", ""), (name, var)
            if var["name"].endswith("_ADDR"):
                host, port = var["value"].rsplit(":", 1)
                assert host == "127.0.0.1" and int(port) in range(60051, 60059), var
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            handler = next(iter(v for k, v in container[probe].items()
                                if k in ("grpc", "httpGet")))
            assert handler["port"] == ports[name][0], (name, probe)
        # Everything else about the container is the overlay's.
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["image"] == f"dfmesh/{name}:0.1.0"


def test_volumes_are_per_pod_and_the_secret_becomes_a_read_only_directory(rendered) -> None:
    assert sorted(podman_volumes(rendered)) == sorted(
        f"{name}-tmp" for name in deployments(rendered))
    gateway = deployments(rendered)["gateway"]["spec"]["template"]["spec"]
    keys = next(v for v in gateway["volumes"] if v["name"] == "api-keys")
    assert keys["hostPath"]["type"] == "Directory"
    assert keys["hostPath"]["path"].endswith("/dfmesh-api-keys")
    mount = next(m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    assert mount["readOnly"] is True and mount["mountPath"] == "/etc/dfmesh/api-keys"


def test_without_a_secrets_dir_the_optional_secret_is_left_out() -> None:
    gateway = deployments(podman_objects("kind"))["gateway"]["spec"]["template"]["spec"]
    assert [v["name"] for v in gateway["volumes"]] == ["gateway-tmp"]
    assert [m["name"] for m in gateway["containers"][0]["volumeMounts"]] == ["gateway-tmp"]


def test_the_command_line_writes_yaml_and_refuses_bad_arguments(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--port-offset", "5"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert len([d for d in yaml.safe_load_all(out) if d["kind"] == "Deployment"]) == 9
    for args, message in ((["--port-offset", "-1"], "between 0 and 10000"),
                          (["--secrets-dir", str(tmp_path / "nope")], "is not a directory")):
        bad = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                             text=True, check=False, timeout=120)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
