"""A branch request stream (header, MediaPackets, FrameEmbeddings) as plain Python inputs.

`collect` turns the stream into `BranchInputs` (numpy images and PCM, no protobuf), so that
every branch's preprocessing is testable without a server. `select_face_crops` is the one
place that decides which crops the face branches (tiny_gate, visual, mri) score: every
detected face, or where the clip has none, centre crops of the full frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from deepfake.v1 import branch_pb2, media_pb2
from dfmesh.preprocess.geometry import (
    FACE_CROP_SIZE,
    MOUTH_CROP_SIZE,
    centre_crop_box,
    crop_square,
)
from dfmesh.runtime.errors import InvalidInput, LimitExceeded

FRAMES, DENSE, AUDIO, EMBEDDINGS = "frames", "dense", "audio", "embeddings"
"""What a branch can ask `collect` to keep; other payloads are skipped undecoded."""

MAX_IMAGE_SIDE = 8192
Encoding = media_pb2.Image.Encoding


@dataclass
class FrameInput:
    """One sampled frame: its face crops (largest first) and, if sent, the full frame."""

    index: int
    timestamp_seconds: float
    faces: list[np.ndarray] = field(default_factory=list)
    image: np.ndarray | None = None


@dataclass
class DenseInput:
    """One frame of the dense lip-sync window; `mouth` is None where no face was found."""

    index: int
    timestamp_seconds: float
    face_found: bool
    mouth: np.ndarray | None


@dataclass
class EmbeddingInput:
    frame_index: int
    timestamp_seconds: float
    values: np.ndarray
    source_model_sha256: str = ""
    """The producing model's artifact sha256; empty when the sender did not say."""


@dataclass
class BranchInputs:
    """Everything a branch was sent, decoded; lists are in frame order."""

    analysis_id: str = ""
    has_audio: bool | None = None
    """From ClipInfo when it was sent; None when the stream carried no ClipInfo."""
    frames: list[FrameInput] = field(default_factory=list)
    dense: list[DenseInput] = field(default_factory=list)
    pcm: np.ndarray | None = None
    sample_rate: int = 0
    embeddings: list[EmbeddingInput] = field(default_factory=list)


@dataclass(frozen=True)
class FaceCrops:
    """The crops a face branch scores, with where each came from."""

    crops: list[np.ndarray]
    frame_indices: list[int]
    timestamps: list[float]
    labels: list[str]
    fallback: bool
    num_faces: int


def decode_image(image: media_pb2.Image, what: str) -> np.ndarray:
    """An Image message -> uint8 HxWx3 RGB; InvalidInput naming `what` when it is unusable."""
    w, h = image.width, image.height
    if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
        raise InvalidInput(f"{what}: {w}x{h} exceeds the {MAX_IMAGE_SIDE}px limit per side")
    data = image.data
    if image.encoding in (Encoding.RAW_RGB8, Encoding.RAW_GRAY8):
        channels = 3 if image.encoding == Encoding.RAW_RGB8 else 1
        if w == 0 or h == 0 or len(data) != w * h * channels:
            raise InvalidInput(
                f"{what}: {Encoding.Name(image.encoding)} {w}x{h} needs {w * h * channels} "
                f"bytes, got {len(data)}; send width, height and row-major pixel data")
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(h, w, channels)
        return pixels.copy() if channels == 3 else cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if image.encoding in (Encoding.JPEG, Encoding.PNG):
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidInput(f"{what}: {len(data)} bytes are not a decodable "
                               f"{Encoding.Name(image.encoding)} image")
        if (w or h) and (bgr.shape[1], bgr.shape[0]) != (w, h):
            raise InvalidInput(f"{what}: declared {w}x{h} but the image is "
                               f"{bgr.shape[1]}x{bgr.shape[0]}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise InvalidInput(f"{what}: image encoding {Encoding.Name(image.encoding)} is not "
                       "supported; use RAW_RGB8, RAW_GRAY8, JPEG or PNG")


def _decode_pcm(chunk: media_pb2.AudioChunk) -> np.ndarray:
    if len(chunk.pcm_f32le) % 4:
        raise InvalidInput(f"audio chunk at sample {chunk.start_sample}: {len(chunk.pcm_f32le)} "
                           "bytes is not a whole number of float32 samples (send f32le PCM)")
    return np.frombuffer(chunk.pcm_f32le, dtype="<f4")


def assemble_pcm(chunks: Iterable[tuple[int, np.ndarray]], sample_rate: int,
                 max_seconds: float) -> np.ndarray:
    """Place (start_sample, samples) chunks on one timeline; gaps are silence."""
    chunks = sorted(chunks, key=lambda c: c[0])
    total = max(start + len(samples) for start, samples in chunks)
    if total > max_seconds * sample_rate:
        raise LimitExceeded(f"audio is {total / sample_rate:.1f} s long; this branch accepts "
                            f"at most {max_seconds:g} s (DFMESH_MAX_AUDIO_SECONDS)")
    pcm = np.zeros(total, dtype=np.float32)
    for start, samples in chunks:
        pcm[start:start + len(samples)] = samples
    return pcm


async def collect(requests: AsyncIterable[branch_pb2.BranchRequest], wants: frozenset[str],
                  max_audio_seconds: float) -> BranchInputs:
    """Read the whole request stream, decoding only the payloads in `wants`."""
    inputs = BranchInputs()
    audio: list[tuple[int, np.ndarray]] = []
    async for request in requests:
        kind = request.WhichOneof("payload")
        if kind == "header":
            inputs.analysis_id = request.header.analysis_id
        elif kind == "embedding" and EMBEDDINGS in wants:
            e = request.embedding
            inputs.embeddings.append(EmbeddingInput(
                e.frame_index, e.timestamp_seconds, np.asarray(e.values, dtype=np.float32),
                e.source_model_sha256))
        elif kind == "media":
            _add_packet(inputs, request.media, wants, audio)
    if audio:
        inputs.pcm = assemble_pcm(audio, inputs.sample_rate, max_audio_seconds)
    inputs.frames.sort(key=lambda f: f.index)
    inputs.dense.sort(key=lambda d: d.timestamp_seconds)
    inputs.embeddings.sort(key=lambda e: e.frame_index)
    return inputs


def _add_packet(inputs: BranchInputs, packet: media_pb2.MediaPacket, wants: frozenset[str],
                audio: list[tuple[int, np.ndarray]]) -> None:
    kind = packet.WhichOneof("payload")
    if kind == "clip_info":
        inputs.has_audio = packet.clip_info.has_audio
    elif kind == "frame" and FRAMES in wants:
        f = packet.frame
        faces = [decode_image(face.crop, f"frame {f.index} face {i} crop")
                 for i, face in enumerate(f.faces) if face.HasField("crop")]
        image = decode_image(f.frame, f"frame {f.index}") if f.HasField("frame") else None
        inputs.frames.append(FrameInput(f.index, f.timestamp_seconds, faces, image))
    elif kind == "dense_frame" and DENSE in wants:
        d = packet.dense_frame
        mouth = (decode_image(d.mouth_crop, f"dense frame {d.index} mouth crop")
                 if d.face_found and d.HasField("mouth_crop") else None)
        inputs.dense.append(DenseInput(d.index, d.timestamp_seconds, mouth is not None, mouth))
    elif kind == "audio" and AUDIO in wants:
        chunk = packet.audio
        if inputs.sample_rate and chunk.sample_rate != inputs.sample_rate:
            raise InvalidInput(f"audio chunks disagree on the sample rate: {inputs.sample_rate} "
                               f"then {chunk.sample_rate}")
        if chunk.sample_rate == 0:
            raise InvalidInput(f"audio chunk at sample {chunk.start_sample} has no sample_rate")
        inputs.sample_rate = chunk.sample_rate
        audio.append((chunk.start_sample, _decode_pcm(chunk)))


def select_face_crops(frames: list[FrameInput], max_faces_per_frame: int,
                      size: int = FACE_CROP_SIZE) -> FaceCrops:
    """Every detected face (up to `max_faces_per_frame` per frame, largest first); where no
    frame has a face, centre crops of the full frames that were sent (fallback)."""
    crops, frame_indices, timestamps, labels = [], [], [], []
    for frame in frames:
        for i, crop in enumerate(frame.faces[:max_faces_per_frame]):
            crops.append(crop)
            frame_indices.append(frame.index)
            timestamps.append(frame.timestamp_seconds)
            labels.append(f"frame:{frame.index}/face:{i}")
    if crops:
        return FaceCrops(crops, frame_indices, timestamps, labels, False, len(crops))
    for frame in frames:
        if frame.image is None:
            continue
        h, w = frame.image.shape[:2]
        crops.append(crop_square(frame.image, centre_crop_box(w, h), size))
        frame_indices.append(frame.index)
        timestamps.append(frame.timestamp_seconds)
        labels.append(f"frame:{frame.index}/centre")
    return FaceCrops(crops, frame_indices, timestamps, labels, True, 0)


def synthetic_inputs(input_shape: Callable[[str], list[Any]], frames: int = 4, dense: int = 40,
                     seconds: float = 4.5, sample_rate: int = 16_000) -> BranchInputs:
    """Noise in every payload a branch can be sent: face crops, mouth crops, PCM, and
    embeddings sized like the model's last input axis where a model has one."""
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (FACE_CROP_SIZE, FACE_CROP_SIZE, 3), dtype=np.uint8)
    mouth = rng.integers(0, 256, (MOUTH_CROP_SIZE, MOUTH_CROP_SIZE, 3), dtype=np.uint8)
    size = 8
    try:
        last = input_shape("embeddings")[-1]
        size = last if isinstance(last, int) else size
    except StopIteration:
        pass
    return BranchInputs(
        analysis_id="warm-up", has_audio=True,
        frames=[FrameInput(i, i * 0.5, faces=[face]) for i in range(frames)],
        dense=[DenseInput(i, i / 25.0, True, mouth) for i in range(dense)],
        pcm=(0.05 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32),
        sample_rate=sample_rate,
        embeddings=[EmbeddingInput(i, i * 0.5, rng.standard_normal(size).astype(np.float32))
                    for i in range(frames)])
