"""Ingest through a real gRPC server on a loopback port: real clips, generated containers
and codecs, bad input, limits, temp-file hygiene and a full 1080p frame."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deepfake.v1 import ingest_pb2, ingest_pb2_grpc, media_pb2
from dfmesh.runtime.channels import create_channel
from dfmesh.runtime.server import running
from services.ingest.faces import FaceDetector
from services.ingest.servicer import SERVICE_NAME, IngestService
from services.ingest.settings import IngestSettings
from tests import media
from tests.conftest import shared_data_dir

CHUNK = 256 * 1024
GRID = "lipnet__GRID_bbaf2n.mpg"
SMALL = dict(num_frames=4, dense_window_seconds=1.0)


@dataclass
class Ingested:
    """Everything one Ingest call streamed back, in arrival order."""

    order: list[str] = field(default_factory=list)
    clip: media_pb2.ClipInfo | None = None
    frames: list[media_pb2.SampledFrame] = field(default_factory=list)
    dense: list[media_pb2.DenseFrame] = field(default_factory=list)
    audio: list[media_pb2.AudioChunk] = field(default_factory=list)
    summary: media_pb2.IngestSummary | None = None

    @property
    def audio_seconds(self) -> float:
        return sum(len(a.pcm_f32le) for a in self.audio) / 4 / 16000

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(a.pcm_f32le for a in self.audio), dtype="<f4")


async def _requests(data: bytes, filename: str, declared_size: int,
                    options: media_pb2.IngestOptions) -> AsyncIterator[ingest_pb2.IngestRequest]:
    upload = media_pb2.UploadHeader(filename=filename, declared_size=declared_size)
    yield ingest_pb2.IngestRequest(header=ingest_pb2.IngestHeader(upload=upload, options=options))
    for i in range(0, len(data), CHUNK):
        yield ingest_pb2.IngestRequest(data=data[i : i + CHUNK])


async def ingest(port: int, data: bytes | Path, filename: str = "", declared_size: int = 0,
                 timeout: float = 60.0, **options: object) -> Ingested:
    """Send an upload to the server on `port` and collect the stream."""
    if isinstance(data, Path):
        filename, data = filename or data.name, data.read_bytes()
    settings = IngestSettings()
    out = Ingested()
    async with create_channel(f"127.0.0.1:{port}", settings) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.Ingest(_requests(data, filename, declared_size,
                                     media_pb2.IngestOptions(**options)), timeout=timeout)
        async for packet in call:
            kind = packet.WhichOneof("payload")
            out.order.append(kind)
            match kind:
                case "clip_info":
                    out.clip = packet.clip_info
                case "frame":
                    out.frames.append(packet.frame)
                case "dense_frame":
                    out.dense.append(packet.dense_frame)
                case "audio":
                    out.audio.append(packet.audio)
                case "summary":
                    out.summary = packet.summary
    return out


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(spool_dir: Path):
    def build(**overrides: object) -> IngestSettings:
        return IngestSettings(metrics_port=0, temp_dir=spool_dir, **overrides)
    return build


@pytest.fixture
async def server(make_settings, detector: FaceDetector):
    async with running(IngestService(make_settings(), detector), make_settings()) as srv:
        yield srv


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def talking() -> Path | None:
    """A real talking clip to build generated media from, when shared data is present."""
    path = shared_data_dir() / "talking" / GRID
    return path if path.is_file() else None


def assert_stream_order(result: Ingested) -> None:
    rank = {"clip_info": 0, "frame": 1, "dense_frame": 2, "audio": 3, "summary": 4}
    ranks = [rank[k] for k in result.order]
    assert ranks == sorted(ranks), result.order
    assert result.order[0] == "clip_info" and result.order[-1] == "summary"
    times = [f.timestamp_seconds for f in result.frames]
    assert times == sorted(times) and len(set(times)) == len(times), times
    dense_times = [d.timestamp_seconds for d in result.dense]
    assert dense_times == sorted(dense_times) and len(set(dense_times)) == len(dense_times)


def assert_face(face: media_pb2.Face, clip: media_pb2.ClipInfo) -> None:
    assert 0.9 <= face.score <= 1.0
    assert len(face.landmarks) == 5
    assert -0.1 * clip.width <= face.box.x1 < face.box.x2 <= 1.1 * clip.width
    assert -0.1 * clip.height <= face.box.y1 < face.box.y2 <= 1.1 * clip.height
    for image, side in ((face.crop, 256), (face.mouth_crop, 96)):
        assert (image.width, image.height, image.encoding) == (side, side, media_pb2.Image.RAW_RGB8)
        assert len(image.data) == side * side * 3


# --- real clips ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [GRID, "facenet-pytorch__video.mp4"])
async def test_real_clip_gives_faces_dense_window_and_audio(server, spool_dir: Path,
                                                            shared_data: Path, name: str) -> None:
    result = await ingest(server.port, shared_data / "talking" / name)
    assert_stream_order(result)
    clip = result.clip
    assert clip.kind == media_pb2.VIDEO and clip.has_video and clip.has_audio
    assert len(clip.sha256) == 64
    assert clip.size_bytes == (shared_data / "talking" / name).stat().st_size
    assert len(result.frames) == 16 == result.summary.num_frames
    assert [f.index for f in result.frames] == list(range(16))
    with_face = [f for f in result.frames if f.faces]
    assert len(with_face) >= 12, f"faces in only {len(with_face)} of 16 frames"
    for frame in with_face:
        assert_face(frame.faces[0], clip)
        areas = [(f.box.x2 - f.box.x1) * (f.box.y2 - f.box.y1) for f in frame.faces]
        assert areas == sorted(areas, reverse=True), "largest face first"
    # Dense window: about 2.5 s at native fps around the middle, mouth crops where faces are.
    assert abs(len(result.dense) - 2.5 * clip.fps) <= 2
    mid = clip.duration_seconds / 2
    assert result.dense[0].timestamp_seconds < mid < result.dense[-1].timestamp_seconds
    steps = np.diff([d.timestamp_seconds for d in result.dense])
    assert np.allclose(steps, 1 / clip.fps, atol=0.002)
    assert sum(d.face_found for d in result.dense) >= 0.8 * len(result.dense)
    assert all(d.mouth_crop.width == 96 for d in result.dense if d.face_found)
    # Audio: mono 16 kHz float, as long as the clip, not silence.
    assert {a.sample_rate for a in result.audio} == {16000}
    assert abs(result.audio_seconds - clip.duration_seconds) <= 0.1
    assert [a.start_sample for a in result.audio] == [16000 * i for i in range(len(result.audio))]
    assert result.summary.audio_num_samples == result.pcm.size
    assert 0.001 < float(np.sqrt(np.mean(result.pcm**2))) < 1.0
    assert set(result.summary.timings_ms) >= {"spool", "probe", "decode", "faces", "audio"}
    assert list(spool_dir.iterdir()) == []


# --- generated containers and codecs -------------------------------------------------------

@pytest.mark.parametrize("ext", list(media.CODECS))
async def test_generated_containers_and_codecs(server, clips: Path, talking: Path | None,
                                               ext: str) -> None:
    path = media.make_clip(clips / f"clip.{ext}", source=talking, seconds=2.0)
    result = await ingest(server.port, path, **SMALL)
    assert_stream_order(result)
    assert result.clip.kind == media_pb2.VIDEO and not result.clip.transcoded
    assert (result.clip.width, result.clip.height) == (320, 240)
    assert len(result.frames) == 4
    assert abs(result.audio_seconds - result.clip.duration_seconds) <= 0.1
    assert 20 <= len(result.dense) <= 26
    if talking is not None:
        assert all(f.faces for f in result.frames), f"{ext}: a frame without a face"


async def test_vertical_clip_keeps_its_orientation(server, clips: Path,
                                                   talking: Path | None) -> None:
    result = await ingest(server.port, media.make_vertical(clips / "v.mp4", source=talking),
                          **SMALL)
    assert (result.clip.width, result.clip.height) == (240, 426)
    if talking is not None:
        face = result.frames[0].faces[0]
        assert face.box.y1 >= 100 and face.box.y2 <= 330, "face sits in the letterboxed band"


async def test_rotation_metadata_is_applied(server, clips: Path, talking: Path | None) -> None:
    result = await ingest(server.port, media.make_rotated(clips / "rot.mp4", source=talking),
                          num_frames=2, include_full_frames=True)
    assert (result.clip.width, result.clip.height) == (240, 320)
    assert (result.frames[0].frame.width, result.frames[0].frame.height) == (240, 320)
    if talking is not None:
        assert all(f.faces for f in result.frames), "the face is upright after rotation"


async def test_variable_frame_rate_uses_true_timestamps(server, clips: Path,
                                                        talking: Path | None) -> None:
    result = await ingest(server.port, media.make_vfr(clips / "vfr.mp4", source=talking),
                          num_frames=8)
    assert_stream_order(result)
    times = np.array([f.timestamp_seconds for f in result.frames])
    # Frames exist only at n % 10 < 4 (25 fps) before 2 s: timestamps show the gaps.
    early = times[times < 2.0]
    assert all(round(t * 25) % 10 < 4 for t in early), early
    # Each sample is the first frame at or after its target (within half an average frame).
    targets = (np.arange(8) + 0.5) * result.clip.duration_seconds / 8
    assert np.all(times >= targets - 0.5 / result.clip.fps) and np.all(times - targets < 0.25)
    assert abs(result.audio_seconds - result.clip.duration_seconds) <= 0.1


async def test_no_audio_track_is_a_note_not_an_error(server, clips: Path,
                                                     talking: Path | None) -> None:
    result = await ingest(server.port, media.make_clip(clips / "na.mp4", source=talking,
                                                       audio=False), **SMALL)
    assert not result.clip.has_audio and result.audio == []
    assert "no audio track" in result.summary.notes
    assert len(result.frames) == 4


async def test_no_face_is_a_note_not_an_error(server, clips: Path) -> None:
    result = await ingest(server.port, media.make_clip(clips / "nf.mp4"), **SMALL)
    assert len(result.frames) == 4 and not any(f.faces for f in result.frames)
    assert not any(d.face_found for d in result.dense)
    assert "no face found in any sampled frame" in result.summary.notes
    assert result.summary.num_frames_with_face == 0


async def test_cut_mp4_with_index_first_gives_the_frames_before_the_cut(
        server, clips: Path, talking: Path | None) -> None:
    path = media.make_truncated(clips / "cut.mp4", faststart=True, keep_fraction=0.6,
                                source=talking)
    result = await ingest(server.port, path, num_frames=8)
    assert_stream_order(result)
    assert 2 <= len(result.frames) < 8
    assert result.frames[-1].timestamp_seconds < result.clip.duration_seconds * 0.8
    assert any(n.startswith(f"decoded {len(result.frames)} of 8 sampled frames")
               for n in result.summary.notes), result.summary.notes


async def test_av1_is_transcoded_to_h264_first(server, clips: Path,
                                               talking: Path | None) -> None:
    result = await ingest(server.port, media.make_av1(clips / "av1.mkv", source=talking),
                          **SMALL)
    assert result.clip.transcoded and result.clip.video_codec == "av1"
    assert len(result.frames) == 4
    if talking is not None:
        assert all(f.faces for f in result.frames)


async def test_still_image_gives_one_frame(server, clips: Path, talking: Path | None) -> None:
    result = await ingest(server.port, media.make_still(clips / "still.jpg", source=talking))
    assert result.order == ["clip_info", "frame", "summary"]
    assert result.clip.kind == media_pb2.IMAGE and not result.clip.has_audio
    if talking is not None:
        assert_face(result.frames[0].faces[0], result.clip)


async def test_real_photo(server, shared_data: Path) -> None:
    result = await ingest(server.port, shared_data / "faces" / "deepface__img1.jpg")
    assert result.clip.kind == media_pb2.IMAGE
    assert_face(result.frames[0].faces[0], result.clip)


@pytest.mark.parametrize("ext", [".wav", ".mp3"])
async def test_audio_only_file_gives_audio_only(server, clips: Path, talking: Path | None,
                                                ext: str) -> None:
    result = await ingest(server.port, media.make_audio_only(clips / f"a{ext}", source=talking))
    assert result.order[0] == "clip_info" and result.order[-1] == "summary"
    assert set(result.order[1:-1]) == {"audio"}
    assert result.clip.kind == media_pb2.AUDIO and not result.clip.has_video
    assert abs(result.audio_seconds - result.clip.duration_seconds) <= 0.1


async def test_1080p_frame_travels_whole(server, clips: Path) -> None:
    path = media.make_clip(clips / "hd.mp4", seconds=1.0, size=(1920, 1080), audio=False)
    result = await ingest(server.port, path, num_frames=2, include_full_frames=True)
    assert len(result.frames) == 2
    for frame in result.frames:
        image = frame.frame
        assert (image.width, image.height) == (1920, 1080)
        assert len(image.data) == 1920 * 1080 * 3 > 4 * 1024 * 1024  # above gRPC's default cap


# --- bad input -----------------------------------------------------------------------------

def _bad_inputs(clips: Path) -> dict[str, tuple[bytes, str]]:
    still = media.make_still(clips / "bad_still.png")
    text = b"Quarterly report\nNothing to see here, just text.\n" * 20
    return {
        "zero bytes": (b"", "clip.mp4"),
        "random bytes": (media.random_bytes(300_000, seed=7), "clip.mp4"),
        "text file": (text, "notes.txt"),
        "png renamed mp4": (still.read_bytes(), "clip.mp4"),
        "truncated mp4": (media.make_truncated(clips / "trunc.mp4").read_bytes(), "clip.mp4"),
    }


BAD_EXPECTED = {
    "zero bytes": (grpc.StatusCode.INVALID_ARGUMENT, "empty upload"),
    "random bytes": (grpc.StatusCode.INVALID_ARGUMENT, "not a media file"),
    "text file": (grpc.StatusCode.INVALID_ARGUMENT, "not a media file"),
    "png renamed mp4": (grpc.StatusCode.INVALID_ARGUMENT, "named .mp4 but contains a PNG"),
    "truncated mp4": (grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
}


async def test_bad_input_gets_status_and_message_then_service_keeps_serving(
        server, clips: Path, spool_dir: Path) -> None:
    valid = media.make_clip(clips / "valid.mp4", seconds=1.0)
    for name, (data, filename) in _bad_inputs(clips).items():
        with pytest.raises(aio.AioRpcError) as info:
            await ingest(server.port, data, filename=filename)
        code, text = BAD_EXPECTED[name]
        assert info.value.code() == code, (name, info.value.details())
        assert text in info.value.details(), (name, info.value.details())
        assert list(spool_dir.iterdir()) == [], f"{name}: temporary file left behind"
        ok = await ingest(server.port, valid, num_frames=2)
        assert len(ok.frames) == 2, f"request after {name} failed"
        assert list(spool_dir.iterdir()) == []


async def test_upload_over_the_size_limit(make_settings, detector, clips: Path,
                                          spool_dir: Path) -> None:
    settings = make_settings(max_upload_bytes=1024 * 1024)
    valid = media.make_clip(clips / "small.mp4", seconds=1.0)
    async with running(IngestService(settings, detector), settings) as srv:
        big = media.random_bytes(3 * 1024 * 1024, seed=1)
        for declared in (0, len(big)):  # refused while receiving, and refused up front
            with pytest.raises(aio.AioRpcError) as info:
                await ingest(srv.port, big, filename="big.mp4", declared_size=declared)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "upload too large" in info.value.details()
            assert "DFMESH_MAX_UPLOAD_BYTES" in info.value.details()
            assert list(spool_dir.iterdir()) == []
        assert len((await ingest(srv.port, valid, num_frames=2)).frames) == 2


async def test_clip_over_the_duration_limit(make_settings, detector, clips: Path) -> None:
    settings = make_settings(max_duration_seconds=1.5)
    async with running(IngestService(settings, detector), settings) as srv:
        with pytest.raises(aio.AioRpcError) as info:
            await ingest(srv.port, media.make_clip(clips / "long.mp4", seconds=2.0))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "clip too long: 2.0 s" in info.value.details()


async def test_busy_server_refuses_with_retry_hint(make_settings, detector, clips: Path,
                                                   spool_dir: Path) -> None:
    settings = make_settings(max_concurrent_ingests=1, busy_retry_seconds=3)
    data = media.make_clip(clips / "busy.mp4", seconds=1.0).read_bytes()
    release = asyncio.Event()

    async def slow_upload():
        yield ingest_pb2.IngestRequest(header=ingest_pb2.IngestHeader(
            upload=media_pb2.UploadHeader(filename="busy.mp4"),
            options=media_pb2.IngestOptions(num_frames=2)))
        yield ingest_pb2.IngestRequest(data=data[:1000])
        await release.wait()
        yield ingest_pb2.IngestRequest(data=data[1000:])

    async with (running(IngestService(settings, detector), settings) as srv,
                create_channel(f"127.0.0.1:{srv.port}", settings) as channel):
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        first = stub.Ingest(slow_upload(), timeout=30)
        # The upload's private temp dir appears once it holds the only slot.
        while not list(spool_dir.iterdir()):
            await asyncio.sleep(0.05)
        with pytest.raises(aio.AioRpcError) as info:
            await ingest(srv.port, data, filename="second.mp4")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in info.value.details()
        assert dict(info.value.trailing_metadata()).get("retry-after") == "3"
        release.set()
        packets = [p async for p in first]
        assert packets[-1].WhichOneof("payload") == "summary"
    assert list(spool_dir.iterdir()) == []


async def test_cancelled_ingest_leaves_no_temp_file(server, clips: Path, spool_dir: Path,
                                                    talking: Path | None) -> None:
    data = media.make_clip(clips / "cancel.mp4", source=talking, seconds=3.0).read_bytes()
    settings = IngestSettings()
    async with create_channel(f"127.0.0.1:{server.port}", settings) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.Ingest(_requests(data, "cancel.mp4", 0, media_pb2.IngestOptions()),
                           timeout=30)
        async for packet in call:
            assert packet.WhichOneof("payload") == "clip_info"
            assert len(list(spool_dir.iterdir())) == 1  # the upload is on disk mid-stream
            call.cancel()
            break
    for _ in range(50):
        if not list(spool_dir.iterdir()):
            break
        await asyncio.sleep(0.1)
    assert list(spool_dir.iterdir()) == []
    assert len((await ingest(server.port, data, filename="again.mp4", **SMALL)).frames) == 4


async def test_health_is_serving_for_ingest_after_load(server) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


class LatchedDetector:
    """The real detector, held inside its first `detect` call until the test releases it, so
    a test knows an ingest is mid-decode (in its worker thread) without timing anything."""

    def __init__(self, detector: FaceDetector) -> None:
        self._detector = detector
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._detector, name)

    def detect(self, rgb: np.ndarray) -> list:
        if not self.entered.is_set():
            self.entered.set()
            if not self.release.wait(timeout=60):
                raise TimeoutError("the test never released the latched detector")
        return self._detector.detect(rgb)


async def test_health_answers_while_an_ingest_is_decoding(make_settings, detector: FaceDetector,
                                                          clips: Path) -> None:
    path = media.make_clip(clips / "hd_busy.mp4", seconds=2.0, size=(1920, 1080), audio=False)
    latched = LatchedDetector(detector)
    settings = make_settings()
    async with running(IngestService(settings, latched), settings) as srv:  # type: ignore[arg-type]
        work = asyncio.create_task(ingest(srv.port, path))
        try:
            assert await asyncio.to_thread(latched.entered.wait, 60), "decoding never started"
            async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert not work.done()  # answered while the ingest was held inside decoding
        finally:
            latched.release.set()
        assert len((await work).frames) == 16
