"""The registry of image manipulations that turn a real face crop into a pseudo-fake.

A manipulation is a function `(face, rng, donors) -> Manipulated` registered by name:

    @register_manipulation("my_warp")
    def my_warp(face: Face, rng: np.random.Generator, donors: DonorPool) -> Manipulated:
        ...

Users add their own by importing this module and registering; training picks
manipulations by name and weight from the command line (`--manipulations sbi=2,face_swap=1`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """A real 256x256 uint8 RGB face crop with its five landmarks in crop pixels."""

    crop: np.ndarray
    landmarks: np.ndarray
    group: str = ""


@dataclass(frozen=True)
class Manipulated:
    """A pseudo-fake and where it was changed (`mask` float32 [H, W] in [0, 1])."""

    crop: np.ndarray
    mask: np.ndarray
    name: str


class DonorPool:
    """Faces of other identities to swap in; `pick` never returns the target's own group."""

    def __init__(self, faces: Sequence[Face]) -> None:
        self.faces = list(faces)

    def pick(self, rng: np.random.Generator, exclude_group: str) -> Face | None:
        candidates = [i for i, f in enumerate(self.faces) if f.group != exclude_group]
        return self.faces[candidates[int(rng.integers(len(candidates)))]] if candidates else None


Manipulation = Callable[[Face, np.random.Generator, DonorPool], Manipulated]
MANIPULATIONS: dict[str, Manipulation] = {}


def register_manipulation(name: str) -> Callable[[Manipulation], Manipulation]:
    """Decorator adding a manipulation to MANIPULATIONS under `name`."""

    def add(fn: Manipulation) -> Manipulation:
        if name in MANIPULATIONS:
            raise ValueError(f"manipulation {name!r} is already registered")
        MANIPULATIONS[name] = fn
        return fn

    return add


def parse_weights(spec: str) -> dict[str, float]:
    """"sbi=2,face_swap=1" -> {"sbi": 2.0, "face_swap": 1.0}; names must be registered."""
    import training.fakes.image  # noqa: F401  (registers the built-in manipulations)

    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, weight = part.partition("=")
        if name not in MANIPULATIONS:
            raise ValueError(f"unknown manipulation {name!r}; registered: {sorted(MANIPULATIONS)}")
        weights[name] = float(weight) if weight else 1.0
    if not weights:
        raise ValueError("no manipulations given")
    return weights


def choose(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]
