"""Coverage-guided fuzzing (atheris, libFuzzer) of ingest's entry: arbitrary bytes as an
upload, through the same steps ingest runs before any model: ffprobe and classification,
the extension, duration and frame-size checks, then decoding (OpenCV for video and images,
the ffmpeg binary for audio).

An input may be refused with one of ingest's domain errors (services.ingest.rejections):
that is the expected outcome for garbage. Any other exception is a finding.

    .venv/bin/python fuzz/ingest_fuzz.py -max_total_time=30 -rss_limit_mb=3072 SEEDS_DIR
    .venv/bin/python fuzz/ingest_fuzz.py --make-seeds SEEDS_DIR    # small valid media
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import atheris

# Libraries imported before instrumentation stay uninstrumented: coverage is ours.
# dfmesh and services come from the editable install (scripts/setup.sh).
import cv2
import grpc  # noqa: F401
import numpy  # noqa: F401
import pydantic_settings  # noqa: F401

with atheris.instrument_imports():
    from dfmesh.runtime.errors import DfmeshError
    from services.ingest.audio import decode_audio_pcm
    from services.ingest.decode import iter_wanted_frames, open_capture, read_image, sample_times
    from services.ingest.probe import (
        MediaKind,
        check_duration,
        check_extension,
        check_frame_size,
        probe_media,
    )
    from services.ingest.settings import IngestSettings

SETTINGS = IngestSettings(metrics_port=0)
TOOL_TIMEOUT_SECONDS = 20.0
EXTENSIONS = ("mp4", "png", "wav", "mkv", "")


def ingest_steps(data: bytes, extension: str, workdir: Path) -> None:
    """Probe, check and decode `data` as ingest would (faces aside)."""
    path = workdir / (f"upload.{extension}" if extension else "upload")
    path.write_bytes(data)
    probe = probe_media(path, TOOL_TIMEOUT_SECONDS)
    check_extension(probe, extension)
    check_duration(probe, SETTINGS.max_duration_seconds)
    check_frame_size(probe, SETTINGS.max_frame_pixels)
    if probe.kind is MediaKind.IMAGE:
        read_image(path)
    elif probe.kind is MediaKind.VIDEO:
        cap = open_capture(path)
        if cap is not None:
            try:
                times = sample_times(probe.duration_seconds, 4)
                for _ in iter_wanted_frames(cap, times, None, probe.fps, 8.0):
                    pass
            finally:
                cap.release()
    if probe.has_audio:
        asyncio.run(decode_audio_pcm(path, 16000, TOOL_TIMEOUT_SECONDS))


def test_one_input(data: bytes) -> None:
    """The first byte picks the upload's extension (a hint ingest checks); the rest is the
    file."""
    extension = EXTENSIONS[data[0] % len(EXTENSIONS)] if data else ""
    # A refusal with a status and a message is what garbage should get.
    with (tempfile.TemporaryDirectory(prefix="ingest-fuzz-") as tmp,
          contextlib.suppress(DfmeshError)):
        ingest_steps(data[1:], extension, Path(tmp))


def make_seeds(directory: Path) -> None:
    """Small valid inputs for the fuzzer to mutate (first byte picks the extension)."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = {
        "mp4": (0, ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=1", "-f", "lavfi", "-i",
                    "sine=d=1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-shortest"]),
        "png": (1, ["-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1"]),
        "wav": (2, ["-f", "lavfi", "-i", "sine=d=0.5", "-ar", "8000"]),
        "mkv": (3, ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=1", "-c:v", "mpeg4"]),
    }
    for ext, (index, args) in jobs.items():
        out = directory / f"seed.{ext}"
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                        *args, str(out)], check=True, timeout=60)
        (directory / f"seed-{ext}").write_bytes(bytes([index]) + out.read_bytes())
        out.unlink()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(Path(sys.argv[2]))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
