"""The benchmark suite's quick mode runs end to end (local mesh as processes, in-process
pipeline, ONNX vs torch, gate, concurrency) and writes its table. No timed assertions: the
numbers depend on the machine; this keeps the command working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_writes_its_table(tmp_path: Path, shared_data: Path) -> None:
    env = {**os.environ, "DFMESH_SHARED_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--workdir", str(tmp_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "BENCHMARKS.quick.md").read_text()
    for heading in ("End to end through the local mesh", "Time per stage",
                    "ONNX Runtime vs PyTorch eager", "Gate", "Throughput", "Targets"):
        assert f"### {heading}" in report
    results = json.loads((tmp_path / "BENCHMARKS.quick.json").read_text())
    (clip, e2e), = results["e2e"].items()
    assert e2e["wall"]["median"] > 0 and e2e["stages_ms"]["ingest"] > 0
    assert results["in_process"][clip]["wall"]["median"] > 0
    assert results["floor"][clip]["wall"]["median"] > 0
    assert results["gate"]["exited"] is True
    assert [t["concurrency"] for t in results["throughput"]] == [1, 2]
    assert set(results["peak_rss_mib"]) >= {"ingest", "visual", "fusion"}
    assert {b["name"] for b in results["backends"]} >= {"tiny_gate", "MTCNN (per frame)"}
    assert "clip" in proc.stdout and "Targets:" in proc.stdout
    assert not (REPO_ROOT / "docs" / "BENCHMARKS.quick.md").exists()  # docs left alone
