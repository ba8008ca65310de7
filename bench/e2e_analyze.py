"""End-to-end time of an analysis through a running mesh, and the time per stage.

    # 10 s 720p and 1080p clips from a real talking clip (looped, scaled, padded to 16:9)
    python bench/e2e_analyze.py make-clips OUT_DIR --source ../shared/data/talking/CLIP.mp4
    # every file REPEAT times through the orchestrator, early exit off (the full path)
    python bench/e2e_analyze.py run OUT_DIR/*.mp4 --address 127.0.0.1:50051 --repeat 3

`run` prints, per file, the median wall time seen by the client and the median of each
stage the orchestrator reports in timingsMs (ingest, each branch, fusion, total). The first
run of each file is a warm-up and is not counted when --repeat > 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dfmesh.client import Client, result_to_dict

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def make_clips(out_dir: Path, source: Path, seconds: float) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (w, h) in SIZES.items():
        out = out_dir / f"{source.stem}_{int(seconds)}s_{name}.mp4"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1",
             "-i", str(source), "-t", f"{seconds}",
             "-vf", f"scale=-2:{h},pad={w}:{h}:(ow-iw)/2:(oh-ih)/2",
             "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
             str(out)], check=True, timeout=300)
        made.append(out)
    return made


async def measure(address: str, path: Path, repeat: int) -> tuple[list[float], list[dict]]:
    walls, timings = [], []
    async with Client(address) as client:
        for i in range(repeat + (1 if repeat > 1 else 0)):
            start = time.perf_counter()
            result = await client.analyze_result(path, early_exit=False, timeout=600)
            wall = (time.perf_counter() - start) * 1000
            if repeat > 1 and i == 0:
                continue
            walls.append(wall)
            timings.append(result_to_dict(result)["timingsMs"])
    return walls, timings


def report(path: Path, walls: list[float], timings: list[dict]) -> str:
    stages = sorted({k for t in timings for k in t}, key=lambda k: (k == "total", k))
    lines = [f"{path.name}: wall {statistics.median(walls):.0f} ms (median of {len(walls)})"]
    for stage in stages:
        values = [t[stage] for t in timings if stage in t]
        lines.append(f"  {stage:<10} {statistics.median(values):8.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make-clips")
    mk.add_argument("out_dir", type=Path)
    mk.add_argument("--source", type=Path, required=True)
    mk.add_argument("--seconds", type=float, default=10.0)
    rn = sub.add_parser("run")
    rn.add_argument("files", nargs="+", type=Path)
    rn.add_argument("--address", default="127.0.0.1:50051")
    rn.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "make-clips":
        for path in make_clips(args.out_dir, args.source, args.seconds):
            print(path)
        return 0
    for path in args.files:
        walls, timings = asyncio.run(measure(args.address, path, args.repeat))
        print(report(path, walls, timings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
