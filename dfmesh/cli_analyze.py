"""`dfmesh analyze FILE...`: send files through the running mesh and print the verdicts.

    dfmesh analyze clip.mp4                       verdict, per-branch table, explanation
    dfmesh analyze a.mp4 b.jpg c.wav --json       one JSON object per file, one per line
    dfmesh analyze clip.mp4 --method mri --fusion adaptive --no-early-exit

Works on videos, still images (frame branches only) and audio files (audio branch only).
Exit status 0 when every file got a verdict, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from grpc import aio
from tqdm import tqdm

from dfmesh.client import FUSION_MODES, METHODS, Client, Progress, result_to_dict
from dfmesh.runtime.config import default_address


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `analyze` on the dfmesh command's subparsers."""
    parser = subparsers.add_parser(
        "analyze", help="analyze files through the running mesh",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--method", choices=sorted(METHODS), default="fusion",
                        help="fusion (default), plain_frames (visual only), mri, temporal")
    parser.add_argument("--fusion", choices=sorted(FUSION_MODES), default=None,
                        help="fusion mode; default: the server's DFMESH_FUSION_MODE")
    parser.add_argument("--no-early-exit", action="store_true",
                        help="run every branch even where tiny_gate finds the clip clean")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument("--address", default=os.environ.get("DFMESH_FUSION_ADDR",
                                                            default_address("fusion")),
                        help="the orchestrator (default: DFMESH_FUSION_ADDR or %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per file")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Analyze every file; print as asked. Returns the exit status."""
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"error: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    return asyncio.run(_analyze_all(args, sys.stdout))


async def _analyze_all(args: argparse.Namespace, out: TextIO) -> int:
    failures = 0
    bar = tqdm(total=100 * len(args.files), unit="%", file=sys.stderr, disable=None,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}<{remaining}]")
    async with Client(args.address) as client:
        for index, path in enumerate(args.files):
            done_before = 100 * index
            try:
                result = None
                async for event in client.analyze(
                        path, method=args.method, fusion=args.fusion,
                        early_exit=False if args.no_early_exit else None, timeout=args.timeout):
                    if isinstance(event, Progress):
                        bar.set_description(f"{path.name}: {event.stage}")
                        bar.update(max(done_before + event.percent - bar.n, 0))
                    else:
                        result = result_to_dict(event)
                if result is None:
                    raise RuntimeError("no result")
                report = {"file": str(path), **result}
            except aio.AioRpcError as exc:
                failures += 1
                report = {"file": str(path), "error": {"code": exc.code().name,
                                                       "message": exc.details()}}
            bar.update(max(done_before + 100 - bar.n, 0))
            bar.clear()
            _print(report, args.json, out)
            bar.refresh()
    bar.close()
    return 1 if failures else 0


def _print(report: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(report) + "\n")
    else:
        out.write(format_report(report) + "\n")
    out.flush()


def format_report(report: dict[str, Any]) -> str:
    """The human-readable verdict: a headline, a per-branch table, explanation, timings."""
    name = report["file"]
    if "error" in report:
        return f"{name}: error {report['error']['code']}: {report['error']['message']}"
    head = (f"{name}: {report['verdict']} (confidence {report['confidence']:.1f}%, "
            f"probFake {report['probFake']:.3f}, head {report['fusionHead']})")
    if report["earlyExit"]:
        head += " [early exit]"
    if report["degraded"]:
        head += f" [degraded: missing {', '.join(report['missingBranches'])}]"
    rows = [("branch", "status", "prob", "model", "latency", "detail")]
    timings = report["timingsMs"]
    for branch, b in report["branches"].items():
        prob = f"{b['prob']:.3f}" if b["status"] in ("OK", "FALLBACK") else "-"
        latency = f"{timings[branch]:.0f} ms" if branch in timings else "-"
        model = f"{b['model']} {b['modelVersion']}".strip() or "-"
        rows.append((branch, b["status"], prob, model, latency, b["detail"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [head]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:5], widths, strict=True)]
        lines.append(("  " + "  ".join(cells) + "  " + row[5]).rstrip())
    lines.append(f"  explanation: {report['explanation']}")
    lines.extend(f"  warning: {w}" for w in report.get("warnings", []))
    order = sorted((k for k in timings if k not in report["branches"]),
                   key=lambda k: (k == "total", k == "fusion", k))
    stages = ", ".join(f"{k} {timings[k]:.0f} ms" for k in order)
    lines.append(f"  timings: {stages}")
    return "\n".join(lines)
