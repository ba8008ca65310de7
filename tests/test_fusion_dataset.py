"""Segmenting clips for the fusion dataset: pure functions over a dense track's arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from training.fusion.dataset import (  # noqa: E402
    DENSE_SECONDS,
    NUM_FRAMES,
    SEGMENT_SECONDS,
    Segment,
    dense_window,
    sampled_indices,
    segments_of,
    shifted_pcm,
)
from training.fusion.fit import head_columns, subsets  # noqa: E402
from training.loaders.dense import DenseClip  # noqa: E402
from training.loaders.talking import TalkingClip  # noqa: E402

SR = 16_000


def track(seconds: float, fps: float = 25.0) -> DenseClip:
    n = int(seconds * fps)
    clip = TalkingClip("talking/x.mp4", "g", "test", True, False, True, fps)
    pcm = np.arange(int(seconds * SR), dtype=np.float32) / SR   # sample value = its time
    return DenseClip(clip, np.arange(n) / fps, np.ones(n, bool), np.zeros((n, 4), np.float32),
                     np.zeros((n, 5, 2), np.float32), np.zeros((n, 96, 96, 3), np.uint8),
                     pcm, fps)


def test_segments_are_non_overlapping_and_capped() -> None:
    assert [(s.start, s.end) for s in segments_of(track(2.0))] == [(0.0, 2.0)]
    long = segments_of(track(10.0))
    assert [(s.start, s.end) for s in long] == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]
    assert all(s.end - s.start == SEGMENT_SECONDS for s in long)


def test_sixteen_frames_inside_the_segment_and_the_dense_window_is_central() -> None:
    seg = Segment(track(10.0), 3.0, 6.0)
    idx = sampled_indices(seg)
    assert len(idx) == NUM_FRAMES and np.all(np.diff(idx) > 0)
    times = seg.track.timestamps[idx]
    assert times.min() >= 3.0 and times.max() < 6.0
    mouths, stamps, valid = dense_window(seg)
    assert len(mouths) == len(stamps) == len(valid) == int(DENSE_SECONDS * 25)
    # segment-relative, centred on the segment's middle (1.5 s)
    assert abs(stamps[0] - (1.5 - DENSE_SECONDS / 2)) <= 1 / 25


def test_shifted_audio_moves_by_at_least_0_4_s() -> None:
    seg = Segment(track(10.0), 3.0, 6.0)
    for seed in range(5):
        pcm = shifted_pcm(seg, np.random.default_rng(seed))
        assert pcm.size == 3 * SR
        assert 0.4 - 1e-3 <= abs(float(pcm[0]) - 3.0) <= 1.0 + 1e-3


def test_subset_heads_and_their_columns() -> None:
    assert len(subsets()) == 26
    assert head_columns(("sync", "audio")) == ["audio_prob_fake", "sync_prob"]
    assert len(head_columns(("tiny_gate", "visual", "audio", "temporal", "sync"))) == 12
