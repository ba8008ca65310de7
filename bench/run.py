"""The benchmark suite: one command, a table on stdout, docs/BENCHMARKS.md and the per-service
CPU seconds in docs/bench/service_times.json.

    .venv/bin/python -m bench            # full run (about 30-60 minutes on 2 shared cores)
    .venv/bin/python -m bench --quick    # CI smoke run: one short clip, writes to --workdir

Sections, all in one run and side by side (mesh and in-process runs interleaved per clip so
that the machine's load drifts over both alike):
  floor        ffmpeg -i CLIP -f null - per clip
  backends     ONNX Runtime vs PyTorch eager per branch model; MTCNN torch vs ONNX path
  ingest       ingest alone in process: MTCNN torch/ONNX x decoder OpenCV/PyAV (not --quick)
  e2e          every clip through the local mesh (processes on loopback), full path:
               latency p50/p95 and the orchestrator's time per stage; the same clips
               through the in-process pipeline (bench.in_process): the mesh overhead
  gate         a clip that exits at tiny_gate vs the same clip run in full
  throughput   concurrency 1, 2, 4, 8: clips/minute, CPU seconds per clip (sum of every
               service process's CPU from /proc), against the 2-core CPU bound
  memory       RSS of every service over hundreds of clips; peak RSS per service
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench import common  # noqa: E402
from bench.common import Clip, Summary  # noqa: E402
from bench.mesh_runner import (  # noqa: E402
    analyze_once,
    local_mesh,
    run_concurrent,
    run_memory,
)

STAGES = ("ingest_spool", "ingest_probe", "ingest_decode", "ingest_faces", "ingest_audio",
          "ingest", "tiny_gate", "visual", "mri", "audio", "sync", "temporal", "fusion", "total")
TARGETS = {"1080p": 4.0, "720p": 2.5}


@dataclass
class Results:
    quick: bool
    machine: str
    command: str
    started: str
    repo_kind: str = ""
    floor: dict[str, dict] = field(default_factory=dict)
    e2e: dict[str, dict] = field(default_factory=dict)
    in_process: dict[str, dict] = field(default_factory=dict)
    backends: list[dict] = field(default_factory=list)
    ingest: list[dict] = field(default_factory=list)
    gate: dict = field(default_factory=dict)
    throughput_clip: str = ""
    throughput: list[dict] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    service_cpu_per_clip: dict[str, float] = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_clips(workdir: Path, quick: bool) -> tuple[list[Clip], Clip, Clip, list[Clip]]:
    """(e2e clips, the throughput clip, the gate clip, the memory-run clips)."""
    if quick:
        short = common.talking_clip(workdir, "480p", 3.0)
        return [short], short, short, [short]
    talking = [common.talking_clip(workdir, size, 10.0) for size in common.SIZES]
    synthetic = common.synthetic_clip(workdir, "720p", 10.0)
    clips = [*talking, synthetic, *common.real_clips()]
    memory = [common.talking_clip(workdir, "480p", 3.0),
              common.synthetic_clip(workdir, "480p", 3.0)]
    return clips, talking[1], talking[1], memory


def load_mark(results: Results, section: str) -> None:
    results.load[section] = [round(x, 2) for x in os.getloadavg()]


def sum_cpu(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


async def section_e2e(results: Results, mesh, clips: list[Clip], repeats: int,
                      workdir: Path, quick: bool) -> None:
    from bench.in_process import analyze_in_process, in_process_pipeline
    from dfmesh.client import Client

    load_mark(results, "e2e")
    async with in_process_pipeline(mesh.repo, workdir) as local, Client(mesh.address) as client:
        for clip in clips:
            log(f"e2e: {clip.label}")
            if not quick:  # first use of each clip size: warm both paths, uncounted
                await analyze_once(client, clip.path, False)
                await analyze_in_process(local, clip.path)
            walls, stages, cpus, local_walls, local_cpus = [], [], [], [], []
            for _ in range(repeats):
                before = mesh.cpu()
                one = await analyze_once(client, clip.path, False)
                cpus.append(sum(sum_cpu(before, mesh.cpu()).values()))
                walls.append(one.wall_seconds)
                stages.append(one.timings_ms)
                cpu0, start = common.self_cpu_seconds(), time.perf_counter()
                await analyze_in_process(local, clip.path)
                local_walls.append(time.perf_counter() - start)
                local_cpus.append(common.self_cpu_seconds() - cpu0)
            stage_ms = {s: statistics.median([t[s] for t in stages if s in t])
                        for s in STAGES if any(s in t for t in stages)}
            results.e2e[clip.label] = {
                "path": str(clip.path), "kind": clip.kind, "wall": Summary(tuple(walls)).as_dict(),
                "cpu_seconds": Summary(tuple(cpus)).as_dict(), "stages_ms": stage_ms,
                "degraded": one.degraded}
            results.in_process[clip.label] = {
                "wall": Summary(tuple(local_walls)).as_dict(),
                "cpu_seconds": Summary(tuple(local_cpus)).as_dict()}


async def section_gate(results: Results, mesh, clip: Clip, repeats: int) -> None:
    from dfmesh.client import Client

    load_mark(results, "gate")
    log("gate: early exit vs full run")
    full, exits, full_cpu, exit_cpu = [], [], [], []
    async with Client(mesh.address) as client:
        await analyze_once(client, clip.path, True)
        for _ in range(repeats):
            before = mesh.cpu()
            one = await analyze_once(client, clip.path, True)
            exit_cpu.append(sum(sum_cpu(before, mesh.cpu()).values()))
            exits.append(one)
            before = mesh.cpu()
            one = await analyze_once(client, clip.path, False)
            full_cpu.append(sum(sum_cpu(before, mesh.cpu()).values()))
            full.append(one)
    results.gate = {
        "clip": clip.label, "exited": all(a.early_exit for a in exits),
        "exit_wall": Summary(tuple(a.wall_seconds for a in exits)).as_dict(),
        "full_wall": Summary(tuple(a.wall_seconds for a in full)).as_dict(),
        "exit_cpu": Summary(tuple(exit_cpu)).as_dict(),
        "full_cpu": Summary(tuple(full_cpu)).as_dict(),
        "exit_stages_ms": {k: statistics.median([a.timings_ms.get(k, 0.0) for a in exits])
                           for k in ("ingest", "tiny_gate", "total")}}


async def section_throughput(results: Results, mesh, clip: Clip, levels: list[int],
                             per_level: int) -> None:
    results.throughput_clip = clip.label
    for level in levels:
        load_mark(results, f"throughput c={level}")
        log(f"throughput: concurrency {level}")
        run = await run_concurrent(mesh, clip.path, level, max(level, per_level * level))
        results.throughput.append({
            "concurrency": level, "clips": run.clips, "wall_seconds": run.wall_seconds,
            "clips_per_minute": run.clips_per_minute, "cpu_per_clip": run.cpu_per_clip,
            "cpu_by_service": {k: v / run.clips for k, v in run.cpu_seconds.items()},
            "bound_clips_per_minute": run.bound_clips_per_minute(os.cpu_count() or 2),
            "cores_used": sum(run.cpu_seconds.values()) / run.wall_seconds,
            "machine_idle": run.machine_idle,
            "latency": Summary(tuple(run.latencies)).as_dict()})


async def run_all(args: argparse.Namespace) -> Results:
    results = Results(args.quick, common.machine(), " ".join(["python -m bench", *sys.argv[1:]]),
                      time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    args.workdir.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or (1 if args.quick else 5)
    clips, throughput_clip, gate_clip, memory_clips = make_clips(args.workdir, args.quick)

    load_mark(results, "floor")
    for clip in clips:
        values = [common.ffmpeg_floor(clip.path) for _ in range(max(repeats, 3))]
        results.floor[clip.label] = {"wall": Summary(tuple(v[0] for v in values)).as_dict(),
                                     "cpu": Summary(tuple(v[1] for v in values)).as_dict()}

    if "backends" not in args.skip:
        from bench.model_backends import compare_branch_models, compare_mtcnn

        load_mark(results, "backends")
        log("backends: ONNX Runtime vs PyTorch eager")
        only = ("tiny_gate", "temporal", "audio") if args.quick else ()
        timings = compare_branch_models(max(2, repeats), only)
        timings.append(compare_mtcnn(clips[0].path, 2 if args.quick else 16,
                                     1 if args.quick else 3))
        results.backends = [{"name": t.name, "shapes": t.shapes, "torch_ms": t.torch_ms,
                             "onnx_ms": t.onnx_ms, "ratio": t.ratio} for t in timings]

    if not args.quick and "ingest" not in args.skip:
        from bench.ingest_configs import CONFIGS, compare_ingest

        load_mark(results, "ingest")
        log("ingest: MTCNN path x decoder")
        heavy = [c.path for c in clips if c.label in ("talking 720p 10 s", "talking 1080p 10 s")]
        runs = await compare_ingest(heavy, repeats, args.workdir)
        for clip_name, clip_runs in runs.items():
            for backend, decoder in CONFIGS:
                mine = [x for x in clip_runs if (x.backend, x.decoder) == (backend, decoder)]
                results.ingest.append({
                    "clip": clip_name, "mtcnn": backend, "decoder": decoder,
                    "wall": Summary(tuple(x.wall for x in mine)).as_dict(),
                    "cpu": Summary(tuple(x.cpu for x in mine)).as_dict(),
                    "decode_ms": statistics.median(x.stages_ms.get("decode", 0) for x in mine),
                    "faces_ms": statistics.median(x.stages_ms.get("faces", 0) for x in mine),
                    "frames_with_face": min(x.frames_with_face for x in mine)})

    with tempfile.TemporaryDirectory(prefix="bench-mesh-", dir=args.workdir) as tmp:
        log("starting the local mesh")
        # Every gate answer counts as "confidently real" so the early-exit path is taken
        # whatever the models are; the other sections ask for the full path explicitly.
        with local_mesh(Path(tmp), args.models, DFMESH_EARLY_EXIT_THRESHOLD="1.0") as mesh:
            results.repo_kind = mesh.repo_kind
            await section_e2e(results, mesh, clips, repeats, Path(tmp), args.quick)
            await section_gate(results, mesh, gate_clip, repeats)
            levels = [1, 2] if args.quick else args.concurrency
            await section_throughput(results, mesh, throughput_clip, levels,
                                     1 if args.quick else args.clips_per_level)
            if args.memory_clips:
                load_mark(results, "memory")
                log(f"memory: {args.memory_clips} clips")
                run = await run_memory(mesh, [c.path for c in memory_clips], args.memory_clips)
                results.memory = {
                    "clips": run.clips, "rss_after_warmup_mib": run.rss_after_warmup,
                    "rss_end_mib": run.rss_end, "samples_mib": run.samples,
                    "growth_percent": {k: run.growth_percent(k) for k in run.rss_end}}
            results.peak_rss_mib = {k: v[1] for k, v in mesh.memory().items()}
    clips_run = sum(t["clips"] for t in results.throughput)
    if clips_run:  # CPU seconds per clip over every throughput run
        results.service_cpu_per_clip = {
            name: sum(t["cpu_by_service"][name] * t["clips"] for t in results.throughput)
            / clips_run for name in results.throughput[0]["cpu_by_service"]}
    load_mark(results, "end")
    return results


BEGIN = "<!-- bench:begin: generated by `python -m bench`; edits inside are overwritten -->"
END = "<!-- bench:end -->"


def write_report(out: Path, generated: str) -> None:
    """Write the generated tables into `out` between the BEGIN/END markers, keeping the
    hand-written text around them; a file without markers is replaced."""
    block = f"{BEGIN}\n{generated.rstrip()}\n{END}\n"
    old = out.read_text() if out.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        out.write_text(head + block + ("\n" + tail if tail else ""))
    else:
        out.write_text(block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke run (about a minute)")
    parser.add_argument("--repeats", type=int, default=0, help="runs per measurement "
                        "(default 5, quick 1)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "dfmesh-bench")
    parser.add_argument("--models", choices=("shipped", "mixed", "test"), default="shipped",
                        help="shipped: models/ when it holds every model, else test-built; "
                        "mixed: each model from models/ where exported, test-built for the rest")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4, 8])
    parser.add_argument("--clips-per-level", type=int, default=3,
                        help="clips per client at each concurrency level")
    parser.add_argument("--memory-clips", type=int, default=None,
                        help="clips in the memory run (default 200, quick 0)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("backends", "ingest"))
    parser.add_argument("--out", type=Path, default=None, help="markdown report (default "
                        "docs/BENCHMARKS.md, quick: WORKDIR/BENCHMARKS.quick.md)")
    parser.add_argument("--service-times", type=Path, default=None,
                        help="default docs/bench/service_times.json (not written by --quick)")
    args = parser.parse_args(argv)
    if args.memory_clips is None:
        args.memory_clips = 0 if args.quick else 200
    if not (common.shared_data() / common.TALKING_SOURCE).is_file():
        print(f"missing {common.shared_data() / common.TALKING_SOURCE} (set DFMESH_SHARED_DATA)",
              file=sys.stderr)
        return 2

    from bench.report import markdown, service_times, table

    results = asyncio.run(run_all(args))
    print(table(results))
    out = args.out or (args.workdir / "BENCHMARKS.quick.md" if args.quick
                       else common.REPO_ROOT / "docs" / "BENCHMARKS.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, markdown(results))
    default_out = common.REPO_ROOT / "docs" / "BENCHMARKS.md"
    raw = (common.REPO_ROOT / "docs" / "bench" / "results.json" if out == default_out
           else out.with_suffix(".json"))
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results.__dict__, indent=1, default=str))
    times_path = args.service_times or (None if args.quick else
                                        common.REPO_ROOT / "docs" / "bench" / "service_times.json")
    if times_path is not None and results.service_cpu_per_clip:
        times_path.parent.mkdir(parents=True, exist_ok=True)
        times_path.write_text(json.dumps(service_times(results), indent=1) + "\n")
    log(f"wrote {out}" + (f" and {times_path}" if times_path else ""))
    return 0
