"""Ingest's pure parts without a server: sampling plan, probing, spooling, PCM chunks,
box interpolation and the dense-window tracker (real MTCNN, real ffmpeg)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from dfmesh.preprocess.geometry import Box
from dfmesh.runtime.errors import InvalidInput, LimitExceeded
from services.ingest.audio import pcm_chunks
from services.ingest.decode import DecodedFrame, dense_window, sample_times
from services.ingest.faces import DenseTracker, Detection, FaceDetector, interpolate
from services.ingest.limits import IngestSlots
from services.ingest.pipeline import UploadRequest, plan_for
from services.ingest.probe import MediaKind, check_duration, check_extension, probe_media
from services.ingest.rejections import Busy, ExtensionMismatch, NotMedia, TooLarge, Truncated
from services.ingest.settings import IngestSettings
from services.ingest.spool import extension_hint, spool_chunks
from tests import media


def test_sample_times_are_segment_centres_inside_the_clip() -> None:
    times = sample_times(4.0, 4)
    assert times == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert all(0 < t < 4.0 for t in sample_times(3.0, 16))
    assert sample_times(0.0, 3) == [0.0]


def test_dense_window_is_centred_and_clamped() -> None:
    assert dense_window(10.0, 2.5) == pytest.approx((3.75, 6.25))
    assert dense_window(1.0, 2.5) == pytest.approx((0.0, 1.0))


def test_extension_hint_never_keeps_path_parts() -> None:
    assert extension_hint("clip.MP4") == "mp4"
    assert extension_hint("../../etc/passwd") == ""
    assert extension_hint("evil.mp4/../../x.sh") == ""
    assert extension_hint("notes.txt") == ""
    assert extension_hint("") == ""


def test_plan_applies_defaults_and_limits() -> None:
    settings = IngestSettings(max_frames=32, max_upload_bytes=1000)
    assert plan_for(UploadRequest(), settings).num_frames == 16
    assert plan_for(UploadRequest(dense_window_seconds=1.5), settings).dense_seconds == 1.5
    with pytest.raises(LimitExceeded, match="DFMESH_MAX_FRAMES"):
        plan_for(UploadRequest(num_frames=33), settings)
    with pytest.raises(TooLarge, match="limit is 1000 bytes"):
        plan_for(UploadRequest(declared_size=1001), settings)
    with pytest.raises(InvalidInput, match="dense_window_seconds"):
        plan_for(UploadRequest(dense_window_seconds=-1), settings)


async def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_spool_stops_at_the_size_limit(tmp_path: Path) -> None:
    with pytest.raises(TooLarge, match="DFMESH_MAX_UPLOAD_BYTES"):
        await spool_chunks(_chunks(b"x" * 5000, 1000), tmp_path / "a", max_bytes=4500)
    done = await spool_chunks(_chunks(b"abc" * 10, 7), tmp_path / "b", max_bytes=30)
    assert done.size_bytes == 30 and (tmp_path / "b").read_bytes() == b"abc" * 10
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600


def test_probe_classifies_generated_media(tmp_path: Path) -> None:
    video = probe_media(media.make_clip(tmp_path / "c.mp4", seconds=1.0), timeout=30)
    assert (video.kind, video.video_codec, video.has_audio) == (MediaKind.VIDEO, "h264", True)
    assert video.duration_seconds == pytest.approx(1.0, abs=0.05)
    assert (video.width, video.height, video.fps, video.frame_count) == (320, 240, 25.0, 25)
    image = probe_media(media.make_still(tmp_path / "s.png"), timeout=30)
    assert image.kind is MediaKind.IMAGE and image.video_codec == "png"
    sound = probe_media(media.make_audio_only(tmp_path / "a.wav"), timeout=30)
    assert sound.kind is MediaKind.AUDIO and sound.audio_sample_rate == 22050
    with pytest.raises(LimitExceeded, match="clip too long: 1.0 s"):
        check_duration(video, max_seconds=0.5)
    with pytest.raises(ExtensionMismatch, match="named .mp4 but contains a PNG"):
        check_extension(image, "mp4")
    check_extension(sound, "mp4")  # audio-only MP4 (m4a) is ordinary


def test_probe_rejects_non_media_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "r").write_bytes(media.random_bytes(20000))
    with pytest.raises(NotMedia, match="not a media file"):
        probe_media(tmp_path / "r", timeout=30)
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/hostname\n")
    with pytest.raises(NotMedia):
        probe_media(tmp_path / "list.m3u8", timeout=30)
    with pytest.raises(Truncated, match="cut short"):
        probe_media(media.make_truncated(tmp_path / "t.mp4"), timeout=30)


def test_pcm_chunks_cover_every_sample_once() -> None:
    pcm = np.arange(35, dtype=np.float32).tobytes()
    chunks = list(pcm_chunks(pcm, sample_rate=10, chunk_seconds=1.0))
    assert [start for start, _ in chunks] == [0, 10, 20, 30]
    assert b"".join(data for _, data in chunks) == pcm


def _detection(x: float) -> Detection:
    landmarks = np.array([[x + 3, 4], [x + 7, 4], [x + 5, 6], [x + 3, 8], [x + 7, 8]],
                         dtype=np.float32)
    return Detection(Box(x, 0, x + 10, 10), 0.99, landmarks)


def test_interpolate_moves_box_and_landmarks_linearly() -> None:
    mid = interpolate(_detection(0), _detection(20), 0.25)
    assert (mid.box.x1, mid.box.x2) == pytest.approx((5.0, 15.0))
    assert mid.landmarks[0, 0] == pytest.approx(8.0)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_detector_finds_a_face_in_a_real_photo(detector: FaceDetector, shared_data: Path) -> None:
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "faces" / "deepface__img1.jpg")),
                       cv2.COLOR_BGR2RGB)
    faces = detector.detect(rgb)
    assert faces, "MTCNN found no face in a portrait"
    h, w = rgb.shape[:2]
    box = faces[0].box
    # Boxes are in source pixels even though MTCNN ran on a downscaled copy.
    assert 0 <= box.x1 < box.x2 <= w * 1.05 and 0 <= box.y1 < box.y2 <= h * 1.05
    assert box.width > 0.1 * min(h, w)
    assert faces[0].landmarks.shape == (5, 2)
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []


def test_dense_tracker_runs_mtcnn_on_every_nth_frame(detector: FaceDetector,
                                                     shared_data: Path) -> None:
    import cv2

    cap = cv2.VideoCapture(str(shared_data / "talking" / "lipnet__GRID_bbaf2n.mpg"))
    frames = []
    for i in range(12):
        ok, bgr = cap.read()
        assert ok
        frames.append(DecodedFrame(i, i / 25, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, i))
    cap.release()
    tracker = DenseTracker(detector, every=5)
    crops = [c for f in frames for c in tracker.add(f)] + tracker.finish()
    assert [c.frame.frame_number for c in crops] == list(range(12))
    assert [c.frame.frame_number for c in crops if c.detected] == [0, 5, 10, 11]
    assert all(c.mouth is not None and c.mouth.shape == (96, 96, 3) for c in crops)


async def test_slots_refuse_beyond_the_limit_with_a_retry_hint() -> None:
    slots = IngestSlots(limit=1, retry_after_seconds=3)
    with slots.acquire():
        with pytest.raises(Busy) as info, slots.acquire():
            pass
        assert info.value.retry_after_seconds == 3
    with slots.acquire():
        await asyncio.sleep(0)
    assert slots.in_use == 0
