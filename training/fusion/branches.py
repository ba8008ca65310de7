"""Every shipped branch model scored by its own service class in process, so the 1.x fusion
rows (training.fusion.dataset) and the 1.x report are made of the numbers the mesh reports.

Each branch's preprocess, predict and postprocess are the service's (training.real.features
loads the class over the model repository, as the 2.x scorer does); this module only turns
the 1.x dataset's crops, PCM and mouth windows into the BranchInputs a branch would decode
from ingest's stream. A branch whose model is not in the repository, or that has no usable
input (NO_INPUT in the mesh), scores None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfmesh.errors import ModelIntegrityError
from dfmesh.preprocess.mouth import SAMPLE_RATE
from dfmesh.preprocess.stats import BRANCHES
from dfmesh.runtime.branch_inputs import BranchInputs, DenseInput, EmbeddingInput, FrameInput
from dfmesh.runtime.model_repo import ModelManifest, load_verified


@dataclass
class BranchScore:
    """One branch's statistics and probability for one clip."""

    features: dict[str, float]
    prob_fake: float
    embeddings: list[np.ndarray] | None = None
    source_sha256: str = ""
    """The artifact sha256 of the model that made `embeddings`."""


def frame_inputs(crops: Sequence[np.ndarray], is_face: Sequence[bool]) -> BranchInputs:
    """One sampled frame per crop: a face where `is_face`, else the crop stands for the full
    frame (the service then uses centre crops only when no frame has a face, as in the mesh)."""
    frames = [FrameInput(index=i, timestamp_seconds=float(i), faces=[crop] if face else [],
                         image=None if face else crop)
              for i, (crop, face) in enumerate(zip(crops, is_face, strict=True))]
    return BranchInputs(frames=frames)


def audio_inputs(pcm: np.ndarray) -> BranchInputs:
    return BranchInputs(has_audio=True, pcm=np.asarray(pcm, np.float32),
                        sample_rate=SAMPLE_RATE)


@dataclass
class ServedBranches:
    """The service classes of the branch models found in `models_dir` (checksum-verified,
    loaded and warmed up as each service does)."""

    models_dir: Path
    servers: dict[str, Any] = field(default_factory=dict)
    manifests: dict[str, ModelManifest] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from training.real.features import load_server

        for branch in BRANCHES:
            try:
                manifest = load_verified(self.models_dir, branch)
            except ModelIntegrityError:
                continue
            self.manifests[branch] = manifest
            self.servers[branch] = load_server(branch, self.models_dir, manifest.version)

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(b for b in BRANCHES if b in self.servers)

    def versions(self) -> dict[str, str]:
        return {b: f"{m.name}:{m.version}:{m.sha256[:12]}" for b, m in self.manifests.items()}

    def score(self, branch: str, inputs: BranchInputs) -> BranchScore | None:
        """The branch service's features and probability for `inputs`."""
        from training.real.features import served_features

        if branch not in self.servers:
            return None
        got = served_features(self.servers[branch], inputs)
        if got is None:
            return None
        return BranchScore(dict(got["features"]), float(got["prob_fake"]), got["embeddings"],
                           self.manifests[branch].sha256)

    def tiny_gate(self, inputs: BranchInputs) -> BranchScore | None:
        return self.score("tiny_gate", inputs)

    def visual(self, inputs: BranchInputs) -> BranchScore | None:
        return self.score("visual", inputs)

    def mri(self, inputs: BranchInputs) -> BranchScore | None:
        return self.score("mri", inputs)

    def temporal(self, visual: BranchScore | None) -> BranchScore | None:
        """temporal over visual's per-frame embeddings, tagged with the visual model's sha256
        (the service refuses another visual model's)."""
        if visual is None or not visual.embeddings:
            return None
        embeddings = [EmbeddingInput(i, float(i), np.asarray(v, np.float32), visual.source_sha256)
                      for i, v in enumerate(visual.embeddings)]
        return self.score("temporal", BranchInputs(embeddings=embeddings))

    def audio(self, pcm: np.ndarray) -> BranchScore | None:
        if pcm.size == 0:
            return None
        return self.score("audio", audio_inputs(pcm))

    def sync(self, mouths: np.ndarray, timestamps: np.ndarray, valid: np.ndarray,
             pcm: np.ndarray) -> BranchScore | None:
        if pcm.size == 0 or not np.asarray(valid).any():
            return None
        inputs = audio_inputs(pcm)
        inputs.dense = [DenseInput(i, float(t), bool(ok), m if ok else None)
                        for i, (m, t, ok) in enumerate(zip(mouths, timestamps, valid,
                                                           strict=True))]
        return self.score("sync", inputs)
