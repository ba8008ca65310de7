"""The deploy tests run the mesh from its container images under podman: minutes of work
that needs the images built first (bash scripts/images.sh). They run only when asked for:

    .venv/bin/pytest -m deploy tests/deploy
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `deploy` tests unless the marker expression selects them (`-m deploy`)."""
    if "deploy" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="deploy test, needs the podman images: run `bash "
                                   "scripts/images.sh && .venv/bin/pytest -m deploy tests/deploy`")
    for item in items:
        if item.get_closest_marker("deploy") is not None:
            item.add_marker(skip)
