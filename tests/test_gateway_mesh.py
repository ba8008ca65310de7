"""The REST gateway as a real process in front of the real mesh (ingest, six branches,
fusion as processes): the /analyze contract, the async flow, SSE, every limit and error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_support import (
    STAGE_ORDER,
    chunked_multipart,
    poll_until_finished,
    read_events,
    upload,
)
from tests.media import make_clip
from tests.mesh import Mesh, free_port, start_gateway, stop

pytestmark = pytest.mark.slow

BRANCHES = {"tiny_gate", "visual", "audio", "temporal", "sync", "mri"}


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "talking" / "lipnet__GRID_bbaf2n.mpg"


@pytest.fixture(scope="module")
def small_clip(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 1.5 s of the real clip, well under the strict gateway's 300 kB limit."""
    return make_clip(tmp_path_factory.mktemp("media") / "small.mp4", source=clip,
                     seconds=1.5, size=(320, 240))


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def gateway(local_mesh: Mesh, spool_dir: Path) -> Iterator[str]:
    proc, url = start_gateway(local_mesh.env, local_mesh.logs, "gateway-main",
                              DFMESH_SPOOL_DIR=str(spool_dir))
    yield url
    stop([proc])


@pytest.fixture(scope="module")
def strict_gateway(local_mesh: Mesh) -> Iterator[str]:
    """Small limits: 300 kB uploads, one analysis at a time, results kept for 2 s."""
    proc, url = start_gateway(local_mesh.env, local_mesh.logs, "gateway-strict",
                              DFMESH_MAX_UPLOAD_BYTES="300000",
                              DFMESH_MAX_CONCURRENT_ANALYSES="1",
                              DFMESH_BUSY_RETRY_SECONDS="7", DFMESH_RESULT_TTL_SECONDS="2")
    yield url
    stop([proc])


@pytest.fixture(scope="module")
def orphan_gateway(local_mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway whose fusion address has nothing listening, and no built web UI."""
    proc, url = start_gateway(local_mesh.env, local_mesh.logs, "gateway-orphan",
                              DFMESH_FUSION_ADDR=f"127.0.0.1:{free_port()}",
                              DFMESH_WEB_DIST=str(tmp_path_factory.mktemp("no-ui")))
    yield url
    stop([proc])


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120.0) as c:
        yield c


def check_result(result: dict) -> None:
    """The full result: contract keys, a calibrated confidence that matches probFake."""
    assert result["verdict"] in ("Deepfake", "Authentic")
    assert 0.0 <= result["confidence"] <= 100.0
    p, threshold = result["probFake"], result["threshold"] or 0.5
    assert (result["verdict"] == "Deepfake") == (p >= threshold)
    expected = 100 * (p if result["verdict"] == "Deepfake" else 1 - p)
    assert result["confidence"] == pytest.approx(expected, abs=0.01)
    assert set(result["branches"]) | set(result["missingBranches"]) >= BRANCHES
    for name, report in result["branches"].items():
        if report["status"] in ("OK", "FALLBACK"):
            assert report["model"] and report["modelVersion"], name
            assert 0.0 <= report["prob"] <= 1.0
    assert isinstance(result["explanation"], str) and result["explanation"]
    assert result["fusionHead"]


# --- the contract and the flows ---

def test_analyze_answers_the_first_designs_contract(gateway, client, clip) -> None:
    reply = upload(client, gateway + "/analyze", clip)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "complete" and body["error"] is None
    assert body["percent"] == 100.0 and body["stageName"] == "Final classification"
    check_result(body["result"])
    # The synchronous analysis is recorded too, under its id.
    again = client.get(f"{gateway}/status/{body['analysisId']}").json()
    assert again["result"]["probFake"] == body["result"]["probFake"]


def test_async_analysis_polled_to_completion(gateway, client, clip, spool_dir) -> None:
    reply = upload(client, gateway + "/v1/analyses", clip)
    assert reply.status_code == 202, reply.text
    accepted = reply.json()
    analysis_id = accepted["analysisId"]
    assert reply.headers["location"] == accepted["statusUrl"] == f"/v1/analyses/{analysis_id}"
    final, running = poll_until_finished(client, gateway + accepted["statusUrl"])
    assert final["status"] == "complete", final
    check_result(final["result"])
    assert final["result"]["analysisId"] == analysis_id
    for body in running:
        assert body["status"] == "running" and body["result"] is None
        assert body["stageName"] in STAGE_ORDER and 0 <= body["percent"] <= 100
    assert client.get(f"{gateway}/status/{analysis_id}").json() == final
    assert not list(spool_dir.iterdir()), "the spooled upload was not removed"


def test_events_stream_stages_in_order_then_the_result(gateway, client, clip) -> None:
    accepted = upload(client, gateway + "/v1/analyses", clip).json()
    events = read_events(client, gateway + accepted["eventsUrl"])
    assert [e.event for e in events[:-1]] == ["progress"] * (len(events) - 1)
    assert events[-1].event == "result"
    assert [e.id for e in events] == [str(i) for i in range(len(events))]
    ranks = [STAGE_ORDER.index(e.data["stageName"]) for e in events[:-1]]
    assert ranks == sorted(ranks), [e.data["stageName"] for e in events]
    assert {"Extracting frames", "Running models", "Final classification"} <= {
        e.data["stageName"] for e in events[:-1]}
    percents = [e.data["percent"] for e in events[:-1]]
    assert percents == sorted(percents) and percents[-1] == 100.0
    finished = {e.data["branch"] for e in events[:-1] if e.data["branch"]}
    assert finished <= BRANCHES and "tiny_gate" in finished
    states = {e.data["branch"]: e.data["branchState"] for e in events[:-1] if e.data["branch"]}
    branches = events[-1].data["branches"]
    assert states == {b: branches[b]["status"] for b in states}
    check_result(events[-1].data)
    final = client.get(gateway + accepted["statusUrl"]).json()
    assert final["result"] == events[-1].data
    # A reconnecting EventSource resumes after Last-Event-ID.
    resumed = read_events(client, gateway + accepted["eventsUrl"],
                          headers={"Last-Event-ID": events[-3].id})
    assert [e.id for e in resumed] == [events[-2].id, events[-1].id]


def test_health_readiness_metrics_and_openapi(gateway, client) -> None:
    assert client.get(gateway + "/healthz").json() == {"status": "ok"}
    ready = client.get(gateway + "/readyz")
    assert ready.status_code == 200 and ready.json()["fusion"] == "SERVING"
    metrics = client.get(gateway + "/metrics").text
    assert 'deepfake_http_requests_total{code="202",method="POST",route="/v1/analyses"}' in metrics
    assert "deepfake_gateway_analyses_total" in metrics
    schema = client.get(gateway + "/openapi.json").json()
    for path in ("/analyze", "/v1/analyses", "/v1/analyses/{analysis_id}",
                 "/v1/analyses/{analysis_id}/events", "/status/{analysis_id}"):
        assert path in schema["paths"]
    post = schema["paths"]["/v1/analyses"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"413", "415", "422", "429", "503"} <= set(post["responses"])
    assert schema["components"]["schemas"]["AnalysisStatus"]["examples"]
    schemas = schema["components"]["schemas"]
    assert schemas["BranchReport"]["properties"]["status"]["enum"] == [
        "OK", "FALLBACK", "NO_INPUT", "MISSING", "NOT_RUN"]
    assert schemas["AnalysisResult"]["examples"][0]["branches"]["visual"]["modelVersion"]


def test_unknown_analysis_is_404(gateway, client) -> None:
    for path in ("/v1/analyses/nope", "/status/nope", "/v1/analyses/nope/events"):
        reply = client.get(gateway + path)
        assert reply.status_code == 404, path
        assert "expired" in reply.json()["error"]


# --- limits and errors ---

def test_not_media_is_415_by_content_not_name(gateway, client, tmp_path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"%PDF-1.7\n" + os.urandom(4096))
    for path in ("/analyze", "/v1/analyses"):
        reply = upload(client, gateway + path, fake)
        assert reply.status_code == 415, reply.text
        body = reply.json()
        assert body["status"] == "error" and body["code"] == "unsupported_media_type"
        assert "application/pdf" in body["error"] and "MP4" in body["error"]


def test_missing_field_empty_and_undecodable_are_422(gateway, client, clip, tmp_path) -> None:
    reply = upload(client, gateway + "/analyze", clip, field="video")
    assert reply.status_code == 422 and "'file'" in reply.json()["error"]
    reply = client.post(gateway + "/v1/analyses", data={"file": "not a file"})
    assert reply.status_code == 422 and reply.json()["code"] == "missing_file"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    reply = upload(client, gateway + "/analyze", empty)
    assert reply.status_code == 422 and reply.json()["code"] == "empty_file"
    # Real MP4 magic bytes, then noise: only ingest can tell it is unusable.
    broken = tmp_path / "broken.mp4"
    real_mp4 = next((clip.parent).glob("video-retalking__face_*.mp4"))
    broken.write_bytes(real_mp4.read_bytes()[:64] + os.urandom(64 * 1024))
    reply = upload(client, gateway + "/analyze", broken)
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "unprocessable" and reply.json()["error"]


def test_clip_over_the_duration_limit_is_422(gateway, client, shared_data) -> None:
    long_clip = shared_data / "talking" / "liveportrait__driving_d6.mp4"  # 33.6 s > 20 s
    reply = upload(client, gateway + "/analyze", long_clip)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["code"] == "too_long" and "DFMESH_MAX_DURATION_SECONDS" in body["error"]


def test_too_large_is_413_early_and_while_streaming(strict_gateway, client, clip) -> None:
    assert clip.stat().st_size > 300_000
    reply = upload(client, strict_gateway + "/analyze", clip)  # Content-Length says so
    assert reply.status_code == 413 and "293 KiB" in reply.json()["error"]
    body, headers = chunked_multipart(clip)  # no Content-Length: counted as it streams
    reply = client.post(strict_gateway + "/v1/analyses", content=body, headers=headers)
    assert reply.status_code == 413, reply.text
    assert reply.json()["code"] == "too_large"


def test_over_the_concurrency_limit_is_429_with_retry_after(strict_gateway, client,
                                                            small_clip) -> None:
    first = upload(client, strict_gateway + "/v1/analyses", small_clip)
    assert first.status_code == 202, first.text
    second = upload(client, strict_gateway + "/v1/analyses", small_clip)
    assert second.status_code == 429, second.text
    assert second.headers["retry-after"] == "7"
    assert "try again in 7 s" in second.json()["error"]
    final, _ = poll_until_finished(client, strict_gateway + first.json()["statusUrl"])
    assert final["status"] == "complete"
    # The slot is free again once the first finished.
    third = upload(client, strict_gateway + "/analyze", small_clip)
    assert third.status_code == 200, third.text


def test_finished_analyses_expire_after_the_ttl(strict_gateway, client, small_clip) -> None:
    import time

    accepted = upload(client, strict_gateway + "/v1/analyses", small_clip).json()
    final, _ = poll_until_finished(client, strict_gateway + accepted["statusUrl"])
    assert final["status"] == "complete"
    time.sleep(2.5)
    assert client.get(strict_gateway + accepted["statusUrl"]).status_code == 404


def test_fusion_down_is_503_with_a_clear_message(orphan_gateway, client, clip) -> None:
    assert client.get(orphan_gateway + "/healthz").status_code == 200
    ready = client.get(orphan_gateway + "/readyz")
    assert ready.status_code == 503 and ready.json()["fusion"] == "not serving"
    reply = upload(client, orphan_gateway + "/analyze", clip)
    assert reply.status_code == 503
    body = reply.json()
    assert body["code"] == "unavailable" and "unavailable" in body["error"]
    assert "Traceback" not in reply.text and "ipv4:" not in reply.text
    accepted = upload(client, orphan_gateway + "/v1/analyses", clip)
    assert accepted.status_code == 202
    final, _ = poll_until_finished(client, orphan_gateway + accepted.json()["statusUrl"])
    assert final["status"] == "error" and final["httpStatus"] == 503


def test_without_a_built_ui_root_says_how_to_build_it(orphan_gateway, client) -> None:
    reply = client.get(orphan_gateway + "/")
    assert reply.status_code == 503 and reply.headers["content-type"].startswith("text/html")
    assert "npm run build" in reply.text and "scripts/setup.sh" in reply.text
