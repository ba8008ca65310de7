"""Ingest time for a 10 s 1080p and a 10 s 720p clip beside `ffmpeg -i CLIP -f null -`.

    .venv/bin/python bench/ingest_vs_ffmpeg.py [--repeats 3] [--workdir /tmp/dfmesh-bench]

The clips are a real talking-head clip from ../shared/data (or DFMESH_SHARED_DATA) looped
to 10 s and scaled into 1920x1080 / 1280x720 H.264 + AAC. For each clip it times, median
of --repeats runs:
  ffmpeg      decoding every frame and discarding it (the floor for any decoder)
  in-process  services.ingest.pipeline.ingest_upload (spool, probe, sampling, MTCNN, PCM)
  gRPC        the same upload through a real ingest server on a loopback port
and, with --strategies, three ways of sampling 16 frames with OpenCV (read every frame;
grab every frame and retrieve 16; seek with CAP_PROP_POS_FRAMES to each of the 16).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]

# dfmesh, deepfake and services come from the editable install (scripts/setup.sh).
import cv2  # noqa: E402

from deepfake.v1 import ingest_pb2, ingest_pb2_grpc, media_pb2  # noqa: E402
from dfmesh.runtime.channels import create_channel  # noqa: E402
from dfmesh.runtime.server import running  # noqa: E402
from services.ingest.faces import FaceDetector  # noqa: E402
from services.ingest.pipeline import SummaryResult, UploadRequest, ingest_upload  # noqa: E402
from services.ingest.settings import IngestSettings  # noqa: E402

SOURCE = "talking/sadtalker__WDA_KatieHill_000.mp4"
SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}
CHUNK = 1024 * 1024


def shared_data() -> Path:
    env = os.environ.get("DFMESH_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def make_clip(out: Path, size: tuple[int, int], seconds: float = 10.0) -> Path:
    """The source looped to `seconds`, scaled to fit `size` and padded (face kept upright)."""
    if out.exists():
        return out
    w, h = size
    vf = f"scale=-2:{h},pad={w}:{h}:(ow-iw)/2:0,fps=25"
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-stream_loop", "-1", "-i", str(shared_data() / SOURCE), "-t", f"{seconds}",
           "-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(out)]
    subprocess.run(cmd, check=True, timeout=600)
    return out


def ffmpeg_null(clip: Path) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(clip),
                    "-f", "null", "-"], check=True, timeout=600)


async def file_chunks(clip: Path):
    data = clip.read_bytes()
    for i in range(0, len(data), CHUNK):
        yield data[i : i + CHUNK]


async def in_process(clip: Path, settings: IngestSettings, detector: FaceDetector,
                     summaries: list[SummaryResult]) -> None:
    request = UploadRequest(filename=clip.name)
    async for result in ingest_upload(request, file_chunks(clip), settings, detector):
        if isinstance(result, SummaryResult):
            summaries.append(result)


async def through_grpc(clip: Path, port: int, settings: IngestSettings) -> None:
    async def requests():
        header = ingest_pb2.IngestHeader(upload=media_pb2.UploadHeader(filename=clip.name))
        yield ingest_pb2.IngestRequest(header=header)
        async for chunk in file_chunks(clip):
            yield ingest_pb2.IngestRequest(data=chunk)

    async with create_channel(f"127.0.0.1:{port}", settings) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        packets = [p async for p in stub.Ingest(requests(), timeout=300)]
    assert packets[-1].WhichOneof("payload") == "summary"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg, ffprobe)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


async def median_seconds(run: Callable[[], Awaitable[None]], repeats: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of `repeats` runs. On a shared machine the
    CPU figure is the steadier one."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        await run()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def sampling_strategies(clip: Path, count: int = 16) -> dict[str, float]:
    """Seconds to get `count` evenly spaced frames three ways."""
    def timed(fn: Callable[[], int]) -> float:
        start = time.perf_counter()
        got = fn()
        assert got == count, got
        return time.perf_counter() - start

    total = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = {int((i + 0.5) * total / count) for i in range(count)}

    def read_all() -> int:
        cap, got, n = cv2.VideoCapture(str(clip)), 0, 0
        while True:
            ok, _ = cap.read()
            if not ok:
                return got
            got += n in wanted
            n += 1

    def grab_retrieve() -> int:
        cap, got, n = cv2.VideoCapture(str(clip)), 0, 0
        while cap.grab():
            if n in wanted:
                got += cap.retrieve()[0]
            n += 1
        return got

    def seek_each() -> int:
        cap, got = cv2.VideoCapture(str(clip)), 0
        for n in sorted(wanted):
            cap.set(cv2.CAP_PROP_POS_FRAMES, n)
            got += cap.read()[0]
        return got

    return {"read every frame": timed(read_all), "grab all, retrieve 16": timed(grab_retrieve),
            "seek to each (POS_FRAMES)": timed(seek_each)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dfmesh-bench"))
    parser.add_argument("--strategies", action="store_true", help="also time OpenCV sampling")
    args = parser.parse_args()
    if not (shared_data() / SOURCE).is_file():
        sys.exit(f"source clip not found: {shared_data() / SOURCE} (set DFMESH_SHARED_DATA)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    clips = {name: make_clip(args.workdir / f"talking_10s_{name}.mp4", size)
             for name, size in SIZES.items()}

    settings = IngestSettings(metrics_port=0, temp_dir=args.workdir)
    detector = FaceDetector(settings.detect_max_side, settings.min_face_size,
                            settings.min_face_score, settings.max_faces_per_frame)
    from services.ingest.servicer import IngestService

    print(f"repeats={args.repeats}, torch threads={settings.torch_threads}, "
          f"cores={os.cpu_count()}, load average={os.getloadavg()[0]:.2f}")
    print(f"{'clip':6} {'measure':5} {'ffmpeg -f null':>15} {'in-process':>11} {'gRPC':>8} "
          f"{'in-proc/ffmpeg':>15} {'gRPC/ffmpeg':>12}")
    rows = []
    async with running(IngestService(settings, detector), settings) as server:
        for name, clip in clips.items():
            summaries: list[SummaryResult] = []
            t_ffmpeg = await median_seconds(lambda c=clip: asyncio.to_thread(ffmpeg_null, c),
                                            args.repeats)
            t_local = await median_seconds(
                lambda c=clip, s=summaries: in_process(c, settings, detector, s), args.repeats)
            t_grpc = await median_seconds(lambda c=clip: through_grpc(c, server.port, settings),
                                          args.repeats)
            for i, measure in enumerate(("wall", "cpu")):
                f, local, grpc_ = t_ffmpeg[i], t_local[i], t_grpc[i]
                print(f"{name:6} {measure:5} {f:14.2f}s {local:10.2f}s {grpc_:7.2f}s "
                      f"{local / f:14.2f}x {grpc_ / f:11.2f}x")
            rows.append((name, summaries[-1]))
    for name, summary in rows:
        stages = ", ".join(f"{k} {v / 1000:.2f}s" for k, v in summary.timings_ms.items())
        print(f"{name} stages (last in-process run): {stages}; frames with face "
              f"{summary.num_frames_with_face}/{summary.num_frames}, dense "
              f"{summary.num_dense_frames}")
    if args.strategies:
        for name, clip in clips.items():
            found = sampling_strategies(clip)
            print(f"{name} OpenCV sampling of 16 frames: "
                  + ", ".join(f"{k} {v:.2f}s" for k, v in found.items()))


if __name__ == "__main__":
    asyncio.run(main())
