"""`python -m training benchmark`: labelled files through the running mesh (the shipped models
on loopback), per-file rows and a summary that counts refusals instead of dropping them."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path

import pytest

from dfmesh.client import Client
from training import benchmark
from training.loaders.public import LabeledMedia


def _row(name: str, label: int, method: str = "") -> LabeledMedia:
    return LabeledMedia(Path(name), label, name, "test", method)


def test_balanced_interleaves_classes_before_cutting() -> None:
    rows = [_row(f"r{i}", 0) for i in range(5)] + [_row(f"f{i}", 1) for i in range(2)]
    assert [r.path.name for r in benchmark.balanced(rows, 4)] == ["r0", "f0", "r1", "f1"]
    assert [r.path.name for r in benchmark.balanced(rows, None)] == \
        ["r0", "f0", "r1", "f1", "r2", "r3", "r4"]


def test_summarize_counts_errors_and_reports_each_method() -> None:
    def scored(label: int, prob: float, method: str = "", audio: float | None = None) -> dict:
        return {"label": label, "method": method, "probFake": prob, "earlyExit": False,
                "degraded": audio is None, "fusionHead": "5way",
                "branches": {"visual": prob, "audio": audio}}

    rows = [scored(0, 0.2, audio=0.1), scored(0, 0.4), scored(1, 0.9, "swap", 0.8),
            scored(1, 0.3, "reenact"),
            {"label": 1, "method": "swap", "error": {"code": "INVALID_ARGUMENT", "message": "x"}}]
    summary = benchmark.summarize(rows)
    assert (summary["files"], summary["scored"]) == (5, 4)
    assert summary["errors"] == {"INVALID_ARGUMENT": 1} and summary["degraded"] == 2
    assert summary["fused"]["n"] == 4 and summary["fused"]["auc"] == pytest.approx(0.75)
    assert summary["by_method"]["swap"]["auc"] == 1.0
    assert summary["by_method"]["reenact"]["auc"] == pytest.approx(0.5)
    assert summary["branches"]["audio"]["n"] == 2 and summary["branches"]["mri"] == {"n": 0}


def _layout(shared_data: Path, root: Path, per_class: int) -> None:
    for label in ("real", "fake"):
        folder = root / label
        folder.mkdir(parents=True)
        for path in sorted((shared_data / "dev").glob(f"genconvit__{label}__*.jpg"))[:per_class]:
            (folder / path.name).symlink_to(path)
    (root / "fake" / "empty.jpg").write_bytes(b"")


def test_benchmark_through_the_mesh(local_mesh, shared_data: Path, tmp_path: Path) -> None:
    _layout(shared_data, tmp_path / "data", per_class=4)
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    args = parser.parse_args(["--labelled", f"folders:{tmp_path / 'data'}",
                              "--address", local_mesh.fusion_addr, "--no-early-exit",
                              "--out", str(tmp_path / "out")])
    summary = benchmark.run(args)
    saved = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert (summary["files"], summary["scored"]) == (9, 8)
    [refused] = [f for f in saved["files"] if "error" in f]
    assert refused["path"].endswith("empty.jpg") and refused["error"]["message"]
    fused = summary["fused"]
    assert (fused["n"], fused["n_fake"]) == (8, 4) and 0.0 <= fused["auc"] <= 1.0
    assert summary["branches"]["visual"]["n"] == 8 and summary["branches"]["audio"] == {"n": 0}
    # The benchmark reports exactly what the service answers for that file.
    first = next(f for f in saved["files"] if "error" not in f)

    async def direct() -> float:
        async with Client(local_mesh.fusion_addr) as client:
            return (await client.analyze_result(first["path"], early_exit=False)).prob_fake

    assert math.isclose(asyncio.run(direct()), first["probFake"], abs_tol=1e-9)
    report = (tmp_path / "out" / "BENCHMARK.md").read_text()
    assert "8 of 9 files got a verdict" in report and "| fused |" in report
