"""Score labelled media through the running mesh and report what the service gets right.

    dfmesh up
    python -m training benchmark --labelled dfdc:/data/dfdc_train_part_0 --limit 400 \\
        --out runs/benchmark/dfdc0

Every file goes through the gRPC API users call (`dfmesh.client`), so the numbers are the
service's own, early exit, degraded heads and all. Reported per file and summarized: the
fused verdict (AUC, accuracy, F1, log-loss, Brier, ECE, TPR at 1% FPR, confusion), each
branch's own probability on the files it scored, and the fused number per manipulation
method (real files against one method's fakes). Files the service refuses (no face in an
image, a corrupt file) are counted and listed with the service's message, never dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpc import aio
from tqdm import tqdm

from dfmesh.client import FUSION_MODES, Client, result_to_dict
from dfmesh.preprocess.stats import BRANCHES
from dfmesh.runtime.config import default_address
from training.evaluation.metrics import binary_report
from training.loaders.public import LabeledMedia, LabelledSpecError, labelled_rows

SCORED = ("OK", "FALLBACK")
"""Branch statuses that carry a probability."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labelled", action="append", required=True, metavar="SPEC",
                        help="dfdc:PATH | ff++:PATH[@c23] | asvspoof:PROTOCOL@AUDIO_DIR | "
                             "folders:PATH (repeatable)")
    parser.add_argument("--address", default=os.environ.get("DFMESH_FUSION_ADDR",
                                                            default_address("fusion")),
                        help="the orchestrator (default: DFMESH_FUSION_ADDR or %(default)s)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many files, real and fake alternating")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="analyses in flight (the embedded mesh admits 2)")
    parser.add_argument("--no-early-exit", action="store_true")
    parser.add_argument("--fusion", choices=sorted(FUSION_MODES), default=None,
                        help="fusion mode; default: the server's DFMESH_FUSION_MODE")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per file")
    parser.add_argument("--out", type=Path, default=Path("runs") / "benchmark")


def balanced(rows: Sequence[LabeledMedia], limit: int | None) -> list[LabeledMedia]:
    """Real and fake rows interleaved (in their listed order), cut to `limit`: a limited run
    keeps both classes instead of the first N files of one folder."""
    real = [r for r in rows if r.label == 0]
    fake = [r for r in rows if r.label == 1]
    mixed = [r for pair in zip(real, fake, strict=False) for r in pair]
    longer = real if len(real) > len(fake) else fake
    mixed += longer[min(len(real), len(fake)):]
    return mixed[:limit] if limit else mixed


async def score_file(client: Client, row: LabeledMedia, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """One file's row: label, fused probability and verdict, each branch's probability, or
    the service's error."""
    out: dict[str, Any] = {"path": str(row.path), "label": row.label, "group": row.group,
                           "dataset": row.dataset, "method": row.method}
    try:
        result = await client.analyze_result(
            row.path, fusion=args.fusion, early_exit=False if args.no_early_exit else None,
            timeout=args.timeout)
    except aio.AioRpcError as exc:
        return out | {"error": {"code": exc.code().name, "message": exc.details()}}
    report = result_to_dict(result)
    return out | {
        "probFake": report["probFake"], "verdict": report["verdict"],
        "fusionHead": report["fusionHead"], "degraded": report["degraded"],
        "earlyExit": report["earlyExit"], "warnings": report.get("warnings", []),
        "branches": {b: (r["prob"] if r["status"] in SCORED else None)
                     for b, r in report["branches"].items()},
        "totalMs": report["timingsMs"].get("total"),
    }


async def score_files(rows: Sequence[LabeledMedia], args: argparse.Namespace
                      ) -> list[dict[str, Any]]:
    """Every row through the mesh, `args.concurrency` at a time, in row order."""
    slots = asyncio.Semaphore(args.concurrency)
    bar = tqdm(total=len(rows), unit="file", desc="benchmark", disable=None)
    async with Client(args.address) as client:
        async def one(row: LabeledMedia) -> dict[str, Any]:
            async with slots:
                scored = await score_file(client, row, args)
            bar.update()
            return scored

        scored = await asyncio.gather(*(one(r) for r in rows))
    bar.close()
    return list(scored)


def _report(labels: Sequence[int], probs: Sequence[float]) -> dict[str, Any]:
    if not labels:
        return {"n": 0}
    return binary_report(labels, probs)


def summarize(scored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fused and per-branch metrics over the files that got a verdict; errors counted."""
    ok = [s for s in scored if "error" not in s]
    summary: dict[str, Any] = {
        "files": len(scored), "scored": len(ok),
        "errors": dict(Counter(s["error"]["code"] for s in scored if "error" in s)),
        "fused": _report([s["label"] for s in ok], [s["probFake"] for s in ok]),
        "early_exits": sum(bool(s["earlyExit"]) for s in ok),
        "degraded": sum(bool(s["degraded"]) for s in ok),
        "heads": dict(Counter(s["fusionHead"] for s in ok)),
    }
    summary["branches"] = {}
    for branch in BRANCHES:
        have = [s for s in ok if s["branches"].get(branch) is not None]
        summary["branches"][branch] = _report([s["label"] for s in have],
                                              [s["branches"][branch] for s in have])
    real = [s for s in ok if s["label"] == 0]
    summary["by_method"] = {}
    for method in sorted({s["method"] or "fake" for s in ok if s["label"] == 1}):
        fakes = [s for s in ok if s["label"] == 1 and (s["method"] or "fake") == method]
        both = real + fakes
        summary["by_method"][method] = _report([s["label"] for s in both],
                                               [s["probFake"] for s in both])
    return summary


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


METRIC_COLS = ("n", "n_fake", "auc", "accuracy", "f1", "log_loss", "brier", "ece",
               "tpr_at_1pct_fpr")


def _table(rows: dict[str, dict[str, Any]], first: str) -> list[str]:
    lines = [f"| {first} | " + " | ".join(METRIC_COLS) + " |",
             "|---" * (len(METRIC_COLS) + 1) + "|"]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(m.get(c, "-")) for c in METRIC_COLS)
                     + " |")
    return lines


def markdown(summary: dict[str, Any], specs: Sequence[str], address: str) -> str:
    """The human-readable report of `summary`."""
    lines = [
        "# Benchmark on labelled media", "",
        f"Data: {', '.join(f'`{s}`' for s in specs)}; mesh at `{address}`. "
        f"{summary['scored']} of {summary['files']} files got a verdict"
        + (f"; refused: {summary['errors']}" if summary["errors"] else "") + ". "
        f"Early exits: {summary['early_exits']}; degraded results: {summary['degraded']}; "
        f"heads used: {summary['heads']}.", "",
        "## Fused verdict", "", *_table({"fused": summary["fused"]}, "what"), "",
        "## Each branch on the files it scored", "",
        "A branch only sees its own modality (no audio branch on a silent clip, no frame "
        "branch on a WAV), so n differs per branch.", "",
        *_table(summary["branches"], "branch"), "",
        "## Fused verdict by manipulation method (all real files vs one method)", "",
        *_table(summary["by_method"], "method"), "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        rows = balanced([r for spec in args.labelled for r in labelled_rows(spec)], args.limit)
    except LabelledSpecError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not rows:
        raise SystemExit(f"no labelled media found in {args.labelled}")
    scored = asyncio.run(score_files(rows, args))
    summary = summarize(scored)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(
        {"specs": args.labelled, "address": args.address, "summary": summary,
         "files": scored}, indent=1, default=str) + "\n")
    (args.out / "BENCHMARK.md").write_text(markdown(summary, args.labelled, args.address))
    fused = summary["fused"]
    print(f"{summary['scored']}/{summary['files']} scored; fused AUC "
          f"{_cell(fused.get('auc', float('nan')))}, accuracy {_cell(fused.get('accuracy', '-'))}"
          f"; report: {args.out / 'BENCHMARK.md'}")
    return summary
