"""The image build's inputs: every extra the Dockerfile installs exists and is fully pinned."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_requirements_module():
    spec = importlib.util.spec_from_file_location(
        "docker_requirements", REPO_ROOT / "docker" / "requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_extra_the_dockerfile_installs_is_pinned_exactly():
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    extras = re.findall(r"python docker/requirements.py ([a-z-]+) > requirements.txt", dockerfile)
    assert set(extras) == {"gateway", "fusion", "branch", "branch-gpu", "ingest"}
    pinned_requirements = load_requirements_module().pinned_requirements
    for extra in extras:
        requirements = pinned_requirements([extra])
        assert requirements, extra
        loose = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[\w.+]+", r)]
        assert not loose, f"{extra}: not pinned with ==: {loose}"


def test_branch_images_carry_onnxruntime_and_not_torch():
    pinned_requirements = load_requirements_module().pinned_requirements
    for extra, runtime in (("branch", "onnxruntime"), ("branch-gpu", "onnxruntime-gpu")):
        names = {r.split("==")[0] for r in pinned_requirements([extra])}
        assert runtime in names and not names & {"torch", "torchvision"}, extra
