"""Labelled samples made on the fly from cached real faces: real crops and pseudo-fakes.

Every sample is a pure function of (seed, epoch, index), so runs are reproducible and an
epoch can be resumed. Sources are drawn with weight sqrt(faces in the source): a clip's 48
frames of one person count for more than one photo, but do not swamp the photos.

With labelled sources (training.data.labelled: DFDC, FF++, real/fake folders), a
`labelled_fraction` of the samples are labelled crops instead, with their own label, flipped
and degraded like the rest. The class is drawn first (real or fake, even odds where the split
has both, since public sets are mostly fake), then a file by sqrt(crops), then a crop. A
labelled fake was changed somewhere nobody marked: its Sample says `mask_known=False`, and its
zero mask and target map are placeholders, not "nothing changed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.data.faces import FaceSource
from training.data.labelled import LabelledSource
from training.fakes.augment import degrade, flip_face, mri_target
from training.fakes.registry import MANIPULATIONS, DonorPool, Face, choose
from training.fakes.temporal import TEMPORAL_MANIPULATIONS


@dataclass(frozen=True)
class Sample:
    """One training image: uint8 crop, label (1 = fake), where it was changed, MRI target."""

    crop: np.ndarray
    label: int
    mask: np.ndarray          # float32 [H, W], zeros for real
    target_map: np.ndarray    # float32 [H, W], 1 - SSIM(fake, real source), zeros for real
    manipulation: str
    landmarks: np.ndarray     # float32 [5, 2], crop pixels (after any flip)
    mask_known: bool = True   # False: a labelled fake; mask and target_map are not its own
    source: str = ""          # the labelled file a labelled sample comes from


class PseudoFakeSampler:
    """Real faces of one split and the manipulations that turn them into fakes."""

    def __init__(self, sources: Sequence[FaceSource], weights: dict[str, float],
                 fake_fraction: float = 0.5, seed: int = 0, degrade_p: float = 0.6,
                 labelled: Sequence[LabelledSource] = (), labelled_fraction: float = 0.0) -> None:
        import training.fakes.image  # noqa: F401  (registers the built-in manipulations)

        if not 0.0 <= labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction {labelled_fraction} is not in [0, 1]")
        labelled = [s for s in labelled if len(s.crops)]
        if labelled_fraction > 0 and not labelled:
            raise ValueError("labelled_fraction > 0 but no labelled sources for this split")
        if not sources and labelled_fraction < 1.0:
            raise ValueError("no face sources for this split")
        self.sources = list(sources)
        self.weights = weights
        self.fake_fraction = fake_fraction
        self.seed = seed
        self.degrade_p = degrade_p
        self.labelled_fraction = labelled_fraction if labelled else 0.0
        self.labelled = {y: [s for s in labelled if s.label == y] for y in (0, 1)}
        self.labelled_p = {y: _sqrt_weights([len(s.crops) for s in group])
                           for y, group in self.labelled.items() if group}
        self.source_p = _sqrt_weights([len(s.crops) for s in self.sources])
        self.donors = DonorPool([self.face(s, i) for s in self.sources
                                 for i in range(0, len(s.crops), 4)]) if self.sources else None

    @staticmethod
    def face(source: FaceSource, i: int) -> Face:
        return Face(source.crops[i], source.landmarks[i], source.group)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def sample(self, epoch: int, index: int, label: int | None = None) -> Sample:
        """The sample at (epoch, index); `label` forces real (0) or fake (1)."""
        rng = self.rng(epoch, index)
        # no extra draw without labelled sources: pseudo-only runs keep their exact samples
        if self.labelled_fraction > 0 and rng.random() < self.labelled_fraction:
            return self.labelled_sample(rng, label)
        source = self.sources[int(rng.choice(len(self.sources), p=self.source_p))]
        face = self.face(source, int(rng.integers(len(source.crops))))
        if rng.random() < 0.5:
            crop, landmarks = flip_face(face.crop, face.landmarks)
            face = Face(crop, landmarks, face.group)
        is_fake = (rng.random() < self.fake_fraction) if label is None else bool(label)
        zeros = np.zeros(face.crop.shape[:2], np.float32)
        if not is_fake:
            return Sample(degrade(face.crop, rng, self.degrade_p), 0, zeros, zeros, "real",
                          face.landmarks)
        name = choose(self.weights, rng)
        fake = MANIPULATIONS[name](face, rng, self.donors)
        return Sample(degrade(fake.crop, rng, self.degrade_p), 1, fake.mask,
                      mri_target(fake.crop, face.crop), name, face.landmarks)

    def labelled_sample(self, rng: np.random.Generator, label: int | None = None) -> Sample:
        """A labelled crop of class `label` (drawn at even odds when None)."""
        classes = sorted(self.labelled_p)
        if label is None:
            label = classes[int(rng.integers(len(classes)))]
        if label not in self.labelled_p:
            raise ValueError(f"no labelled {'fake' if label else 'real'} files in this split")
        pool = self.labelled[label]
        source = pool[int(rng.choice(len(pool), p=self.labelled_p[label]))]
        i = int(rng.integers(len(source.crops)))
        crop, landmarks = source.crops[i], source.landmarks[i]
        if rng.random() < 0.5:
            crop, landmarks = flip_face(crop, landmarks)
        zeros = np.zeros(crop.shape[:2], np.float32)
        kind = source.method or ("fake" if label else "real")
        return Sample(degrade(crop, rng, self.degrade_p), int(label), zeros, zeros,
                      f"labelled:{kind}", landmarks, mask_known=not label, source=source.name)


def _sqrt_weights(counts: Sequence[int]) -> np.ndarray:
    weights = np.sqrt(np.asarray(counts, dtype=np.float64))
    return weights / weights.sum() if len(weights) else weights


@dataclass(frozen=True)
class SequenceSample:
    """T uint8 crops of one clip in frame order, label 1 if temporally manipulated."""

    crops: list[np.ndarray]
    label: int
    manipulation: str
    source: str


def sequence_frames(source: FaceSource, length: int, rng: np.random.Generator) -> list[int]:
    """`length` random frames of a clip in frame order (ingest spreads its frames over the
    whole clip; random spacing keeps the model from relying on one stride)."""
    order = np.argsort(source.frame_index, kind="stable")
    picks = np.sort(rng.choice(len(order), size=min(length, len(order)), replace=False))
    return order[picks].tolist()


def make_sequence(sources: Sequence[FaceSource], weights: dict[str, float], seed: int,
                  index: int, length: int, donors: DonorPool, fake: bool) -> SequenceSample:
    """A real or temporally manipulated sequence; deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    usable = [s for s in sources if len(s.crops) >= 4]
    source = usable[int(rng.integers(len(usable)))]
    frames = sequence_frames(source, length, rng)
    faces = [Face(source.crops[i], source.landmarks[i], source.group) for i in frames]
    if not fake:
        crops, name = [f.crop for f in faces], "real"
    else:
        name = choose(weights, rng)
        crops = TEMPORAL_MANIPULATIONS[name](faces, rng, donors)
    quality_seed = int(rng.integers(2**31))
    # one degradation for the whole clip, as a video codec would apply
    crops = [degrade(c, np.random.default_rng(quality_seed), 0.6) for c in crops]
    return SequenceSample(crops, int(fake), name, source.name)
