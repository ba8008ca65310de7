"""Frame sampling with OpenCV: N evenly spaced frames plus a dense window at native fps.

One forward pass over the clip: `grab()` every frame (it only demuxes and decodes), and
`retrieve()` (the colour conversion) only the frames wanted. Where the next wanted frame is
more than `seek_min_gap` seconds ahead, the reader seeks instead of decoding through the
gap. Timestamps come from each decoded frame's presentation time, so variable frame rate
clips get their true times. Where OpenCV cannot decode a file, ffmpeg transcodes it to
baseline H.264 first.

`iter_wanted_frames_av` does the same selection on PyAV (ingest's default decoder,
DFMESH_DECODER=pyav) and decodes less: it skips non-reference frames outside the dense
window, which OpenCV's capture API cannot ask the decoder for.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from services.ingest.probe import PROTOCOL_WHITELIST
from services.ingest.rejections import Undecodable

DENSE_MARGIN_SECONDS = 1.0
"""Every frame is decoded from this long before the dense window on: a B-frame group
(at most 17 frames in H.264) that reaches into the window decodes whole."""


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded RGB frame and the roles it plays: sampled slot and/or dense index."""

    frame_number: int
    timestamp_seconds: float
    rgb: np.ndarray
    sample_index: int | None = None
    dense_index: int | None = None


def sample_times(duration: float, count: int) -> list[float]:
    """`count` evenly spaced times: the centres of `count` equal segments of the clip."""
    if count <= 0 or duration <= 0:
        return [0.0] if count > 0 else []
    step = duration / count
    return [step * (i + 0.5) for i in range(count)]


def dense_window(duration: float, seconds: float) -> tuple[float, float]:
    """[start, end) of a window of `seconds` centred on the clip's middle, inside the clip."""
    seconds = min(seconds, duration)
    start = max(0.0, duration / 2.0 - seconds / 2.0)
    return start, start + seconds


def open_capture(path: Path) -> cv2.VideoCapture | None:
    """An OpenCV capture positioned at the first frame, or None where OpenCV cannot decode
    the file (it opens but no frame comes out, e.g. AV1 without a decoder)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        return None
    if not cap.grab():
        cap.release()
        return None
    cap.release()
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)


def transcode_to_h264(src: Path, dst: Path, timeout: float) -> None:
    """Re-encode the first video stream of `src` as baseline H.264 in `dst` (mp4), keeping
    the original timestamps. InvalidInput when ffmpeg cannot."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-protocol_whitelist", PROTOCOL_WHITELIST, "-i", str(src),
           "-map", "0:v:0", "-an", "-sn", "-dn", "-c:v", "libx264", "-profile:v", "baseline",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", str(dst)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise Undecodable(f"the video could not be converted within {timeout:.0f} s; "
                           "re-encode it as H.264 and try again") from None
    if proc.returncode != 0 or not dst.exists() or dst.stat().st_size == 0:
        raise Undecodable("the video stream cannot be decoded (corrupt, truncated beyond "
                           "repair, or an unsupported codec); re-encode it as H.264 and try again")


def _retrieve_rgb(cap: cv2.VideoCapture) -> np.ndarray | None:
    ok, bgr = cap.retrieve()
    if not ok or bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_wanted_frames(cap: cv2.VideoCapture, times: list[float],
                       dense: tuple[float, float] | None, fps: float,
                       seek_min_gap: float) -> Iterator[DecodedFrame]:
    """Yield, in stream order, the first frame at or after each sample time (each slot gets
    a distinct frame) and every frame in the dense window [start, end).

    Stops early, with fewer frames, where the stream ends before the clip's stated duration.
    """
    half_frame = 0.5 / fps if fps > 0 else 0.0
    pending = list(enumerate(times))
    dense_start, dense_end = dense if dense else (0.0, 0.0)
    dense_index, dense_done = 0, dense is None
    position = 0.0
    while pending or not dense_done:
        wanted = min(([pending[0][1]] if pending else [])
                     + ([dense_start] if not dense_done and dense_index == 0 else [])
                     + ([position] if not dense_done and dense_index > 0 else []))
        if wanted - position > seek_min_gap:
            # Land a little early: the next grabs walk forward to the exact frame.
            cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, wanted - 1.0) * 1000.0)
        if not cap.grab():
            return
        frame_number = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1
        ts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        position = ts
        sample_index = None
        if pending and ts >= pending[0][1] - half_frame:
            sample_index = pending.pop(0)[0]
        in_dense = not dense_done and dense_start - half_frame <= ts < dense_end - half_frame
        if not dense_done and ts >= dense_end - half_frame:
            dense_done = True
        if sample_index is None and not in_dense:
            continue
        rgb = _retrieve_rgb(cap)
        if rgb is None:
            continue
        yield DecodedFrame(frame_number, ts, rgb, sample_index, dense_index if in_dense else None)
        if in_dense:
            dense_index += 1


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The frame turned by its display rotation (degrees counter-clockwise), as OpenCV's
    CAP_PROP_ORIENTATION_AUTO delivers it."""
    turns = (round(rotation / 90) % 4) if rotation else 0
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def iter_wanted_frames_av(path: Path, times: list[float], dense: tuple[float, float] | None,
                          fps: float, seek_min_gap: float) -> Iterator[DecodedFrame]:
    """`iter_wanted_frames` on PyAV, decoding less: outside the dense window (and a
    DENSE_MARGIN_SECONDS lead-in) the decoder skips non-reference frames (AVDISCARD_NONREF:
    frames no other frame predicts from, so the rest decode exactly as in a full pass;
    about half of an x264 stream's frames). A sample slot then takes the first decoded
    frame at or after its time, at most a few frames later than the exact one; the dense
    window gets every frame. Frame numbers are timestamp x fps (exact for constant frame
    rate). Raises av.error.FFmpegError where the file cannot be opened; corrupt packets
    are skipped as OpenCV skips them.
    """
    import av

    half_frame = 0.5 / fps if fps > 0 else 0.0
    pending = list(enumerate(times))
    dense_start, dense_end = dense if dense else (0.0, 0.0)
    dense_index, dense_done = 0, dense is None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        codec = stream.codec_context
        base = cast(Fraction, stream.time_base)  # a demuxed video stream always has one
        origin = stream.start_time or 0
        position = 0.0
        packets = container.demux(stream)
        while pending or not dense_done:
            wanted = min(([pending[0][1]] if pending else [])
                         + ([dense_start] if not dense_done and dense_index == 0 else [])
                         + ([position] if not dense_done and dense_index > 0 else []))
            if wanted - position > seek_min_gap:
                target = max(0.0, wanted - 1.0)
                container.seek(origin + int(target / base), stream=stream, backward=True)
                position = target
            packet = next(packets, None)
            if packet is None:
                return
            if packet.pts is not None:
                at = float((packet.pts - origin) * base)
                whole = not dense_done and at >= dense_start - DENSE_MARGIN_SECONDS
                codec.skip_frame = "DEFAULT" if whole else "NONREF"
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                ts = float((frame.pts - origin) * base)
                position = max(position, ts)
                sample_index = None
                if pending and ts >= pending[0][1] - half_frame:
                    sample_index = pending.pop(0)[0]
                in_dense = (not dense_done and dense_start - half_frame <= ts
                            < dense_end - half_frame)
                if not dense_done and ts >= dense_end - half_frame:
                    dense_done = True
                if sample_index is None and not in_dense:
                    continue
                rgb = _upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                yield DecodedFrame(round(ts * fps) if fps > 0 else 0, ts, rgb, sample_index,
                                   dense_index if in_dense else None)
                if in_dense:
                    dense_index += 1


def read_image(path: Path) -> np.ndarray:
    """A still image as RGB (EXIF orientation applied); InvalidInput if it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise Undecodable("the image cannot be decoded (corrupt or truncated); "
                           "send a complete JPEG or PNG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def downscale_to(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`image` shrunk so its longest side is at most `max_side`, and the factor applied."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale
