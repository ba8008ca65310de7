"""Fuzzing in CI with fixed budgets: atheris over ingest's probe/classify/decode of arbitrary
bytes (fuzz/ingest_fuzz.py, 30 s), and schemathesis against the gateway's OpenAPI document
(fixed seed and example count) on the reliability stack.

Checks left out of the schemathesis run, and why:
- positive_data_acceptance: the schema can only say "file: binary"; an empty file (422) or
  a PDF (415) is schema-valid and still refused on purpose.
- allow_header_conformance, unsupported_method: the web UI is mounted at "/" (StaticFiles),
  which answers a method an API path does not have (GET /analyze, OPTIONS /analyze) as
  a static path: 404 or 405 with `Allow: GET, HEAD`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dfmesh.runtime.config import REPO_ROOT
from tests.reliability.support import Stack

pytestmark = pytest.mark.slow

FUZZ_SECONDS = int(os.environ.get("DFMESH_FUZZ_SECONDS", "30"))
SCHEMATHESIS_EXAMPLES = 5
SCHEMATHESIS_SEED = 20261123
ARTIFACTS = REPO_ROOT / "artifacts" / "reliability"


def test_atheris_fuzz_of_ingest_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    script = REPO_ROOT / "fuzz" / "ingest_fuzz.py"
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    subprocess.run([sys.executable, str(script), "--make-seeds", str(seeds)], check=True,
                   timeout=120)
    corpus.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(script), f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=3072",
         "-timeout=60", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1",
         str(corpus), str(seeds)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=FUZZ_SECONDS + 240)
    log = proc.stdout + proc.stderr
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "ingest_fuzz.log").write_text(log[-20000:])
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(
        p.name for p in tmp_path.glob("timeout-*")) + sorted(p.name for p in tmp_path.glob("oom-*"))
    assert proc.returncode == 0 and not crashes, (crashes, log[-4000:])
    runs = int(re.search(r"Done (\d+) runs", log).group(1))
    assert runs >= 20, log[-2000:]


def test_schemathesis_against_the_gateway_openapi(stack: Stack, tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [str(schemathesis), "run", f"{stack.gateway_url}/openapi.json", "--checks", "all",
         "--exclude-checks",
         "positive_data_acceptance,allow_header_conformance,unsupported_method",
         "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", str(SCHEMATHESIS_SEED),
         "--max-time", "90", "--request-timeout", "60", "--workers", "1", "--no-color",
         "--report", "junit", "--report-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=400)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "schemathesis.log").write_text(proc.stdout[-30000:] + proc.stderr[-5000:])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "passed" in proc.stdout
