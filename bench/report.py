"""The benchmark's results as a text table, docs/BENCHMARKS.md and service_times.json."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run import Results

TARGET_LATENCY = {"talking 1080p 10 s": 4.0, "talking 720p 10 s": 2.5}
STAGE_COLUMNS = (("ingest_decode", "decode"), ("ingest_faces", "faces"),
                 ("ingest_audio", "audio pcm"), ("ingest", "ingest"), ("tiny_gate", "gate"),
                 ("visual", "visual"), ("mri", "mri"), ("audio", "audio"), ("sync", "sync"),
                 ("temporal", "temporal"), ("fusion", "fusion"))


def _s(d: dict, key: str = "median", digits: int = 2) -> str:
    value = d.get(key)
    return "-" if value is None else f"{value:.{digits}f}"


def _spread(d: dict, digits: int = 2) -> str:
    if not d or not d.get("values"):
        return "-"
    if len(d["values"]) == 1:
        return f"{d['median']:.{digits}f}"
    return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}-{d['max']:.{digits}f})"


def _rows_e2e(r: Results) -> list[list[str]]:
    rows = []
    for label, e in r.e2e.items():
        floor = r.floor.get(label, {}).get("wall", {})
        local = r.in_process.get(label, {}).get("wall", {})
        p50 = e["wall"]["median"]
        rows.append([label, _spread(e["wall"]), _s(e["wall"], "p95"),
                     _spread(floor), f"{p50 / floor['median']:.1f}x" if floor else "-",
                     _spread(local), f"{p50 / local['median']:.2f}" if local else "-",
                     _s(e["cpu_seconds"]), _s(r.in_process.get(label, {}).get("cpu_seconds", {})),
                     _cpu_ratio(r, label)])
    return rows


def _cpu_ratio(r: Results, label: str) -> str:
    mesh = r.e2e[label]["cpu_seconds"]["median"]
    local = r.in_process.get(label, {}).get("cpu_seconds", {}).get("median")
    return f"{mesh / local:.2f}" if local else "-"


def _rows_stages(r: Results) -> list[list[str]]:
    rows = []
    for label, e in r.e2e.items():
        st = e["stages_ms"]
        rows.append([label, *[f"{st[k] / 1000:.2f}" if k in st else "-"
                              for k, _ in STAGE_COLUMNS]])
    return rows


def _rows_backends(r: Results) -> list[list[str]]:
    import statistics

    return [[b["name"], b["shapes"], f"{statistics.median(b['torch_ms']):.1f}",
             f"{statistics.median(b['onnx_ms']):.1f}", f"{b['ratio']:.2f}x"] for b in r.backends]


def _rows_throughput(r: Results) -> list[list[str]]:
    return [[str(t["concurrency"]), str(t["clips"]), f"{t['wall_seconds']:.1f}",
             f"{t['clips_per_minute']:.1f}", f"{t['cpu_per_clip']:.2f}",
             f"{t['bound_clips_per_minute']:.1f}",
             f"{100 * t['clips_per_minute'] / t['bound_clips_per_minute']:.0f}%",
             f"{t.get('cores_used', 0):.2f}", f"{100 * t.get('machine_idle', 0):.0f}%",
             _s(t["latency"]), _s(t["latency"], "p95")] for t in r.throughput]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*["-" * w for w in widths]),
                      *[fmt.format(*row) for row in rows]])


E2E_HEADER = ["clip", "e2e p50 (min-max) s", "p95 s", "ffmpeg -f null s", "e2e / floor",
              "in-process s", "mesh / in-process", "mesh CPU s", "in-process CPU s",
              "CPU mesh / in-process"]
STAGES_HEADER = ["clip (stage medians, s)", *[name for _, name in STAGE_COLUMNS]]
BACKENDS_HEADER = ["model", "feeds", "PyTorch eager ms", "ONNX Runtime ms", "torch / ORT"]
THROUGHPUT_HEADER = ["concurrency", "clips", "wall s", "clips/min", "CPU s/clip",
                     "CPU bound clips/min", "of bound", "cores used", "machine idle",
                     "latency p50 s", "p95 s"]


def _sections(r: Results, render) -> list[tuple[str, str]]:
    out = [("End to end through the local mesh (full path), floor and in-process pipeline",
            render(E2E_HEADER, _rows_e2e(r))),
           ("Time per stage (orchestrator timings; ingest_* from ingest's summary; a branch's "
            "time counts from its input being complete)", render(STAGES_HEADER, _rows_stages(r)))]
    if r.backends:
        out.append(("ONNX Runtime vs PyTorch eager (1 thread each)",
                    render(BACKENDS_HEADER, _rows_backends(r))))
    if r.ingest:
        out.append(("Ingest alone, in process (MTCNN path x decoder; 16 sampled frames + "
                    "2.5 s dense window + PCM)", render(
                        ["clip", "MTCNN", "decoder", "wall s", "CPU s", "decode thread s",
                         "faces s", "frames with face"],
                        [[i["clip"], i["mtcnn"], i["decoder"], _spread(i["wall"]),
                          _spread(i["cpu"]), f"{i['decode_ms'] / 1000:.2f}",
                          f"{i['faces_ms'] / 1000:.2f}", f"{i['frames_with_face']}/16"]
                         for i in r.ingest])))
    if r.gate:
        g = r.gate
        out.append(("Gate", render(
            ["clip", "exited", "early exit s", "full run s", "wall ratio", "exit CPU s",
             "full CPU s", "CPU ratio"],
            [[g["clip"], str(g["exited"]), _spread(g["exit_wall"]), _spread(g["full_wall"]),
              f"{g['exit_wall']['median'] / g['full_wall']['median']:.2f}",
              _s(g["exit_cpu"]), _s(g["full_cpu"]),
              f"{g['exit_cpu']['median'] / g['full_cpu']['median']:.2f}"]])))
    if r.throughput:
        out.append((f"Throughput ({r.throughput_clip}, full path; CPU = every service process, "
                    "from /proc; bound = 60 x 2 cores / CPU s per clip)",
                    render(THROUGHPUT_HEADER, _rows_throughput(r))))
    mem_rows = []
    for name, peak in r.peak_rss_mib.items():
        m = r.memory
        mem_rows.append([name, f"{peak:.0f}",
                         f"{m['rss_after_warmup_mib'][name]:.0f}" if m else "-",
                         f"{m['rss_end_mib'][name]:.0f}" if m else "-",
                         f"{m['growth_percent'][name]:+.1f}%" if m else "-",
                         f"{r.service_cpu_per_clip.get(name, 0.0):.2f}"])
    if mem_rows:
        clips = r.memory.get("clips", 0)
        out.append((f"Memory and CPU per service (RSS over a {clips}-clip run; CPU seconds per "
                    f"clip over the throughput runs, {r.throughput_clip})", render(
                        ["service", "peak RSS MiB", "RSS after warm-up", "RSS at end", "growth",
                         "CPU s/clip"], mem_rows)))
    return out


def table(r: Results) -> str:
    parts = [f"machine: {r.machine}", f"models: {r.repo_kind}"]
    for title, body in _sections(r, _text_table):
        parts += ["", title, body]
    parts += ["", *targets(r)]
    return "\n".join(parts)


def targets(r: Results) -> list[str]:
    """One line per issue-8 target: met, or by how much it is missed."""
    lines = ["Targets:"]
    for label, limit in TARGET_LATENCY.items():
        if label in r.e2e:
            p50 = r.e2e[label]["wall"]["median"]
            verdict = ("met" if p50 <= limit
                       else f"missed by {p50 - limit:.2f} s ({p50 / limit:.2f}x)")
            lines.append(f"- {label} p50 {p50:.2f} s <= {limit:g} s: {verdict}")
    for label in TARGET_LATENCY:
        if label in r.in_process and label in r.e2e:
            wall = r.e2e[label]["wall"]["median"] / r.in_process[label]["wall"]["median"]
            cpu = (r.e2e[label]["cpu_seconds"]["median"]
                   / r.in_process[label]["cpu_seconds"]["median"])
            verdict = ("met" if max(wall, cpu) <= 1.10
                       else f"missed ({100 * (max(wall, cpu) - 1):.0f}% over)")
            lines.append(f"- mesh overhead {label}: latency {100 * (wall - 1):+.0f}%, CPU "
                         f"{100 * (cpu - 1):+.0f}% (<= 10%): {verdict}")
    if r.gate:
        ratio = r.gate["exit_wall"]["median"] / r.gate["full_wall"]["median"]
        verdict = "met" if ratio <= 0.25 else f"missed ({ratio:.2f})"
        lines.append(f"- gate exit / full run {ratio:.2f} (<= 0.25): {verdict}")
    four = next((t for t in r.throughput if t["concurrency"] == 4), None)
    if four:
        share = four["clips_per_minute"] / four["bound_clips_per_minute"]
        verdict = "met" if share >= 0.9 else f"missed ({100 * share:.0f}% of the bound)"
        lines.append(f"- throughput at concurrency 4: {100 * share:.0f}% of the CPU bound "
                     f"(>= 90%): {verdict}")
    if r.memory:
        worst = max(r.memory["growth_percent"].items(), key=lambda kv: kv[1])
        verdict = "met" if worst[1] <= 10 else "missed"
        lines.append(f"- memory over {r.memory['clips']} clips: largest growth after warm-up "
                     f"{worst[0]} {worst[1]:+.1f}% (flat: <= 10%): {verdict}")
    return lines


def markdown(r: Results) -> str:
    head = [
        "## The last run", "",
        f"Generated by `{r.command}` on {r.started}. Machine: {r.machine}. Models: "
        f"{r.repo_kind} repository. Load averages per section (1/5/15 min): "
        + "; ".join(f"{k} {v[0]:.1f}" for k, v in r.load.items()) + ".", "",
        "Every figure below comes from this one run; medians with (min-max) over the repeats. "
        "Wall times on this machine depend on what else runs on its two cores; the CPU "
        "seconds are the steadier figure.", ""]
    body = []
    for title, table_md in _sections(r, _md_table):
        body += [f"### {title}", "", table_md, ""]
    body += ["### Targets", "", *targets(r)[1:], ""]
    if r.notes:
        body += ["### Notes", "", *r.notes, ""]
    return "\n".join(head + body)


def service_times(r: Results) -> dict:
    """The file tests/k8s/test_autoscaling.py reads (docs/DEPLOY.md, service_times)."""
    return {"source": f"{r.command}, {r.started}, {r.throughput_clip}, mean over the "
                      "throughput runs (concurrency 1-8), "
                      f"{r.repo_kind} models, {r.machine}",
            "cpu_seconds_per_clip": {k: round(v, 3) for k, v in r.service_cpu_per_clip.items()}}
