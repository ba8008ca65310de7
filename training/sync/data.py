"""Lip-sync pairs from dense talking-clip tracks, made with `dfmesh.preprocess.mouth.sync_inputs`.

Positives (label 1): the clip's own audio at the same instant. Negatives (label 0): the same
mouth windows against audio shifted by 0.3-1.0 s either way, or against another clip's audio
(swapped). Only clips whose track is speech with a real audio track are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfmesh.preprocess.mouth import SAMPLE_RATE, sync_inputs
from training.loaders.dense import DenseClip

MIN_SHIFT_SECONDS = 0.3
MAX_SHIFT_SECONDS = 1.0
EVAL_SHIFTS = (-0.8, -0.4, 0.4, 0.8)
"""The fixed audio shifts of the held-out pairs (seconds)."""


@dataclass
class SyncPairs:
    """Stacked pairs and where they came from."""

    mouth: np.ndarray   # float32 [N, T, H, W]
    audio: np.ndarray   # float32 [N, F, Ta]
    label: np.ndarray   # int64 [N], 1 = in sync
    kind: np.ndarray    # "aligned", "shifted", "swapped"
    clip: np.ndarray    # clip name per row


def usable(track: DenseClip) -> bool:
    """Speech clip with a non-silent audio track and faces in most frames."""
    c = track.clip
    return (c.speech and c.has_audio and not c.silent and track.pcm.size > SAMPLE_RATE
            and track.found.mean() > 0.5)


def windows(track: DenseClip, offset: float = 0.0, skip: int = 0,
            max_windows: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """sync_inputs over the track (optionally starting `skip` frames in, to move the grid)."""
    return sync_inputs(track.mouth[skip:], track.timestamps[skip:], track.pcm, SAMPLE_RATE,
                       valid=track.found[skip:], audio_offset_seconds=offset,
                       max_windows=max_windows)


def random_shift(rng: np.random.Generator) -> float:
    return float(rng.uniform(MIN_SHIFT_SECONDS, MAX_SHIFT_SECONDS) * rng.choice([-1.0, 1.0]))


def make_pairs(tracks: list[DenseClip], rng: np.random.Generator, per_clip: int = 40,
               fixed_shifts: tuple[float, ...] | None = None) -> SyncPairs:
    """Balanced aligned / misaligned pairs. Training draws random shifts and grid offsets;
    evaluation passes `fixed_shifts` (e.g. (-0.8, -0.4, 0.4, 0.8)) for a deterministic set."""
    parts: list[tuple[np.ndarray, np.ndarray, int, str, str]] = []
    aligned = {}
    for track in tracks:
        skip = 0 if fixed_shifts else int(rng.integers(0, 4))
        mouth, audio = windows(track, 0.0, skip, per_clip)
        if len(mouth) == 0:
            continue
        aligned[track.clip.name] = (mouth, audio)
        parts.append((mouth, audio, 1, "aligned", track.clip.name))
        shifts = fixed_shifts or (random_shift(rng), random_shift(rng))
        for shift in shifts:
            m, a = windows(track, shift, skip, max(1, per_clip // (len(shifts) + 1)))
            if len(m):
                parts.append((m, a, 0, "shifted", track.clip.name))
    names = list(aligned)
    for i, name in enumerate(names):
        if len(names) < 2:
            break
        other = names[(i + 1 + int(rng.integers(len(names) - 1))) % len(names)] \
            if not fixed_shifts else names[(i + 1) % len(names)]
        mouth, _ = aligned[name]
        _, audio = aligned[other]
        k = min(len(mouth), len(audio), max(1, per_clip // 3))
        parts.append((mouth[:k], audio[rng.permutation(len(audio))[:k]] if not fixed_shifts
                      else audio[:k], 0, "swapped", name))
    return SyncPairs(
        mouth=np.concatenate([p[0] for p in parts]).astype(np.float32),
        audio=np.concatenate([p[1] for p in parts]).astype(np.float32),
        label=np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in parts]),
        kind=np.concatenate([np.full(len(p[0]), p[3]) for p in parts]),
        clip=np.concatenate([np.full(len(p[0]), p[4]) for p in parts]))


def augment(mouth: np.ndarray, audio: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train-time only: mirror the mouth, scale its contrast, shift it by up to 2 px; add
    noise to the normalized log-mel."""
    mouth = mouth.copy()
    flip = rng.random(len(mouth)) < 0.5
    mouth[flip] = mouth[flip][..., ::-1]
    mouth *= rng.uniform(0.7, 1.4, (len(mouth), 1, 1, 1)).astype(np.float32)
    for i in range(len(mouth)):
        mouth[i] = np.roll(mouth[i], tuple(rng.integers(-2, 3, 2)), axis=(1, 2))
    audio = audio + rng.normal(0, 0.2, audio.shape).astype(np.float32)
    return np.ascontiguousarray(mouth), audio.astype(np.float32)
