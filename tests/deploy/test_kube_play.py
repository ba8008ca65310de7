"""The mesh served from its container images: the kind overlay, rendered for one host by
scripts/k8s_podman.py, played with `podman kube play --network host`.

Every service must turn SERVING through its own probes (the manifests' gRPC and HTTP probes,
run here as the kubelet would), run as uid 10001 on a read-only root, and a real clip posted
to the gateway container (with an API key, as deployed) must come back with a verdict from
every branch; with one branch's container killed, the next answer is degraded. Needs the
images (bash scripts/images.sh); ports move up by DFMESH_DEPLOY_PORT_OFFSET (10000) so a
`dfmesh up` on the default ports can run beside it. Phase timings go to
$DFMESH_ARTIFACTS/deploy/kube-play.json.

    bash scripts/images.sh && .venv/bin/pytest -m deploy tests/deploy
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.scripts import load_script
from dfmesh.branches import BRANCH_NAMES
from dfmesh.runtime.config import REPO_ROOT

_podman = load_script("k8s_podman")
deployment_ports, podman_objects, podman_volumes = (
    _podman.deployment_ports, _podman.podman_objects, _podman.podman_volumes)

pytestmark = [pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(1200)]

CONTAINERS_CONF = REPO_ROOT / "docker" / "podman" / "containers.conf"
PORT_OFFSET = int(os.environ.get("DFMESH_DEPLOY_PORT_OFFSET", "10000"))
ARTIFACTS = Path(os.environ.get("DFMESH_ARTIFACTS", REPO_ROOT / "artifacts")) / "deploy"
BRANCHES = BRANCH_NAMES
CLIP = "lipnet__GRID_bbaf2n.mpg"          # face and speech: every branch has input
SECOND_CLIP = "lipnet__GRID_brbk7n.mpg"   # another one, so fusion's result cache cannot answer
VICTIM = "sync"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """podman with this machine kind's settings (docker/podman/containers.conf)."""
    env = dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF)))
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}): "
                             f"{proc.stderr.strip()[-2000:]}")
    return proc


@dataclass
class Probe:
    """One probe of one container, as the manifest declares it."""

    deployment: str
    kind: str  # startupProbe | readinessProbe | livenessProbe
    spec: dict[str, Any]
    ports: dict[str, int]

    def port(self, handler: dict[str, Any]) -> int:
        port = handler["port"]
        return self.ports[port] if isinstance(port, str) else port

    def passes(self) -> bool:
        """Run the probe against 127.0.0.1 (the pods share the host's network)."""
        timeout = float(self.spec.get("timeoutSeconds", 1))
        if "grpc" in self.spec:
            handler = self.spec["grpc"]
            with grpc.insecure_channel(f"127.0.0.1:{self.port(handler)}") as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=handler.get("service", "")),
                        timeout=timeout)
                except grpc.RpcError:
                    return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING
        if "httpGet" in self.spec:
            handler = self.spec["httpGet"]
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port(handler)}{handler['path']}",
                                     timeout=timeout)
            except httpx.HTTPError:
                return False
            return 200 <= response.status_code < 400
        raise AssertionError(f"{self.deployment} {self.kind}: no grpc or httpGet handler")


def probes(objects: list[dict[str, Any]]) -> list[Probe]:
    out = []
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in container:
                    out.append(Probe(obj["metadata"]["name"], kind, container[kind], ports))
    return out


def container_names(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Deployment -> the name podman 4.3 gives its (first) container: <name>-pod-0-<container>."""
    return {o["metadata"]["name"]:
            f"{o['metadata']['name']}-pod-0-{o['spec']['template']['spec']['containers'][0]['name']}"
            for o in objects if o["kind"] == "Deployment"}


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


@dataclass
class Played:
    objects: list[dict[str, Any]]
    manifest: Path
    api_key: str
    gateway_url: str
    containers: dict[str, str]
    timings: dict[str, Any] = field(default_factory=dict)

    def logs(self, deployment: str) -> str:
        proc = podman("logs", "--tail", "30", self.containers[deployment], check=False)
        return (proc.stdout + proc.stderr)[-3000:]

    def analyze(self, clip: Path, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with clip.open("rb") as f:
            return httpx.post(f"{self.gateway_url}/analyze", headers=headers, timeout=300,
                              files={"file": (clip.name, f, "video/mpeg")})


def down(manifest: Path, volumes: list[str]) -> None:
    podman("kube", "down", str(manifest), check=False, timeout=180)
    if volumes:
        podman("volume", "rm", "--force", *volumes, check=False)


def wait_until_serving(played: Played, deadline_s: float) -> dict[str, float]:
    """Seconds from `kube play` until each Deployment's startup and readiness probes pass;
    fails early with the logs of a container that exited."""
    pending = [p for p in probes(played.objects) if p.kind != "livenessProbe"]
    ready: dict[str, float] = {}
    start = time.monotonic()
    while pending and time.monotonic() - start < deadline_s:
        pending = [p for p in pending if not p.passes()]
        for name in {p.deployment for p in probes(played.objects)} - set(ready):
            if not any(p.deployment == name for p in pending):
                ready[name] = round(time.monotonic() - start, 1)
        states = {c["Names"][0]: c["State"]
                  for c in json.loads(podman("ps", "-a", "--format", "json").stdout)}
        exited = [name for name in played.containers.values()
                  if states.get(name) not in ("running", "created", "configured")]
        assert not exited, f"containers stopped: {exited}\n" + "\n".join(
            played.logs(d) for d, c in played.containers.items() if c in exited)
        time.sleep(1.0)
    assert not pending, "not SERVING through their probes after " + \
        f"{deadline_s:.0f} s: {[(p.deployment, p.kind) for p in pending]}\n" + \
        "\n".join(f"--- {d}\n{played.logs(d)}" for d in {p.deployment for p in pending})
    return ready


@pytest.fixture(scope="module")
def played() -> Iterator[Played]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: `bash scripts/images.sh` installs it and builds "
                    "the images")
    secrets_dir = Path(tempfile.mkdtemp(prefix="dfmesh-deploy-"))
    try:
        secrets_dir.chmod(0o755)  # the containers' uid 10001 reads the key file
        api_key = secrets.token_hex(24)
        keys = secrets_dir / "dfmesh-api-keys"
        keys.mkdir(mode=0o755)
        (keys / "api-keys").write_text(f"{api_key}=deploy-test\n")
        (keys / "api-keys").chmod(0o644)

        objects = podman_objects("kind", PORT_OFFSET, secrets_dir)
        images = sorted({c["image"] for o in objects if o["kind"] == "Deployment"
                         for c in o["spec"]["template"]["spec"]["containers"]})
        missing = [i for i in images if podman("image", "exists", i, check=False).returncode]
        if missing:
            pytest.fail(f"images not built: {missing}; run `bash scripts/images.sh`")
        busy = [p for ports in deployment_ports(objects).values() for p in ports
                if port_in_use(p)]
        assert not busy, (f"ports {busy} are taken on this host; set "
                          "DFMESH_DEPLOY_PORT_OFFSET to move the played mesh")

        manifest = secrets_dir / "mesh.yaml"
        manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        volumes = podman_volumes(objects)
        gateway_port = deployment_ports(objects)["gateway"][0]
        played = Played(objects, manifest, api_key, f"http://127.0.0.1:{gateway_port}",
                        container_names(objects))
        down(manifest, volumes)  # what an interrupted run left
        start = time.monotonic()
        try:
            podman("kube", "play", "--network", "host", str(manifest), timeout=600)
            played.timings["kube_play_s"] = round(time.monotonic() - start, 1)
            # The startup probes allow 300 s (60 x 5 s) for model load and warm-up.
            played.timings["serving_s"] = wait_until_serving(played, 300.0)
            played.timings["all_serving_s"] = round(time.monotonic() - start, 1)
            yield played
        finally:
            played.timings["total_s"] = round(time.monotonic() - start, 1)
            down(manifest, volumes)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "kube-play.json").write_text(json.dumps(played.timings, indent=2))
            print(f"\nkube play timings: {json.dumps(played.timings)}")
    finally:
        shutil.rmtree(secrets_dir, ignore_errors=True)


def test_every_service_turns_serving_through_its_own_probes(played: Played) -> None:
    assert set(played.timings["serving_s"]) == set(played.containers)
    for probe in probes(played.objects):  # liveness too, now that everything is up
        assert probe.passes(), (probe.deployment, probe.kind)


def test_containers_run_as_uid_10001_on_a_read_only_root(played: Played) -> None:
    check = ("import os, errno\n"
             "print(os.getuid(), os.getgid())\n"
             "try:\n    open('/app/probe', 'w')\nexcept OSError as e:\n"
             "    print(errno.errorcode[e.errno])\n"
             "open('/tmp/probe', 'w').write('ok'); print('tmp writable')\n")
    for deployment, container in played.containers.items():
        info = json.loads(podman("inspect", container).stdout)[0]
        assert info["Config"]["User"] == "10001:10001", deployment
        assert info["HostConfig"]["ReadonlyRootfs"] is True, deployment
        assert info["EffectiveCaps"] in (None, []), (deployment, info["EffectiveCaps"])
        out = podman("exec", container, "python", "-c", check).stdout.split("\n")
        assert out[:3] == ["10001 10001", "EROFS", "tmp writable"], (deployment, out)


def test_a_real_clip_through_the_gateway_container_gets_every_branch(
        played: Played, shared_data: Path) -> None:
    clip = shared_data / "talking" / CLIP
    refused = played.analyze(clip)
    assert refused.status_code == 401, refused.text  # deployed with API keys on

    start = time.monotonic()
    response = played.analyze(clip, played.api_key)
    played.timings["first_clip_s"] = round(time.monotonic() - start, 1)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["verdict"] in ("Deepfake", "Authentic"), result
    assert not result["degraded"] and result["missingBranches"] == [], result
    for name in BRANCHES:
        report = result["branches"][name]
        assert report["status"] in ("OK", "FALLBACK"), (
            name, report, played.logs(name.replace("_", "-")))
        assert report["modelVersion"], name
    played.timings["first_result"] = {"verdict": result["verdict"], "probFake": result["probFake"],
                                      "timingsMs": result["timingsMs"]}


def test_a_killed_branch_container_degrades_the_answer(played: Played, shared_data: Path) -> None:
    container = played.containers[VICTIM]
    # SIGKILL at once; a container stopped through podman is not restarted by its policy.
    podman("stop", "--time", "0", container)
    assert podman("inspect", "--format", "{{.State.Status}}", container).stdout.strip() == "exited"

    start = time.monotonic()
    response = played.analyze(shared_data / "talking" / SECOND_CLIP, played.api_key)
    played.timings["degraded_clip_s"] = round(time.monotonic() - start, 1)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["verdict"] in ("Deepfake", "Authentic"), result
    assert result["degraded"] and result["missingBranches"] == [VICTIM], result
    assert result["branches"][VICTIM]["status"] == "MISSING"
    assert f"missing: {VICTIM}" in result["explanation"]
