"""Ingest's faster paths give what the reference paths give, on real talking clips:
MTCNN on ONNX Runtime vs facenet-pytorch's torch code, the region search near the previous
face vs a whole-frame detection, and PyAV decoding (non-reference frames skipped outside
the dense window) vs OpenCV decoding every frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfmesh.preprocess.geometry import Box
from services.ingest.decode import (
    dense_window,
    iter_wanted_frames,
    iter_wanted_frames_av,
    sample_times,
)
from services.ingest.faces import FaceDetector

CLIPS = ("sadtalker__WDA_KatieHill_000.mp4", "facenet-pytorch__video.mp4",
         "face_recognition__short_hamilton_clip.mp4", "video-retalking__face_2.mp4",
         "liveportrait__driving_d13.mp4", "lipnet__GRID_bbaf2n.mpg")


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def frames_of(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = {int((i + 0.5) * total / count) for i in range(count)}
    out, index = [], 0
    while len(out) < len(wanted):
        ok, bgr = cap.read()
        if not ok:
            break
        if index in wanted:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    return out


@pytest.fixture(scope="module")
def detectors() -> dict[str, FaceDetector]:
    return {b: FaceDetector(backend=b) for b in ("onnx", "torch")}


@pytest.fixture(scope="module")
def talking(shared_data: Path) -> list[Path]:
    return [shared_data / "talking" / c for c in CLIPS if (shared_data / "talking" / c).is_file()]


def test_onnx_mtcnn_finds_the_faces_torch_finds(detectors, talking: list[Path]) -> None:
    found = matched = frames = 0
    for clip in talking:
        for rgb in frames_of(clip, 3):
            ours, ref = detectors["onnx"].detect(rgb), detectors["torch"].detect(rgb)
            assert ref and ours, clip.name  # every sampled frame of these clips has a face
            frames += 1
            # Largest face: the one the dense window and most crops use.
            assert iou(ours[0].box, ref[0].box) > 0.85, (clip.name, ours[0].box, ref[0].box)
            side = max(ref[0].box.width, ref[0].box.height)
            assert np.abs(ours[0].landmarks - ref[0].landmarks).max() < 0.08 * side
            assert abs(ours[0].score - ref[0].score) < 0.02
            # Every face: cv2's INTER_AREA and torch's area resampling differ slightly at
            # non-integer ratios, so faces at the size limit (crowds in facenet-pytorch's
            # clip) can flip either way.
            assert abs(len(ours) - len(ref)) <= 1, clip.name
            found += len(ref)
            matched += sum(max(iou(a.box, b.box) for a in ours) > 0.75 for b in ref)
    assert frames == len(talking) * 3
    assert matched >= 0.9 * found, (matched, found)


def test_search_near_the_previous_face_finds_it(detectors, talking: list[Path]) -> None:
    detector = detectors["onnx"]
    for clip in talking:
        frame = frames_of(clip, 3)[1]
        whole = detector.detect(frame)[0]
        # The previous keyframe's box, a little off: the face moved between keyframes.
        shift = 0.15 * whole.box.width
        previous = replace(whole, box=Box(whole.box.x1 + shift, whole.box.y1 - shift,
                                          whole.box.x2 + shift, whole.box.y2 - shift))
        near = detector.detect_near(frame, previous)
        assert near is not None and iou(near.box, whole.box) > 0.8, clip.name
    blank = np.zeros((480, 640, 3), np.uint8)
    assert detector.detect_near(blank, whole) is None


@pytest.mark.parametrize("name", ["sadtalker__WDA_KatieHill_000.mp4", "lipnet__GRID_bbaf2n.mpg",
                                  "facenet-pytorch__video.mp4"])
def test_pyav_frames_match_opencv_frames(shared_data: Path, name: str) -> None:
    path = shared_data / "talking" / name
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS)
    duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / fps
    times, window = sample_times(duration, 16), dense_window(duration, 1.0)
    ref = list(iter_wanted_frames(cap, times, window, fps, 8.0))
    cap.release()
    ours = list(iter_wanted_frames_av(path, times, window, fps, 8.0))

    ref_dense = [f for f in ref if f.dense_index is not None]
    our_dense = [f for f in ours if f.dense_index is not None]
    assert [f.dense_index for f in our_dense] == [f.dense_index for f in ref_dense]
    for a, b in zip(our_dense, ref_dense, strict=True):
        assert a.timestamp_seconds == pytest.approx(b.timestamp_seconds, abs=1e-3)
        assert a.frame_number == b.frame_number
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() <= 2

    ref_samples = {f.sample_index: f for f in ref if f.sample_index is not None}
    our_samples = {f.sample_index: f for f in ours if f.sample_index is not None}
    assert sorted(our_samples) == sorted(ref_samples) == list(range(16))
    for i, f in our_samples.items():
        # the first decoded frame at or after the slot's time: the same or a few frames on
        late = f.timestamp_seconds - ref_samples[i].timestamp_seconds
        assert -1e-3 <= late <= 4.5 / fps, (i, late)
        assert f.rgb.shape == ref_samples[i].rgb.shape
