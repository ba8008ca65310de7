"""Sequence manipulations for the temporal branch: flicker and identity jitter across frames.

Frame-wise face manipulation leaves traces across time that a single frame does not show:
the blend changes from frame to frame (flicker), the swapped identity or its alignment
wobbles (identity jitter), the manipulation strength drifts. A temporal manipulation is
`(faces, rng, donors) -> list of crops`, registered by name like the image ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from training.fakes.image import blend, face_swap, self_blended
from training.fakes.registry import DonorPool, Face

TemporalManipulation = Callable[[Sequence[Face], np.random.Generator, DonorPool], list[np.ndarray]]
TEMPORAL_MANIPULATIONS: dict[str, TemporalManipulation] = {}


def register_temporal(name: str) -> Callable[[TemporalManipulation], TemporalManipulation]:
    """Decorator adding a sequence manipulation to TEMPORAL_MANIPULATIONS under `name`."""

    def add(fn: TemporalManipulation) -> TemporalManipulation:
        if name in TEMPORAL_MANIPULATIONS:
            raise ValueError(f"temporal manipulation {name!r} is already registered")
        TEMPORAL_MANIPULATIONS[name] = fn
        return fn

    return add


@register_temporal("flicker")
def flicker(faces: Sequence[Face], rng: np.random.Generator, donors: DonorPool) -> list[np.ndarray]:
    """Independent self-blends per frame on a random subset of frames: the blend flickers."""
    share = rng.uniform(0.4, 1.0)
    return [self_blended(f, rng, donors).crop if rng.random() < share else f.crop for f in faces]


@register_temporal("identity_jitter")
def identity_jitter(faces: Sequence[Face], rng: np.random.Generator,
                    donors: DonorPool) -> list[np.ndarray]:
    """A swapped face whose donor frame, alignment and strength change from frame to frame."""
    return [face_swap(f, rng, donors).crop if rng.random() < 0.85 else f.crop for f in faces]


@register_temporal("stable_blend")
def stable_blend(faces: Sequence[Face], rng: np.random.Generator,
                 donors: DonorPool) -> list[np.ndarray]:
    """The same manipulation on every frame (one seed), with a blend ratio drifting over time."""
    seed = int(rng.integers(2**31))
    phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.5)
    out = []
    for t, face in enumerate(faces):
        manipulated = self_blended(face, np.random.default_rng(seed), donors).crop
        strength = 0.55 + 0.45 * np.sin(phase + speed * t)
        # the self-blend differs from the real frame only inside its own mask
        out.append(blend(manipulated, face.crop, np.full(face.crop.shape[:2], strength,
                                                         np.float32)))
    return out
