"""The ingest stages in stream order, as an async generator of plain Python results.

    spool -> probe -> open (transcode if OpenCV cannot decode) -> ClipFacts
    -> SampledResult x N (as each is decoded and searched for faces)
    -> DenseResult x M -> AudioResult x K -> SummaryResult

Decoding and MTCNN run in worker threads so the event loop keeps answering health checks
(decoding a few frames ahead of MTCNN, so the two overlap on two cores);
the audio track is decoded by an ffmpeg process running alongside the video pass. The
upload and any transcoded copy live in a private temporary directory that is removed on
every path out, including errors and cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from dfmesh.preprocess.waveform import SAMPLE_RATE as AUDIO_SAMPLE_RATE
from dfmesh.runtime import metrics
from dfmesh.runtime.errors import DfmeshError
from dfmesh.runtime.tracing import span
from services.ingest.audio import BYTES_PER_SAMPLE, decode_audio_pcm, pcm_chunks
from services.ingest.decode import (
    DecodedFrame,
    dense_window,
    downscale_to,
    iter_wanted_frames,
    iter_wanted_frames_av,
    open_capture,
    read_image,
    sample_times,
    transcode_to_h264,
)
from services.ingest.faces import DenseTracker, FaceDetector, crop_face
from services.ingest.probe import (
    MediaKind,
    MediaProbe,
    check_duration,
    check_extension,
    check_frame_size,
    probe_media,
)
from services.ingest.rejections import (
    BadRequest,
    EmptyUpload,
    TooManyFrames,
    Undecodable,
    rejection_reason,
)
from services.ingest.results import (
    AudioResult,
    ClipFacts,
    DenseResult,
    IngestResult,
    SampledResult,
    SummaryResult,
    UploadRequest,
)
from services.ingest.settings import IngestSettings
from services.ingest.spool import extension_hint, spool_chunks, too_large
from services.ingest.threads import Prefetch, Stopwatch, iterate_in_thread


@dataclass(frozen=True)
class Plan:
    """How many frames to sample and how long a dense window, after defaults and limits."""

    num_frames: int
    dense_seconds: float


def plan_for(request: UploadRequest, settings: IngestSettings) -> Plan:
    """Apply defaults to zero-valued options and refuse values beyond the limits."""
    num_frames = request.num_frames or settings.default_num_frames
    if num_frames > settings.max_frames:
        raise TooManyFrames(f"num_frames={num_frames} is above the limit {settings.max_frames} "
                            "(DFMESH_MAX_FRAMES); ask for fewer frames")
    dense = request.dense_window_seconds or settings.dense_window_seconds
    if not 0 < dense <= 10.0:
        raise BadRequest(f"dense_window_seconds={dense:g} must be in (0, 10]")
    if request.declared_size > settings.max_upload_bytes:
        raise too_large(request.declared_size, settings.max_upload_bytes)
    return Plan(num_frames, dense)


@dataclass
class FrameTally:
    """What the summary needs to know about the sampled frames already sent."""

    frames: int = 0
    with_face: int = 0
    faces: int = 0
    last_timestamp: float = 0.0

    def add(self, frame: SampledResult) -> None:
        self.frames += 1
        self.with_face += bool(frame.faces)
        self.faces += len(frame.faces)
        self.last_timestamp = frame.timestamp_seconds


def _video_pass(path: Path, probe: MediaProbe, plan: Plan, request: UploadRequest,
                settings: IngestSettings, detector: FaceDetector, clock: Stopwatch,
                dense_out: list[DenseResult]) -> Iterator[SampledResult]:
    """Blocking: one pass over the video; yields sampled frames as they are ready and
    collects the dense window's mouth crops into `dense_out`. Frames are decoded in a
    worker thread up to `settings.decode_prefetch_frames` ahead of face detection."""
    duration = probe.duration_seconds or (probe.frame_count / probe.fps if probe.fps else 0.0)
    count = min(plan.num_frames, probe.frame_count) if probe.frame_count else plan.num_frames
    times = sample_times(duration, count)
    window = dense_window(duration, plan.dense_seconds)
    tracker = DenseTracker(detector, settings.dense_detect_every)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG) if settings.decoder == "opencv" else None

    def keep(crops: list) -> None:
        for crop in crops:
            dense_out.append(DenseResult(crop.frame.dense_index, crop.frame.frame_number,
                                         crop.frame.timestamp_seconds, crop.mouth))

    if cap is not None:
        wanted = iter_wanted_frames(cap, times, window, probe.fps, settings.seek_min_gap_seconds)
    else:
        wanted = _pyav_or_opencv(path, times, window, probe.fps, settings.seek_min_gap_seconds)
    frames = Prefetch(wanted, settings.decode_prefetch_frames, clock, "decode")
    try:
        for frame in frames:
            with clock.time("faces"):
                if frame.dense_index is not None:
                    keep(tracker.add(frame))
                if frame.sample_index is None:
                    continue
                with span("ingest.detect_faces", frame__index=frame.sample_index):
                    faces = [crop_face(frame.rgb, d) for d in detector.detect(frame.rgb)]
            full = (downscale_to(frame.rgb, settings.full_frame_max_side)[0]
                    if request.wants_full_frame(bool(faces)) else None)
            yield SampledResult(frame.sample_index, frame.frame_number, frame.timestamp_seconds,
                                faces, full)
        with clock.time("faces"):
            keep(tracker.finish())
    finally:
        frames.close()
        if cap is not None:
            cap.release()


def _pyav_or_opencv(path: Path, times: list[float], window: tuple[float, float], fps: float,
                    seek_min_gap: float) -> Iterator[DecodedFrame]:
    """PyAV's frames (skipping non-reference frames outside the dense window); OpenCV's
    where PyAV fails before its first frame."""
    import av

    sent = 0
    try:
        for frame in iter_wanted_frames_av(path, times, window, fps, seek_min_gap):
            sent += 1
            yield frame
        return
    except av.error.FFmpegError:
        if sent:
            raise
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        yield from iter_wanted_frames(cap, times, window, fps, seek_min_gap)
    finally:
        cap.release()


def _image_pass(rgb: np.ndarray, request: UploadRequest, settings: IngestSettings,
                detector: FaceDetector, clock: Stopwatch) -> SampledResult:
    with clock.time("faces"), span("ingest.detect_faces", frame__index=0):
        faces = [crop_face(rgb, d) for d in detector.detect(rgb)]
    full = None
    if request.wants_full_frame(bool(faces)):
        full = downscale_to(rgb, settings.full_frame_max_side)[0]
    return SampledResult(0, 0, 0.0, faces, full)


async def ingest_upload(request: UploadRequest, chunks: AsyncIterator[bytes],
                        settings: IngestSettings, detector: FaceDetector,
                        ) -> AsyncIterator[IngestResult]:
    """Spool, probe and decode an upload; yield results in stream order.

    Raises InvalidInput / LimitExceeded subclasses (see rejections) for unusable input.
    """
    try:
        async for result in _ingest(request, chunks, settings, detector):
            yield result
    except DfmeshError as exc:
        metrics.INGEST_REJECTIONS.labels(rejection_reason(exc)).inc()
        raise


async def _ingest(request: UploadRequest, chunks: AsyncIterator[bytes],
                  settings: IngestSettings, detector: FaceDetector) -> AsyncIterator[IngestResult]:
    plan = plan_for(request, settings)
    clock = Stopwatch()
    analysis_id = request.analysis_id or uuid.uuid4().hex
    ext = extension_hint(request.filename)
    settings_dir = str(settings.temp_dir) if settings.temp_dir else None
    audio_task: asyncio.Task[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="ingest-", dir=settings_dir) as tmp:
        try:
            path = Path(tmp) / (f"upload.{ext}" if ext else "upload")
            with clock.time("spool"), span("ingest.spool"):
                spooled = await spool_chunks(chunks, path, settings.max_upload_bytes)
            if spooled.size_bytes == 0:
                raise EmptyUpload("empty upload: no data chunks followed the header; "
                                  "send the file's bytes after the IngestHeader")
            with clock.time("probe"), span("ingest.probe"):
                probe = await asyncio.to_thread(probe_media, path, settings.tool_timeout_seconds)
            check_extension(probe, ext)
            check_duration(probe, settings.max_duration_seconds)
            check_frame_size(probe, settings.max_frame_pixels)
            metrics.INGEST_UPLOAD_BYTES.observe(spooled.size_bytes)

            if probe.has_audio:
                audio_task = asyncio.create_task(_timed_audio(path, settings, clock))

            video_path, transcoded = path, False
            still: np.ndarray | None = None
            if probe.kind is MediaKind.IMAGE:
                with clock.time("decode"), span("ingest.decode"):
                    still = await asyncio.to_thread(read_image, path)
                # EXIF orientation is applied on decode: report the size as delivered.
                probe = replace(probe, width=still.shape[1], height=still.shape[0])
            if probe.kind is MediaKind.VIDEO:
                with clock.time("decode"), span("ingest.decode"):
                    video_path, transcoded = await asyncio.to_thread(
                        _decodable_video, path, Path(tmp), settings.tool_timeout_seconds)
            yield ClipFacts(analysis_id, probe, transcoded, spooled.sha256, spooled.size_bytes)

            summary = SummaryResult()
            sampled = FrameTally()  # counts only: frames are not kept once sent
            dense: list[DenseResult] = []
            if probe.kind is MediaKind.VIDEO:
                passed = _video_pass(video_path, probe, plan, request, settings, detector,
                                     clock, dense)
                with span("ingest.sample_frames") as sampling:
                    async for frame in iterate_in_thread(passed):
                        sampled.add(frame)
                        yield frame
                    sampling.set_attributes({"frames": sampled.frames, "faces": sampled.faces,
                                             "decode_ms": clock.ms.get("decode", 0.0),
                                             "faces_ms": clock.ms.get("faces", 0.0)})
                if not sampled.frames:
                    raise Undecodable("no frame could be decoded from the video stream; the "
                                      "file is corrupt or truncated beyond repair")
                if sampled.frames < min(plan.num_frames, probe.frame_count or plan.num_frames):
                    summary.notes.append(
                        f"decoded {sampled.frames} of {plan.num_frames} sampled frames: the video "
                        f"stream ends at {sampled.last_timestamp:.2f} s, before its stated "
                        f"duration {probe.duration_seconds:.2f} s")
                for item in dense:
                    yield item
                if dense:
                    summary.dense_start_seconds = dense[0].timestamp_seconds
                    summary.dense_end_seconds = dense[-1].timestamp_seconds
                if transcoded:
                    summary.notes.append("OpenCV could not decode the video; it was transcoded "
                                         "to H.264 first")
            elif still is not None:
                frame = await asyncio.to_thread(_image_pass, still, request, settings, detector,
                                                clock)
                sampled.add(frame)
                yield frame
                summary.notes.append("still image: one frame, no dense window, no audio")

            if audio_task is not None:
                pcm = await _audio_result(audio_task, probe, summary)
                audio_task = None
                for start, data in pcm_chunks(pcm, AUDIO_SAMPLE_RATE,
                                              settings.audio_chunk_seconds):
                    yield AudioResult(AUDIO_SAMPLE_RATE, start, data)
                summary.audio_num_samples = len(pcm) // BYTES_PER_SAMPLE
            elif probe.kind is not MediaKind.IMAGE:
                summary.notes.append("no audio track")
            if probe.kind is MediaKind.AUDIO:
                summary.notes.append("audio only: no frames, no faces")

            summary.num_frames = sampled.frames
            summary.num_frames_with_face = sampled.with_face
            summary.num_dense_frames = len(dense)
            metrics.INGEST_FACES.inc(sampled.faces)
            if sampled.frames and not sampled.with_face:
                summary.notes.append("no face found in any sampled frame")
            if dense and not any(d.mouth is not None for d in dense):
                summary.notes.append("no face found in the dense window")
            summary.timings_ms = {k: round(v, 1) for k, v in clock.ms.items()}
            for stage, ms in clock.ms.items():
                metrics.STAGE_SECONDS.labels("ingest", stage).observe(ms / 1000.0)
            yield summary
        finally:
            if audio_task is not None:
                audio_task.cancel()
                with contextlib.suppress(BaseException):
                    await audio_task


def _decodable_video(path: Path, tmp: Path, timeout: float) -> tuple[Path, bool]:
    """`path` if OpenCV decodes it, else an H.264 transcode of it (and True)."""
    cap = open_capture(path)
    if cap is not None:
        cap.release()
        return path, False
    converted = tmp / "transcoded.mp4"
    transcode_to_h264(path, converted, timeout)
    cap = open_capture(converted)
    if cap is None:
        raise Undecodable("the video stream cannot be decoded even after conversion to "
                          "H.264; the file is corrupt or truncated beyond repair")
    cap.release()
    return converted, True


async def _timed_audio(path: Path, settings: IngestSettings, clock: Stopwatch) -> bytes:
    with clock.time("audio"), span("ingest.audio"):
        return await decode_audio_pcm(path, AUDIO_SAMPLE_RATE,
                                      settings.tool_timeout_seconds)


async def _audio_result(task: asyncio.Task[bytes], probe: MediaProbe,
                        summary: SummaryResult) -> bytes:
    """The decoded PCM; for a video a broken audio track is a note, for audio-only an error."""
    try:
        pcm = await task
    except Undecodable as exc:
        if probe.kind is MediaKind.AUDIO:
            raise
        summary.notes.append(f"audio track skipped: {exc.message}")
        return b""
    if not pcm and probe.kind is MediaKind.AUDIO:
        raise Undecodable("the audio track holds no samples; the file is corrupt or truncated")
    return pcm
