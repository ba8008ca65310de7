"""A seventh detection branch, added as the "Adding a branch" section of docs/ARCHITECTURE.md
says: one registry entry (tests/seventh_branch/declaration.py) and its service module
(tests/seventh_branch/), with a tiny ONNX model made here. It runs in a real mesh of
processes beside the six, and shows up in the result, in fusion's and its own metrics, and
in the web UI's breakdown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.known_models import build_model, build_test_repo
from dfmesh.branches import BRANCH_NAMES
from dfmesh.client import Client, result_to_dict
from dfmesh.launcher import Mesh, isolated_env, start_gateway, start_mesh
from dfmesh.runtime.config import METRICS_PORT_OFFSET

pytestmark = pytest.mark.slow

NAME = "noise"
CLIP = "lipnet__GRID_bbaf2n.mpg"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    repo = tmp_path_factory.mktemp("models")
    build_test_repo(repo, prefer_shipped=True)
    build_model(repo / NAME / "1.0.0", NAME, {"image": ["N", 3, 64, 64]}, {"image": "ReduceMean"})
    env = isolated_env(DFMESH_MODEL_REPO=str(repo), DFMESH_RESULT_CACHE_SIZE="0",
                       DFMESH_EXTRA_BRANCHES="tests.seventh_branch.declaration",
                       DFMESH_METRICS_PORT="-1")  # each service: its port + 1000
    running = start_mesh(tmp_path_factory.mktemp("logs"), env,
                         names=("ingest", *BRANCH_NAMES, NAME, "fusion"),
                         modules={NAME: "tests.seventh_branch"})
    try:
        yield running
    finally:
        running.stop(15)


def analyze(mesh: Mesh, clip: Path, **options: object) -> dict:
    async def run() -> dict:
        async with Client(mesh.fusion_addr) as client:
            return result_to_dict(await client.analyze_result(clip, timeout=180, **options))
    return asyncio.run(run())


def metrics_text(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port + METRICS_PORT_OFFSET}/metrics", timeout=10).text


def test_the_seventh_branch_is_in_the_result_and_the_metrics(mesh: Mesh,
                                                             shared_data: Path) -> None:
    out = analyze(mesh, shared_data / "talking" / CLIP, early_exit=False)
    assert set(out["branches"]) == {*BRANCH_NAMES, NAME}
    noise = out["branches"][NAME]
    assert noise["status"] == "OK", noise
    assert noise["modelVersion"] == "1.0.0" and 0.0 < noise["prob"] < 1.0
    assert set(noise["features"]) == {"noise_prob_mean", "noise_prob_max", "noise_prob_p90"}
    assert noise["prob"] == pytest.approx(noise["features"]["noise_prob_mean"])
    # Its features are not fusion columns: the calibrated heads are the bundle's, unchanged.
    assert out["fusionHead"] == "5way" and len(out["features"]) == 12 and not out["degraded"]
    assert f"{NAME}" in out["timingsMs"]

    adaptive = analyze(mesh, shared_data / "talking" / CLIP, early_exit=False,
                       fusion="adaptive")
    assert NAME in adaptive["fusionHead"].removeprefix("adaptive:").split("+")

    fusion_metrics = metrics_text(mesh.ports["fusion"])
    assert f'deepfake_branch_call_seconds_count{{branch="{NAME}",outcome="ok"}}' in fusion_metrics
    own = metrics_text(mesh.ports[NAME])
    assert f'deepfake_branch_results_total{{branch="{NAME}",status="OK"}}' in own


def test_the_seventh_branch_shows_in_the_ui_breakdown(mesh: Mesh, shared_data: Path,
                                                      tmp_path: Path) -> None:
    from tests.browser.test_ui import CHROMEDRIVER, CHROMIUM, WEB_DIST, by_testid, upload, wait_for

    if not CHROMIUM.exists() or not CHROMEDRIVER.exists() or not WEB_DIST.is_dir():
        pytest.skip("no chromium, chromedriver or web/dist (scripts/setup.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    gateway, url = start_gateway(mesh.env, mesh.logs, "gateway-seventh")
    mesh.extra.append(gateway)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1280,1100",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    try:
        upload(driver, url, shared_data / "talking" / CLIP)
        wait_for(driver, lambda d: by_testid(d, "verdict-label"), 180, "the verdict")
        row = by_testid(driver, f"bar-{NAME}")
        assert row is not None, "the breakdown has no row for the seventh branch"
        assert row.get_attribute("data-usable") == "true"
        analysis_id = by_testid(driver, "app").get_attribute("data-analysis-id")
        result = httpx.get(f"{url}/v1/analyses/{analysis_id}", timeout=10).json()["result"]
        shown = row.find_element("css selector", ".chart__value").text
        assert shown == f"{result['branches'][NAME]['prob'] * 100:.0f}%"
        assert by_testid(driver, f"node-{NAME}").get_attribute("data-state") == "done"
    finally:
        driver.quit()
