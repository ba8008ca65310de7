"""Access and integrity: API keys on a real gateway process (401/403/429 with clear
messages, open probes and UI), the key list's validation at start-up, a tampered fusion
bundle stopping the fusion process, no shell strings anywhere a service runs a program.

Covered elsewhere: mutual TLS refusing clients without a valid certificate
(tests/test_tls.py), a tampered branch artifact stopping the branch process
(tests/test_branch_processes.py::test_tampered_artifact_stops_the_process), checksum refusals
in the loaders (tests/test_branch_model_server.py, tests/test_fusion_bundle.py).
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dfmesh.runtime.config import REPO_ROOT
from dfmesh.runtime.model_repo import load_verified
from gateway.auth import ApiKeyConfigError, TokenBucket, parse_api_keys, presented_key
from tests.media import make_clip
from tests.mesh import Mesh, base_env, free_port, launch, start_gateway, stop

ALICE = "alice-0123456789abcdef0123"
DASHBOARD = "dash-0123456789abcdef01234"
BURST = 2


# --- pure functions ---

def test_key_list_parses_clients_and_scopes() -> None:
    keys = parse_api_keys(f"{ALICE}=alice, {DASHBOARD}=dashboard:read\n# comment\n")
    assert sorted((c.name, c.scope) for c in keys.values()) == [("alice", "analyze"),
                                                                ("dashboard", "read")]
    assert ALICE not in keys and all(len(k) == 64 for k in keys)  # digests, not keys


@pytest.mark.parametrize("text, complaint", [
    ("nokey", "not 'key=client[:scope]'"),
    (f"{ALICE}=alice:admin", "scope 'admin'"),
    ("short=alice", "shorter than 16"),
    (f"{ALICE}=a,{ALICE}=b", "repeats a key"),
])
def test_bad_key_lists_are_refused_without_echoing_keys(text: str, complaint: str) -> None:
    with pytest.raises(ApiKeyConfigError) as info:
        parse_api_keys(text)
    assert complaint in str(info.value) and ALICE not in str(info.value)


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(capacity=2, per_second=0.5, now=0.0)
    assert bucket.take(now=0.0) == 0.0 and bucket.take(now=0.0) == 0.0
    assert bucket.take(now=0.0) == pytest.approx(2.0)   # one token every 2 s
    assert bucket.take(now=1.0) == pytest.approx(1.0)
    assert bucket.take(now=2.0) == 0.0


def test_key_headers() -> None:
    assert presented_key({b"authorization": b"Bearer abc"}) == "abc"
    assert presented_key({b"x-api-key": b"abc"}) == "abc"
    assert presented_key({b"authorization": b"Basic abc"}) is None
    assert presented_key({}) is None


# --- a gateway process with keys ---

@pytest.fixture(scope="module")
def keyed_gateway(local_mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"# clients\n{DASHBOARD}=dashboard:read\n")
    proc, url = start_gateway(local_mesh.env, local_mesh.logs, "gateway-keys",
                              DFMESH_API_KEYS=f"{ALICE}=alice", DFMESH_API_KEYS_FILE=str(keys),
                              DFMESH_AUTH_REQUIRED="true", DFMESH_RATE_LIMIT_BURST=str(BURST),
                              DFMESH_RATE_LIMIT_PER_MINUTE="6")
    yield url
    stop([proc])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("m") / "c.mp4", seconds=1.0, size=(160, 120),
                     audio=False).read_bytes()


def test_probes_metrics_docs_and_ui_stay_open(keyed_gateway: str) -> None:
    with httpx.Client(base_url=keyed_gateway) as http:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/"):
            assert http.get(path).status_code in (200, 503), path  # / is 503 without a UI build


def test_missing_or_invalid_key_is_401_with_www_authenticate(keyed_gateway: str,
                                                             clip: bytes) -> None:
    with httpx.Client(base_url=keyed_gateway, timeout=30) as http:
        none = http.post("/analyze", files={"file": ("c.mp4", clip)})
        wrong = http.get("/v1/analyses/abc", headers={"Authorization": "Bearer not-a-key-at-all"})
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <key>" in none.json()["error"]
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers[
        "www-authenticate"]
    assert wrong.json()["code"] == "unauthorized" and "not valid" in wrong.json()["error"]


def test_read_only_key_may_read_but_not_start(keyed_gateway: str, clip: bytes) -> None:
    with httpx.Client(base_url=keyed_gateway, timeout=30, headers={"X-API-Key": DASHBOARD}) as h:
        post = h.post("/analyze", files={"file": ("c.mp4", clip)})
        get = h.get("/v1/analyses/0123")
    assert post.status_code == 403 and "dashboard is read-only" in post.json()["error"]
    assert get.status_code == 404  # past the key check: the analysis does not exist


def test_valid_key_analyzes_then_its_rate_limit_answers_429(keyed_gateway: str,
                                                             clip: bytes) -> None:
    auth = {"Authorization": f"Bearer {ALICE}"}
    with httpx.Client(base_url=keyed_gateway, timeout=120, headers=auth) as http:
        replies = [http.post("/analyze", files={"file": ("c.mp4", clip)})
                   for _ in range(BURST + 1)]
        other = http.post("/analyze", files={"file": ("c.mp4", clip)},
                          headers={"Authorization": "", "X-API-Key": DASHBOARD})
    assert [r.status_code for r in replies[:BURST]] == [200] * BURST, replies[0].text
    assert replies[0].json()["result"]["verdict"] in ("Deepfake", "Authentic")
    limited = replies[BURST]
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 10
    assert "alice" in limited.json()["error"] and "per minute" in limited.json()["error"]
    assert other.status_code == 403  # buckets and scopes are per key


@pytest.mark.parametrize("env, complaint", [
    ({}, "DFMESH_AUTH_REQUIRED is set but no API key is configured"),
    ({"DFMESH_API_KEYS_FILE": "/nonexistent/api-keys"},
     "DFMESH_API_KEYS_FILE: cannot read /nonexistent/api-keys"),
    ({"DFMESH_API_KEYS": f"{ALICE}=alice:root"}, "scope 'root'"),
])
def test_auth_required_without_usable_keys_stops_the_gateway(tmp_path: Path, env: dict,
                                                             complaint: str) -> None:
    proc = launch("gateway", "gateway-nokeys", free_port(),
                  base_env(DFMESH_AUTH_REQUIRED="true", **env), tmp_path)
    assert proc.popen.wait(timeout=30) == 2
    assert complaint in proc.tail() and ALICE not in proc.tail()


# --- model integrity, at process level ---

def test_tampered_fusion_bundle_stops_the_fusion_process(local_mesh: Mesh,
                                                         tmp_path: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(Path(local_mesh.env["DFMESH_MODEL_REPO"]) / "fusion", repo / "fusion")
    artifact = load_verified(repo, "fusion").artifact_path
    payload = bytearray(artifact.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    artifact.write_bytes(bytes(payload))
    proc = launch("services.fusion", "fusion-tampered", free_port(),
                  dict(local_mesh.env, DFMESH_MODEL_REPO=str(repo)), tmp_path)
    assert proc.popen.wait(timeout=60) != 0
    assert "checksum mismatch" in proc.tail(60)


# --- no shell strings ---

SHELL_CALLS = {"system", "popen", "create_subprocess_shell", "getoutput", "getstatusoutput"}


def _shell_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in SHELL_CALLS:
                found.append(f"{path}:{node.lineno}: {name}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    found.append(f"{path}:{node.lineno}: shell=...")
    return found


def test_no_shell_strings_in_services_gateway_or_runtime() -> None:
    files = [p for d in ("services", "gateway", "dfmesh") for p in (REPO_ROOT / d).rglob("*.py")]
    assert len(files) > 30
    assert [f for p in files for f in _shell_uses(p)] == []


def test_the_shell_check_finds_shell_strings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os, subprocess\nos.system('ffmpeg -i x')\n"
                   "subprocess.run('ffmpeg', shell=True)\n")
    assert len(_shell_uses(bad)) == 2


def test_ffmpeg_is_given_argument_lists() -> None:
    """Every subprocess call in ingest passes an argument list, never a string."""
    calls = 0
    for name in ("decode.py", "audio.py", "probe.py"):
        tree = ast.parse((REPO_ROOT / "services" / "ingest" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                    "run", "create_subprocess_exec", "Popen"):
                first = node.args[0] if node.args else None
                assert not isinstance(first, ast.Constant | ast.JoinedStr), (name, node.lineno)
                calls += 1
    assert calls >= 3
