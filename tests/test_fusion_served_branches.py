"""The 1.x fusion rows and report score every shipped model through its own service class
(training.fusion.branches.ServedBranches), on real crops, speech and mouth windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from dfmesh.preprocess.geometry import FACE_CROP_SIZE, centre_crop_box, crop_square  # noqa: E402
from dfmesh.preprocess.stats import BRANCHES  # noqa: E402
from tests.branch_support import (  # noqa: E402
    decode_pcm,
    dense_mouths,
    face_crops,
    full_frames,
    speech_file,
    talking_clip,
)
from training.fusion.branches import ServedBranches, frame_inputs  # noqa: E402
from training.runtime import MODELS_DIR  # noqa: E402


@pytest.fixture(scope="module")
def served() -> ServedBranches:
    return ServedBranches(MODELS_DIR)


def centre_crops(shared_data: Path, count: int) -> list[np.ndarray]:
    return [crop_square(f, centre_crop_box(f.shape[1], f.shape[0]), FACE_CROP_SIZE)
            for f in full_frames(shared_data, count)]


def test_every_shipped_model_is_served(served: ServedBranches) -> None:
    assert served.available == BRANCHES
    assert set(served.versions()) == set(BRANCHES)


def test_frames_without_a_face_are_left_out_as_in_the_mesh(served: ServedBranches,
                                                          shared_data: Path) -> None:
    faces, centres = face_crops(shared_data, 3), centre_crops(shared_data, 2)
    mixed = served.visual(frame_inputs([*faces, *centres], [True] * 3 + [False] * 2))
    only_faces = served.visual(frame_inputs(faces, [True] * 3))
    assert mixed is not None and only_faces is not None
    assert mixed.features == only_faces.features
    assert mixed.features["visual_num_faces"] == 3.0
    fallback = served.visual(frame_inputs(centres, [False, False]))
    assert fallback is not None and fallback.features["visual_num_faces"] == 0.0
    for branch in ("tiny_gate", "mri"):
        score = served.score(branch, frame_inputs(faces, [True] * 3))
        assert score is not None and 0.0 <= score.prob_fake <= 1.0


def test_temporal_reads_the_served_visual_models_embeddings(served: ServedBranches,
                                                            shared_data: Path) -> None:
    visual = served.visual(frame_inputs(face_crops(shared_data, 4), [True] * 4))
    assert visual is not None and len(visual.embeddings or []) == 4
    temporal = served.temporal(visual)
    assert temporal is not None and 0.0 <= temporal.features["temporal_prob_fake"] <= 1.0
    assert served.temporal(None) is None


def test_audio_and_sync_score_real_speech(served: ServedBranches, shared_data: Path) -> None:
    audio = served.audio(decode_pcm(speech_file(shared_data), 4.0))
    assert audio is not None and 0.0 <= audio.features["audio_prob_fake"] <= 1.0
    clip = talking_clip(shared_data)
    mouths, stamps = dense_mouths(clip, 2.5)
    sync = served.sync(np.stack(mouths), np.array(stamps), np.ones(len(mouths), bool),
                       decode_pcm(clip, 2.5))
    assert sync is not None and 0.0 <= sync.features["sync_prob"] <= 1.0
    assert sync.prob_fake == pytest.approx(1.0 - sync.features["sync_prob"])
    assert served.sync(np.stack(mouths), np.array(stamps), np.zeros(len(mouths), bool),
                       decode_pcm(clip, 2.5)) is None


def test_a_segments_visual_side_counts_only_the_frames_with_a_face(served: ServedBranches,
                                                                   shared_data: Path) -> None:
    from training.fakes.registry import DonorPool, Face
    from training.fusion.dataset import Segment, sampled_indices, score_visual_side
    from training.loaders.dense import DenseClip
    from training.loaders.talking import TalkingClip

    photos = full_frames(shared_data, 3)
    frames = [photos[i % 2] for i in range(20)]
    h, w = frames[0].shape[:2]
    box = centre_crop_box(w, h, 0.45)
    side = box.x2 - box.x1
    marks = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]],
                     np.float32) * side + [box.x1, box.y1]
    found = np.array([i % 4 != 0 for i in range(20)])
    clip = TalkingClip("talking/x.mp4", "g", "test", True, False, True, 25.0)
    track = DenseClip(clip, np.arange(20) / 25.0, found,
                      np.tile([box.x1, box.y1, box.x2, box.y2], (20, 1)).astype(np.float32),
                      np.tile(marks, (20, 1, 1)), np.zeros((20, 96, 96, 3), np.uint8),
                      np.zeros(16_000, np.float32), 25.0)
    seg = Segment(track, 0.0, 0.8)
    donor = face_crops(shared_data, 3)[2]
    donors = DonorPool([Face(donor, (marks - [box.x1, box.y1]) / side * 256, "other")])
    scored = score_visual_side(seg, frames, served, donors, np.random.default_rng(0))
    assert set(scored) == {"real", "real_b", "visual", "temporal"}
    with_face = int(found[sampled_indices(seg)].sum())
    assert 0 < with_face < len(sampled_indices(seg))
    real = scored["real"]
    assert real["visual"] is not None
    assert real["visual"].features["visual_num_faces"] == with_face
    assert real["tiny_gate"].features["tiny_num_files"] == with_face
    assert real["temporal"] is not None and real["mri"] is not None
