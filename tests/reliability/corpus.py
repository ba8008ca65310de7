"""A corpus of bad, hostile and odd uploads, generated with the ffmpeg binary and by hand.

Every case says what the mesh must do with it: `refused` (a 4xx / INVALID_ARGUMENT or
RESOURCE_EXHAUSTED with a reason, optionally naming `says`), `analyzed` (valid but odd
media: a proper result) or `either` (damaged media that a decoder may still read: a
result or a refusal, never a server error or a hang).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.media import ffmpeg, make_audio_only, make_clip, make_still, make_truncated

HOSTILE_NAME = "../../../tmp/x;rm -rf ~;$(touch dfmesh-pwned)`id`|&>.mp4"
"""Path separators and shell metacharacters: must never reach a path or a shell."""


@dataclass(frozen=True)
class Case:
    """One upload: the file on disk, the name the client gives it, what must happen."""

    name: str
    path: Path
    filename: str
    expect: str             # refused | analyzed | either
    says: str = ""          # a word the refusal's message must contain


def _lavfi(out: Path, source: str, *args: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", source, *args, out)
    return out


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (valid CRC) with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _flip_bytes(data: bytes, start_fraction: float, every: int) -> bytes:
    out = bytearray(data)
    for i in range(int(len(out) * start_fraction), len(out), every):
        out[i] ^= 0xFF
    return bytes(out)


def _break_moov(data: bytes) -> bytes:
    """Overwrite the inside of the moov box (after its first child's header) with 0xFF."""
    at = data.find(b"moov")
    if at < 0:
        raise ValueError("no moov box")
    out = bytearray(data)
    out[at + 12: at + 400] = b"\xff" * len(out[at + 12: at + 400])
    return bytes(out)


def build_corpus(d: Path) -> list[Case]:
    """Generate every case into directory `d` (about 10 s of ffmpeg on this machine)."""
    d.mkdir(parents=True, exist_ok=True)
    base = make_clip(d / "base.mp4", seconds=2.0, size=(160, 120))
    faststart = make_clip(d / "faststart.mp4", seconds=2.0, size=(160, 120),
                          extra=["-movflags", "+faststart"])

    def raw(name: str, data: bytes) -> Path:
        path = d / name
        path.write_bytes(data)
        return path

    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("clip.mp4", base.read_bytes())

    makers: list[tuple[str, Callable[[], Path], str, str, str]] = [
        # name, maker, client file name, expect, says
        ("empty", lambda: raw("empty.mp4", b""), "empty.mp4", "refused", "empty"),
        ("random_bytes", lambda: raw("random.mp4", bytes(range(256)) * 256 + b"\x13" * 999),
         "random.mp4", "refused", ""),
        ("text", lambda: raw("notes.txt", b"just some notes\n" * 200), "notes.mp4",
         "refused", ""),
        ("html", lambda: raw("page.html", b"<!doctype html><html><body><script>alert(1)"
                                          b"</script></body></html>\n" * 20),
         "page.mp4", "refused", ""),
        ("svg", lambda: raw("img.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org'
                                       b'/2000/svg" width="9" height="9"></svg>'),
         "img.svg", "refused", ""),
        ("zip_archive", lambda: raw("clip.zip", zipped.getvalue()), "clip.mp4", "refused", ""),
        ("hls_playlist", lambda: raw("list.m3u8", b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\n"
                                                  b"file:///etc/passwd\n#EXT-X-ENDLIST\n"),
         "list.m3u8", "refused", ""),
        ("ffconcat_list", lambda: raw("concat.txt", b"ffconcat version 1.0\n"
                                                    b"file '/etc/passwd'\n"),
         "concat.mp4", "refused", ""),
        ("png_named_mp4", lambda: make_still(d / "still.png"), "holiday.mp4", "refused",
         "named .mp4"),
        ("jpeg_named_mp4", lambda: make_still(d / "still.jpg"), "holiday.mp4", "refused",
         "named .mp4"),
        ("truncated_mid_frame", lambda: make_truncated(d / "cut.mp4", keep_fraction=0.5),
         "cut.mp4", "refused", "truncated"),
        ("header_only", lambda: raw("head.mp4", base.read_bytes()[:48]), "head.mp4",
         "refused", ""),
        ("broken_moov", lambda: raw("moov.mp4", _break_moov(faststart.read_bytes())),
         "moov.mp4", "either", ""),
        ("flipped_bytes", lambda: raw("flipped.mp4", _flip_bytes(base.read_bytes(), 0.3, 37)),
         "flipped.mp4", "either", ""),
        ("png_absurd_dimensions", lambda: raw("huge.png", _png_header(200_000, 200_000)),
         "huge.png", "refused", ""),
        ("y4m_absurd_dimensions",
         lambda: raw("huge.y4m", b"YUV4MPEG2 W60000 H60000 F25:1 Ip A1:1 C420jpeg\nFRAME\n"
                     + b"\x80" * 4096), "huge.y4m", "refused", ""),
        ("video_8192x8192", lambda: _lavfi(d / "giant.mp4", "color=c=gray:s=8192x8192:r=1",
                                           "-frames:v", "2", "-c:v", "libx264",
                                           "-preset", "ultrafast"),
         "giant.mp4", "refused", "megapixels"),
        ("hours_long", lambda: _lavfi(d / "long.mp4", "color=c=black:s=16x16:r=0.1",
                                      "-t", "36000", "-c:v", "libx264", "-preset", "ultrafast"),
         "long.mp4", "refused", "too long"),
        ("fps_0.001", lambda: _lavfi(d / "slow.mp4", "testsrc2=s=64x48:r=0.001",
                                     "-frames:v", "3", "-c:v", "libx264", "-preset", "ultrafast"),
         "slow.mp4", "refused", "too long"),
        ("fps_90000", lambda: _lavfi(d / "fast.mp4", "testsrc2=s=64x48:r=90000",
                                     "-frames:v", "300", "-c:v", "libx264",
                                     "-preset", "ultrafast"), "fast.mp4", "analyzed", ""),
        ("20000_frames", lambda: _lavfi(d / "frames.mp4", "color=c=gray:s=32x32:r=2000",
                                        "-t", "10", "-c:v", "libx264", "-preset", "ultrafast"),
         "frames.mp4", "analyzed", ""),
        ("one_frame", lambda: make_clip(d / "one.mp4", seconds=0.04, audio=False,
                                        extra=["-frames:v", "1"]), "one.mp4", "analyzed", ""),
        ("audio_only", lambda: make_audio_only(d / "tone.wav"), "tone.wav", "analyzed", ""),
        ("mp3_named_mp4", lambda: make_audio_only(d / "tone.mp3"), "tone.mp4", "analyzed", ""),
        ("video_only", lambda: make_clip(d / "silent.mp4", audio=False, size=(160, 120)),
         "silent.mp4", "analyzed", ""),
        ("mkv_named_avi", lambda: make_clip(d / "real.mkv", seconds=1.0, size=(160, 120)),
         "real.avi", "analyzed", ""),
        ("many_streams", lambda: _many_streams(d / "many.mkv", base), "many.mkv", "analyzed",
         ""),
        ("yuv444p10", lambda: make_clip(d / "p10.mkv", seconds=1.0, size=(160, 120),
                                        audio=False, extra=["-c:v", "libx264", "-preset",
                                                            "ultrafast",
                                                            "-pix_fmt", "yuv444p10le"]),
         "p10.mkv", "analyzed", ""),
        ("gray", lambda: make_clip(d / "gray.mkv", seconds=1.0, size=(160, 120), audio=False,
                                   extra=["-c:v", "ffv1", "-pix_fmt", "gray"]),
         "gray.mkv", "analyzed", ""),
        ("rgb48", lambda: make_clip(d / "rgb48.mkv", seconds=1.0, size=(160, 120), audio=False,
                                    extra=["-c:v", "ffv1", "-pix_fmt", "rgb48le"]),
         "rgb48.mkv", "analyzed", ""),
        ("animated_gif", lambda: _lavfi(d / "anim.gif", "testsrc2=s=96x72:r=10", "-t", "1"),
         "anim.gif", "analyzed", ""),
        ("hostile_file_name", lambda: base, HOSTILE_NAME, "analyzed", ""),
    ]
    return [Case(name, make(), filename, expect, says)
            for name, make, filename, expect, says in makers]


def _many_streams(out: Path, base: Path) -> Path:
    """Six video and six audio streams (the same clip mapped over and over) plus subtitles."""
    srt = out.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    maps = [a for _ in range(6) for a in ("-map", "0:v:0", "-map", "0:a:0")]
    ffmpeg("-i", base, "-i", srt, *maps, "-map", "1:0", "-c:v", "libx264", "-preset",
           "ultrafast", "-c:a", "aac", "-c:s", "srt", out)
    return out
