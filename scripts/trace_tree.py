#!/usr/bin/env python3
"""Print one trace from DFMESH_TRACE_FILE span files as an indented tree with timings.

    .venv/bin/python scripts/trace_tree.py /tmp/dfmesh-traces/*.jsonl --trace <trace id>
    .venv/bin/python scripts/trace_tree.py /tmp/dfmesh-traces/*.jsonl --analysis <analysis id>
    .venv/bin/python scripts/trace_tree.py /tmp/dfmesh-traces/*.jsonl   # the latest analysis

Each line: offset from the trace's start, duration, service, span name, and the attributes
that say what happened (clip, model, verdict, degradation). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

SHOWN = ("analysis.id", "clip.kind", "clip.duration_seconds", "clip.width", "clip.height",
         "branch.state", "branch.status", "branch.reason", "model.name", "model.version",
         "model.provider", "batch_size", "frames", "faces", "prob_fake", "verdict",
         "fusion.head", "early_exit", "degraded", "missing_branches", "rpc.grpc.status_code",
         "http.route", "http.status_code", "http.response.status_code")


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def load_spans(paths: list[Path]) -> list[dict[str, Any]]:
    spans = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                spans.append(json.loads(line))
    return spans


def _id(value: str | None) -> str:
    return (value or "").removeprefix("0x")


def pick_trace(spans: list[dict[str, Any]], trace_id: str, analysis_id: str) -> str:
    """The trace asked for, the one carrying the analysis id, or the latest analysis's."""
    if trace_id:
        return trace_id
    tagged = [s for s in spans if "analysis.id" in s["attributes"]
              and (not analysis_id or s["attributes"]["analysis.id"] == analysis_id)]
    if not tagged:
        sys.exit("no span carries that analysis id" if analysis_id
                 else "no analysis in these files")
    return _id(max(tagged, key=lambda s: s["start_time"])["context"]["trace_id"])


def render(spans: list[dict[str, Any]], trace_id: str) -> list[str]:
    ours = [s for s in spans if _id(s["context"]["trace_id"]) == trace_id]
    if not ours:
        sys.exit(f"no span of trace {trace_id}")
    ids = {_id(s["context"]["span_id"]) for s in ours}
    children: dict[str, list[dict[str, Any]]] = {}
    for s in ours:
        parent = _id(s["parent_id"]) if _id(s["parent_id"]) in ids else ""
        children.setdefault(parent, []).append(s)
    start = min(_seconds(s["start_time"]) for s in ours)
    lines = [f"trace {trace_id}: {len(ours)} spans"]

    def walk(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s["start_time"]):
            begin, end = _seconds(s["start_time"]), _seconds(s["end_time"])
            attrs = " ".join(f"{k}={s['attributes'][k]}" for k in SHOWN if k in s["attributes"])
            service = s["resource"]["attributes"].get("service.name", "?")
            status = "" if s["status"]["status_code"] != "ERROR" else " ERROR"
            lines.append(f"{1000 * (begin - start):9.1f} ms {1000 * (end - begin):9.1f} ms  "
                         f"{'  ' * depth}{service}: {s['name']}{status}  {attrs}".rstrip())
            walk(_id(s["context"]["span_id"]), depth + 1)

    walk("", 0)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="span files (JSON lines)")
    parser.add_argument("--trace", default="", help="trace id (32 hex digits)")
    parser.add_argument("--analysis", default="", help="analysis id")
    args = parser.parse_args()
    spans = load_spans(args.files)
    print("\n".join(render(spans, pick_trace(spans, args.trace, args.analysis))))


if __name__ == "__main__":
    main()
