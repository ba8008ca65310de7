"""The web UI in Debian's headless Chromium (driven by Selenium through Debian's
chromedriver; no browser is downloaded), served by a real gateway in front of the real
mesh: upload a real clip, watch the pipeline advance, read the verdict and breakdown;
an unusable file shows its error. Screenshots go to $DFMESH_ARTIFACTS/browser (default
artifacts/browser/)."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dfmesh.runtime.config import REPO_ROOT
from tests.mesh import Mesh, start_gateway, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WEB_DIST = REPO_ROOT / "web" / "dist"
ARTIFACTS = Path(os.environ.get("DFMESH_ARTIFACTS", REPO_ROOT / "artifacts")) / "browser"

# Records every stage label and node state the page shows, as it shows them.
WATCH_DOM = """
window.__seen = {stages: [], states: {}};
const record = () => {
  const stage = document.querySelector('[data-testid=stage-name]');
  if (stage) {
    const text = stage.firstChild ? stage.firstChild.textContent.trim() : '';
    const list = window.__seen.stages;
    if (text && list[list.length - 1] !== text) list.push(text);
  }
  document.querySelectorAll('[data-testid^=node-]').forEach((n) => {
    const name = n.dataset.testid.slice(5);
    const seen = window.__seen.states[name] = window.__seen.states[name] || [];
    if (seen[seen.length - 1] !== n.dataset.state) seen.push(n.dataset.state);
  });
};
new MutationObserver(record).observe(document.body,
  {subtree: true, childList: true, attributes: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser_ready() -> None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(DFMESH_SETUP_TEST_DEPS=1 scripts/setup.sh installs them)")
    pytest.importorskip("selenium", reason="selenium (dev extra) is not installed")
    if not (WEB_DIST / "index.html").is_file():
        pytest.skip("the web UI is not built: run scripts/setup.sh, or "
                    "`cd web && npm ci && npm run build`")


@pytest.fixture(scope="module")
def ui_url(browser_ready, local_mesh: Mesh) -> Iterator[str]:
    proc, url = start_gateway(local_mesh.env, local_mesh.logs, "gateway-browser")
    yield url
    stop([proc])


API_KEY = secrets.token_hex(24)


@pytest.fixture(scope="module")
def keyed_ui_url(browser_ready, local_mesh: Mesh) -> Iterator[str]:
    """A gateway with API keys on, as deployed (DFMESH_AUTH_REQUIRED), in front of the mesh."""
    proc, url = start_gateway(local_mesh.env, local_mesh.logs, "gateway-browser-keys",
                              DFMESH_API_KEYS=f"{API_KEY}=browser-test",
                              DFMESH_AUTH_REQUIRED="true")
    yield url
    stop([proc])


@pytest.fixture(scope="module")
def driver(browser_ready, tmp_path_factory: pytest.TempPathFactory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1100",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    chrome.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield chrome
    chrome.quit()


def wait_for(driver, condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.05)
    driver.save_screenshot(str(ARTIFACTS / f"timeout-{what.replace(' ', '-')}.png"))
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def by_testid(driver, testid: str):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}]")
    return found[0] if found else None


def full_page_screenshot(driver, name: str, width: int) -> None:
    """The whole page, once its animations have settled."""
    time.sleep(1.0)
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, height + 120)
    time.sleep(0.3)
    driver.save_screenshot(str(ARTIFACTS / name))


def upload(driver, url: str, path: Path) -> float:
    driver.get(url)
    wait_for(driver, lambda d: by_testid(d, "upload-zone"), 15, "the page")
    driver.execute_script(WATCH_DOM)
    start = time.monotonic()
    by_testid(driver, "file-input").send_keys(str(path))
    return start


def test_upload_a_clip_watch_the_pipeline_and_read_the_verdict(driver, ui_url,
                                                               shared_data) -> None:
    # A clip no other test sends through the shared mesh: a cached result would replay the
    # branches' progress in one burst, and the pipeline's running states would not show.
    clip = shared_data / "talking" / "lipnet__GRID_swiz3n.mpg"
    driver.get(ui_url)
    simulate = wait_for(driver, lambda d: by_testid(d, "simulate-toggle"), 15, "the page")
    assert not simulate.is_selected(), "simulate mode must be off by default"

    start = upload(driver, ui_url, clip)
    verdict = wait_for(driver, lambda d: by_testid(d, "verdict-label"), 120, "the verdict")
    seconds_to_verdict = time.monotonic() - start

    seen = driver.execute_script("return window.__seen;")
    # The stages advanced in order, driven by the real events.
    order = ["Queued", "Extracting frames", "Running models", "Final classification"]
    stages = [s for s in seen["stages"] if s in order]
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages), stages
    assert {"Extracting frames", "Running models"} & set(stages), seen["stages"]
    assert stages[-1] == "Final classification"
    assert "active" in seen["states"]["ingest"] and seen["states"]["ingest"][-1] == "done"
    assert seen["states"]["fusion"][-1] == "done"
    assert any("active" in seen["states"][b] for b in ("visual", "audio", "mri", "sync"))

    # The verdict and breakdown on the page are the API's result for this analysis.
    analysis_id = by_testid(driver, "app").get_attribute("data-analysis-id")
    result = httpx.get(f"{ui_url}/v1/analyses/{analysis_id}", timeout=10).json()["result"]
    assert verdict.text == result["verdict"]
    assert by_testid(driver, "verdict-confidence").text == f"{result['confidence']:.1f}%"
    assert by_testid(driver, "explanation").text == result["explanation"]
    assert by_testid(driver, "simulated-badge") is None
    for branch in ("visual", "audio", "temporal", "sync", "mri", "tiny_gate"):
        row = by_testid(driver, f"bar-{branch}")
        assert row is not None, branch
        report = result["branches"].get(branch)
        if row.get_attribute("data-usable") == "true":
            shown = row.find_element("css selector", ".chart__value").text
            assert shown == f"{report['prob'] * 100:.0f}%", branch
    versions = by_testid(driver, "model-versions").text
    for report in result["branches"].values():
        if report["model"]:
            assert report["model"] in versions and f"v{report['modelVersion']}" in versions
    (ARTIFACTS / "ui-timing.json").write_text(json.dumps({
        "clip": clip.name, "seconds_from_upload_to_verdict": round(seconds_to_verdict, 2),
        "ui_elapsed_ms": int(by_testid(driver, "elapsed").get_attribute("data-ms")),
        "server_timings_ms": result["timingsMs"]}, indent=2))
    print(f"\nupload to verdict shown: {seconds_to_verdict:.2f} s ({clip.name})")
    full_page_screenshot(driver, "ui-verdict.png", 1280)

    # A narrow phone screen: everything fits the width.
    driver.set_window_size(390, 844)
    time.sleep(0.5)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth;")
    full_page_screenshot(driver, "ui-phone.png", 390)
    driver.set_window_size(1280, 1100)
    assert overflow <= 1, f"page is {overflow}px wider than a phone screen"


def test_a_clip_without_audio_says_so(driver, ui_url, shared_data) -> None:
    clip = shared_data / "talking" / "liveportrait__driving_d0.mp4"  # silent, 3 s
    upload(driver, ui_url, clip)
    wait_for(driver, lambda d: by_testid(d, "verdict-label"), 120, "the verdict")
    analysis_id = by_testid(driver, "app").get_attribute("data-analysis-id")
    result = httpx.get(f"{ui_url}/v1/analyses/{analysis_id}", timeout=10).json()["result"]
    assert result["branches"]["audio"]["status"] in ("NO_INPUT", "NOT_RUN")
    notices = [n.text for n in driver.find_elements("css selector", "[data-testid=input-notice]")]
    assert any("No audio track" in n for n in notices), notices
    audio_row = by_testid(driver, "bar-audio")
    assert audio_row.get_attribute("data-usable") == "false"
    assert audio_row.find_element("css selector", ".chart__note").text
    assert by_testid(driver, "node-audio").get_attribute("data-state") in ("noinput", "skipped")
    full_page_screenshot(driver, "ui-no-audio.png", 1280)
    driver.set_window_size(1280, 1100)


def test_an_unusable_file_shows_its_error(driver, ui_url, tmp_path) -> None:
    not_media = tmp_path / "holiday.mp4"
    not_media.write_text("this is a text file with a video's name\n" * 50)
    upload(driver, ui_url, not_media)
    error = wait_for(driver, lambda d: by_testid(d, "error"), 30, "the error")
    assert error.get_attribute("data-code") == "unsupported_media_type"
    assert by_testid(driver, "error-title").text == "Not a file we can analyze"
    assert "not a recognised media file" in by_testid(driver, "error-message").text
    assert by_testid(driver, "verdict") is None
    full_page_screenshot(driver, "ui-error.png", 1280)



def test_behind_api_keys_the_ui_asks_for_a_key_once_then_analyzes(driver, keyed_ui_url,
                                                                  shared_data) -> None:
    from selenium.webdriver.common.by import By

    def key_panel_state(d):
        panel = by_testid(d, "api-key-needed")
        return panel.get_attribute("data-state") if panel else None

    # No key yet: a clear "API key needed" state, and uploads are off until one is given.
    driver.get(keyed_ui_url)
    wait_for(driver, lambda d: key_panel_state(d) == "needed", 15, "the API key panel")
    assert by_testid(driver, "api-key-title").text == "API key needed"
    assert by_testid(driver, "upload-zone").get_attribute("aria-disabled") == "true"
    assert by_testid(driver, "app").get_attribute("data-key-state") == "needed"
    full_page_screenshot(driver, "ui-api-key-needed.png", 1280)
    driver.set_window_size(1280, 1100)

    # A wrong key is refused, and says so.
    by_testid(driver, "api-key-input").send_keys("not-the-key-" + "0" * 24)
    by_testid(driver, "api-key-save").click()
    wait_for(driver, lambda d: key_panel_state(d) == "rejected", 15, "the key refused")
    assert by_testid(driver, "api-key-title").text == "API key not accepted"
    assert driver.execute_script("return sessionStorage.getItem('dfmesh.apiKey')") != API_KEY

    # The right key: accepted, kept for this tab (sessionStorage), not asked for again on reload.
    by_testid(driver, "api-key-input").send_keys(API_KEY)
    by_testid(driver, "api-key-save").click()
    wait_for(driver, lambda d: by_testid(d, "api-key-set"), 15, "the key accepted")
    assert driver.execute_script("return sessionStorage.getItem('dfmesh.apiKey')") == API_KEY
    assert driver.execute_script("return localStorage.getItem('dfmesh.apiKey')") is None

    # upload() reloads the page: the key held for the session is used without asking.
    clip = shared_data / "talking" / "lipnet__GRID_bbaf2n.mpg"
    upload(driver, keyed_ui_url, clip)
    verdict = wait_for(driver, lambda d: by_testid(d, "verdict-label"), 120, "the verdict")
    assert by_testid(driver, "api-key-needed") is None
    analysis_id = by_testid(driver, "app").get_attribute("data-analysis-id")
    status_url = f"{keyed_ui_url}/v1/analyses/{analysis_id}"
    assert httpx.get(status_url, timeout=10).status_code == 401  # the key really was needed
    result = httpx.get(status_url, headers={"Authorization": f"Bearer {API_KEY}"},
                       timeout=10).json()["result"]
    assert verdict.text == result["verdict"]
    seen = driver.execute_script("return window.__seen;")
    assert seen["states"]["fusion"][-1] == "done"  # progress events came through with the key
    full_page_screenshot(driver, "ui-api-key-verdict.png", 1280)
    driver.set_window_size(1280, 1100)

    # Forgetting the key brings the panel back and clears the tab's storage.
    driver.find_element(By.CSS_SELECTOR, "[data-testid=api-key-forget]").click()
    wait_for(driver, lambda d: key_panel_state(d) == "needed", 15, "the panel again")
    assert driver.execute_script("return sessionStorage.getItem('dfmesh.apiKey')") is None
