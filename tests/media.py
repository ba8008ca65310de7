"""Small test media made with the ffmpeg binary: containers, codecs, odd shapes, bad input.

Every clip is a few seconds at low resolution so a test module can make a dozen of them in
a few seconds. With a real talking clip as `source` the clips contain a face and speech;
without one they use ffmpeg's synthetic test pattern and a sine tone (no face).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FFMPEG_TIMEOUT_SECONDS = 60.0

# Container extension -> (video codec args, audio codec args).
CODECS: dict[str, tuple[list[str], list[str]]] = {
    "mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "avi": (["-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p"], ["-c:a", "pcm_s16le"]),
    "mkv": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"],
            ["-c:a", "libopus"]),
    "webm": (["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"],
             ["-c:a", "libvorbis"]),
    "mov": (["-c:v", "mpeg4", "-q:v", "5"], ["-c:a", "aac"]),
    "mpg": (["-c:v", "mpeg2video", "-q:v", "5"], ["-c:a", "mp2", "-ar", "44100"]),
}


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly with an argument list; raise with its stderr on failure."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{stderr}")


def _inputs(source: Path | None, seconds: float, size: tuple[int, int], fps: float,
            audio: bool) -> list[str]:
    if source is not None:
        return ["-i", str(source), "-t", f"{seconds}"]
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    return args


def make_clip(out: Path, *, source: Path | None = None, seconds: float = 2.0,
              size: tuple[int, int] = (320, 240), fps: float = 25.0, audio: bool = True,
              video_filter: str = "", extra: list[str] | None = None) -> Path:
    """A short clip in the container named by `out`'s extension (see CODECS).

    With `source`, video and audio come from it (scaled to `size`); otherwise a synthetic
    pattern (no face) and a tone.
    """
    ext = out.suffix.lstrip(".")
    vcodec, acodec = CODECS[ext]
    w, h = size
    vf = f"scale={w}:{h},fps={fps}" if source is not None else ""
    vf = ",".join(f for f in (vf, video_filter) if f)
    args: list[str] = _inputs(source, seconds, size, fps, audio)
    if source is None and audio:
        args += ["-map", "0:v", "-map", "1:a"]
    elif source is not None:
        args += ["-map", "0:v:0"] + (["-map", "0:a:0"] if audio else [])
    if vf:
        args += ["-vf", vf]
    args += vcodec + (acodec if audio else ["-an"]) + (extra or []) + [str(out)]
    ffmpeg(*args)
    return out


def make_vertical(out: Path, *, source: Path | None = None, seconds: float = 2.0) -> Path:
    """A 9:16 portrait mp4 (the source letterboxed into 240x426)."""
    return make_clip(out, source=source, seconds=seconds, size=(240, 192),
                     video_filter="pad=240:426:0:117")


def make_rotated(out: Path, *, source: Path | None = None, seconds: float = 2.0) -> Path:
    """A landscape-coded mp4 with rotation metadata (as phones write): displayed as an
    upright 240x320 portrait, coded as 320x240 turned a quarter clockwise."""
    coded = make_clip(out.with_name(out.stem + ".coded.mp4"), source=source, seconds=seconds,
                      size=(240, 192), video_filter="pad=240:320:0:64,transpose=1")
    ffmpeg("-i", coded, "-c", "copy", "-metadata:s:v", "rotate=90", out)
    coded.unlink()
    return out


def make_vfr(out: Path, *, source: Path | None = None, seconds: float = 3.0) -> Path:
    """A variable-frame-rate mp4: runs of frames at 25 fps broken by dropped frames."""
    return make_clip(out, source=source, seconds=seconds,
                     video_filter="select='lt(mod(n\\,10)\\,4)+gt(n\\,50)'",
                     extra=["-fps_mode", "vfr"])


def make_av1(out: Path, *, source: Path | None = None, seconds: float = 1.0) -> Path:
    """An AV1 clip in Matroska: the OpenCV wheels decode no AV1, so ingest must transcode."""
    return make_clip(out.with_suffix(".mkv"), source=source, seconds=seconds,
                     extra=["-c:v", "libsvtav1", "-preset", "12"])


def make_still(out: Path, *, source: Path | None = None, size: tuple[int, int] = (320, 240),
               at_seconds: float = 1.0) -> Path:
    """One frame as an image (format from the extension: png, jpg)."""
    w, h = size
    if source is None:
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=1", "-frames:v", "1", out)
    else:
        ffmpeg("-ss", f"{at_seconds}", "-i", source, "-frames:v", "1", "-vf", f"scale={w}:{h}", out)
    return out


def make_audio_only(out: Path, *, source: Path | None = None, seconds: float = 2.0) -> Path:
    """An audio file (format from the extension: wav, mp3, m4a)."""
    codec = {".wav": ["-c:a", "pcm_s16le"], ".mp3": ["-c:a", "libmp3lame"],
             ".m4a": ["-c:a", "aac"]}[out.suffix]
    if source is None:
        inputs = ["-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=22050:duration={seconds}"]
    else:
        inputs = ["-i", str(source), "-t", f"{seconds}", "-vn"]
    ffmpeg(*inputs, *codec, out)
    return out


def make_truncated(out: Path, *, keep_fraction: float = 0.5, faststart: bool = False,
                   source: Path | None = None) -> Path:
    """An mp4 cut short. By default ffmpeg writes the index (moov) at the end, so the cut
    file has frames but no index: truncated beyond repair. With `faststart` the index comes
    first and the frames before the cut still decode."""
    full = out.with_name(out.stem + ".full.mp4")
    make_clip(full, seconds=2.0, source=source,
              extra=["-movflags", "+faststart"] if faststart else None)
    data = full.read_bytes()
    full.unlink()
    out.write_bytes(data[: int(len(data) * keep_fraction)])
    return out


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Reproducible bytes that are not media."""
    import random

    return random.Random(seed).randbytes(n)


def tool_available(name: str) -> bool:
    """True when an executable is on PATH."""
    return any(os.access(Path(d) / name, os.X_OK) for d in os.environ.get("PATH", "").split(":"))
