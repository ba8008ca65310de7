"""What every benchmark section shares: clips, statistics, /proc readings, the decode floor."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TALKING_SOURCE = "talking/sadtalker__WDA_KatieHill_000.mp4"
REAL_CLIPS = {
    "real 360p hamilton 10 s": "talking/face_recognition__short_hamilton_clip.mp4",
    "real 720x1280 portrait 11.7 s": "talking/liveportrait__driving_d13.mp4",
    "real 1080p 4.2 s": "talking/facenet-pytorch__video.mp4",
}
SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def shared_data() -> Path:
    env = os.environ.get("DFMESH_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Clip:
    label: str
    path: Path
    kind: str  # generated | synthetic | real


def _ffmpeg(args: list[str], out: Path) -> Path:
    if not out.exists():
        tmp = out.with_suffix(".part" + out.suffix)
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args,
                        str(tmp)], check=True, timeout=600)
        tmp.rename(out)
    return out


def talking_clip(workdir: Path, size: str, seconds: float) -> Clip:
    """The talking-head source looped to `seconds`, scaled and padded to 16:9 `size`."""
    w, h = SIZES[size]
    out = workdir / f"talking_{seconds:g}s_{size}.mp4"
    vf = f"scale=-2:{h},pad={w}:{h}:(ow-iw)/2:0,fps=25"
    _ffmpeg(["-stream_loop", "-1", "-i", str(shared_data() / TALKING_SOURCE), "-t", f"{seconds}",
             "-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-c:a", "aac"], out)
    return Clip(f"talking {size} {seconds:g} s", out, "generated")


def synthetic_clip(workdir: Path, size: str, seconds: float) -> Clip:
    """ffmpeg's test pattern with a tone: no face anywhere (the centre-crop fallback path)."""
    w, h = SIZES[size]
    out = workdir / f"testsrc_{seconds:g}s_{size}.mp4"
    _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=25:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
             "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
             "-shortest"], out)
    return Clip(f"test pattern {size} {seconds:g} s", out, "synthetic")


def real_clips() -> list[Clip]:
    return [Clip(label, shared_data() / rel, "real") for label, rel in REAL_CLIPS.items()
            if (shared_data() / rel).is_file()]


# --- statistics ---

def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass(frozen=True)
class Summary:
    """Median, p95 and spread (min-max) of repeated measurements."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def p95(self) -> float:
        return percentile(list(self.values), 95)

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def fmt(self, unit: str = "s", digits: int = 2) -> str:
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return f"{self.median:.{digits}f} {unit}"
        return (f"{self.median:.{digits}f} {unit} ({self.low:.{digits}f}-"
                f"{self.high:.{digits}f})")

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"median": self.median, "p95": self.p95, "min": self.low, "max": self.high,
                "values": list(self.values)}


# --- processes ---

def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children (ingest's ffmpeg)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def proc_memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key] = int(kb) / 1024.0
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def machine_cpu_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return values[3] + values[4], sum(values[:8])


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the machine's CPU time that was idle between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def self_cpu_seconds() -> float:
    """CPU of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ffmpeg_floor(clip: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `ffmpeg -i CLIP -f null -` (decoding every stream, no output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(clip),
                    "-f", "null", "-"], check=True, timeout=600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def repeat(fn: Callable[[], object], times: int) -> list[float]:
    """Wall seconds of `times` calls."""
    out = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def machine() -> str:
    """One line about where the numbers come from."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPU cores ({model or 'unknown CPU'}), {mem_kb / 2**20:.0f} GiB, "
            f"no GPU; load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
