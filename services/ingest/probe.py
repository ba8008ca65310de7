"""What an upload is, according to ffprobe, and whether it is within limits."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from services.ingest.rejections import (
    ExtensionMismatch,
    NotMedia,
    TooLarge,
    TooLong,
    Truncated,
    Undecodable,
)
from services.ingest.spool import IMAGE_EXTENSIONS

ACCEPTED = ("send a video (mp4, mov, mkv, webm, avi, mpg), an image (jpg, png) "
            "or audio (wav, mp3, m4a)")

# Demuxers that follow references to other files or are not media at all: never decode these.
REFUSED_FORMATS = frozenset({"hls", "concat", "tty", "ffmetadata", "lavfi", "sdp", "rtsp",
                             "image2pipe", "dash", "webm_dash_manifest", "mpjpeg", "data"})
IMAGE_CODECS = frozenset({"png", "mjpeg", "jpegls", "bmp", "webp", "tiff", "jpeg2000", "qoi"})
# ffmpeg only allows these protocols, so a playlist-like upload cannot reach the network.
PROTOCOL_WHITELIST = "file"


class MediaKind(Enum):
    VIDEO = "VIDEO"
    IMAGE = "IMAGE"
    AUDIO = "AUDIO"


@dataclass(frozen=True)
class MediaProbe:
    """The facts ingest needs about an upload."""

    kind: MediaKind
    container: str
    video_codec: str = ""
    audio_codec: str = ""
    duration_seconds: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    frame_count: int = 0
    has_audio: bool = False
    audio_sample_rate: int = 0


MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"})


def looks_like_mp4(path: Path) -> bool:
    """True when the file starts with an MP4/MOV box (so a missing index means truncation,
    not random bytes with an .mp4 name)."""
    with path.open("rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] in MP4_BOXES


def run_ffprobe(path: Path, timeout: float) -> dict[str, Any]:
    """ffprobe's JSON report of streams and format; NotMedia or Truncated if it cannot
    read the file."""
    cmd = ["ffprobe", "-v", "error", "-protocol_whitelist", PROTOCOL_WHITELIST,
           "-print_format", "json", "-show_format", "-show_streams", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise Undecodable(f"the file could not be probed within {timeout:.0f} s; "
                           "it may be damaged; re-encode it and try again") from None
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        if "moov atom not found" in stderr and looks_like_mp4(path):
            raise Truncated("truncated file: the MP4/MOV index (moov atom) is missing, so the "
                            "upload was probably cut short; send the complete file")
        raise NotMedia(f"not a media file that can be read; {ACCEPTED}")
    return json.loads(proc.stdout or b"{}")


def _ratio(text: str | None) -> float:
    if not text or "/" not in text:
        return float(text or 0.0)
    num, den = text.split("/", 1)
    return float(num) / float(den) if float(den) else 0.0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def display_rotation(stream: dict[str, Any]) -> int:
    """The stream's display rotation in degrees (0, 90, 180, 270) from side data or tags."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(_float(side["rotation"])) % 360
    return int(_float(stream.get("tags", {}).get("rotate"))) % 360


def parse_probe(report: dict[str, Any]) -> MediaProbe:
    """Classify ffprobe's report as VIDEO, IMAGE or AUDIO; InvalidInput if it is none."""
    fmt = report.get("format", {})
    container = str(fmt.get("format_name", ""))
    if container in REFUSED_FORMATS:
        raise NotMedia(f"unsupported format {container!r}; {ACCEPTED}")
    streams = report.get("streams", [])
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not s.get("disposition", {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos and not audios:
        raise NotMedia(f"the file has no video or audio stream; {ACCEPTED}")
    audio = audios[0] if audios else {}
    common = MediaProbe(MediaKind.AUDIO, container=container,
                        audio_codec=str(audio.get("codec_name", "")), has_audio=bool(audios),
                        audio_sample_rate=int(_float(audio.get("sample_rate"))))
    duration = _float(fmt.get("duration"))
    if not videos:
        duration = duration or _float(audio.get("duration"))
        return replace(common, duration_seconds=duration)
    video = videos[0]
    codec = str(video.get("codec_name", ""))
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise Undecodable("the video stream has no picture size; the file is damaged; "
                           "re-encode it and try again")
    is_image = (container == "image2" or container.endswith("_pipe")) and codec in IMAGE_CODECS
    if is_image:
        return MediaProbe(MediaKind.IMAGE, video_codec=codec, width=width, height=height,
                          frame_count=1, container=container)
    if display_rotation(video) % 180 == 90:
        # OpenCV applies the rotation, so frames (and boxes) come in display orientation.
        width, height = height, width
    fps = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
    duration = duration or _float(video.get("duration"))
    frames = int(_float(video.get("nb_frames"))) or int(round(duration * fps))
    return replace(common, kind=MediaKind.VIDEO, video_codec=codec, duration_seconds=duration,
                   fps=fps, width=width, height=height, frame_count=frames)


def check_duration(probe: MediaProbe, max_seconds: float) -> None:
    """LimitExceeded when the clip is longer than the configured maximum."""
    if probe.duration_seconds > max_seconds:
        raise TooLong(
            f"clip too long: {probe.duration_seconds:.1f} s, the limit is {max_seconds:.0f} s "
            "(DFMESH_MAX_DURATION_SECONDS); send a shorter excerpt")


def check_frame_size(probe: MediaProbe, max_pixels: int) -> None:
    """LimitExceeded when a frame is larger than the configured maximum (a small upload can
    declare frames that take gigabytes once decoded)."""
    pixels = probe.width * probe.height
    if pixels > max_pixels:
        raise TooLarge(
            f"frames too large: {probe.width}x{probe.height} ({pixels / 1e6:.1f} megapixels), "
            f"the limit is {max_pixels / 1e6:.1f} megapixels (DFMESH_MAX_FRAME_PIXELS); "
            "scale the video or image down and try again")


def check_extension(probe: MediaProbe, extension: str) -> None:
    """InvalidInput when the advisory extension says image and the content is not one, or
    the other way round (e.g. a PNG renamed .mp4). Unknown or empty extensions pass."""
    if not extension:
        return
    named_image = extension in IMAGE_EXTENSIONS
    if probe.kind is MediaKind.IMAGE and not named_image:
        raise ExtensionMismatch(
            f"the upload is named .{extension} but contains a {probe.video_codec.upper()} "
            "still image; send it with its real extension (.png, .jpg) to analyse an image")
    if probe.kind is not MediaKind.IMAGE and named_image:
        raise ExtensionMismatch(
            f"the upload is named .{extension} but contains {probe.kind.value.lower()} "
            f"({probe.container}); send it with its real extension")


def probe_media(path: Path, timeout: float) -> MediaProbe:
    """Probe `path` with ffprobe and classify it."""
    return parse_probe(run_ffprobe(path, timeout))
