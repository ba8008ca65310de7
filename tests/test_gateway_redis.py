"""Analysis state in a real redis-server (Debian's binary, started here): two gateway
processes share it, so the second answers GET and SSE for an analysis the first accepted."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.gateway_support import STAGE_ORDER, poll_until_finished, read_events, upload
from tests.mesh import Mesh, free_port, start_gateway, stop

pytestmark = pytest.mark.slow

RESULT_TTL_SECONDS = 30


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (Debian package redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.1)
        proc.url = url  # type: ignore[attr-defined]
        yield proc
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url(redis_server: subprocess.Popen) -> str:
    return redis_server.url  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def replicas(local_mesh: Mesh, redis_url: str) -> Iterator[tuple[str, str]]:
    env = dict(local_mesh.env, DFMESH_REDIS_URL=redis_url,
               DFMESH_RESULT_TTL_SECONDS=str(RESULT_TTL_SECONDS))
    first, url_a = start_gateway(env, local_mesh.logs, "gateway-redis-a")
    second, url_b = start_gateway(env, local_mesh.logs, "gateway-redis-b")
    yield url_a, url_b
    stop([first, second])


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "talking" / "lipnet__GRID_lbax4n.mpg"


def test_second_replica_streams_and_answers_for_the_first_ones_analysis(
        replicas, redis_url, clip) -> None:
    url_a, url_b = replicas
    with httpx.Client(timeout=120.0) as client:
        accepted = upload(client, url_a + "/v1/analyses", clip)
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        # Replica B was not asked to analyze anything: it follows through Redis, live.
        events = read_events(client, url_b + body["eventsUrl"])
        assert events[-1].event == "result"
        ranks = [STAGE_ORDER.index(e.data["stageName"]) for e in events[:-1]]
        assert ranks == sorted(ranks) and len(set(ranks)) >= 3
        final_b = client.get(url_b + body["statusUrl"]).json()
        final_a = client.get(url_a + body["statusUrl"]).json()
        assert final_b == final_a
        assert final_b["status"] == "complete"
        assert final_b["result"] == events[-1].data
        assert final_b["result"]["analysisId"] == body["analysisId"]

    store = redis.Redis.from_url(redis_url)
    try:
        key = f"dfmesh:analysis:{body['analysisId']}"
        assert 0 < store.ttl(key) <= RESULT_TTL_SECONDS
        assert 0 < store.ttl(key + ":events") <= RESULT_TTL_SECONDS
        assert store.llen(key + ":events") == len(events)
    finally:
        store.close()


def test_synchronous_analysis_on_one_replica_is_visible_on_the_other(replicas, clip) -> None:
    url_a, url_b = replicas
    with httpx.Client(timeout=120.0) as client:
        reply = upload(client, url_b + "/analyze", clip)
        assert reply.status_code == 200, reply.text
        analysis_id = reply.json()["analysisId"]
        final, _ = poll_until_finished(client, f"{url_a}/v1/analyses/{analysis_id}")
        assert final["result"]["verdict"] == reply.json()["result"]["verdict"]
        assert client.get(url_a + "/readyz").json()["store"] == "ok"


def test_redis_down_is_503_with_a_clear_message(replicas, redis_server, clip) -> None:
    """Runs last: it stops the redis-server."""
    url_a, _ = replicas
    redis_server.terminate()
    redis_server.wait(timeout=10)
    with httpx.Client(timeout=30.0) as client:
        ready = client.get(url_a + "/readyz")
        assert ready.status_code == 503 and ready.json()["store"] == "unreachable"
        reply = client.get(url_a + "/v1/analyses/0123")
        assert reply.status_code == 503, reply.text
        assert reply.json()["code"] == "store_unavailable" and "Redis" in reply.json()["error"]
        assert "Traceback" not in reply.text
        reply = upload(client, url_a + "/v1/analyses", clip)
        assert reply.status_code == 503 and reply.json()["code"] == "store_unavailable"
