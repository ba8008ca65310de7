"""Every shipped branch model run offline on ONNX Runtime, with the services' preprocessing and
statistics (dfmesh.preprocess.*), so fusion is fitted on the numbers the mesh produces.

Each scorer returns the branch's named statistics (dfmesh.preprocess.stats.BRANCH_FEATURES)
and its own prob_fake, computed as the branch service computes them:
    tiny_gate  patches of every crop -> per-patch sigmoid; prob_summary("tiny"), file and patch
               counts; prob_fake = tiny_prob_mean
    visual     visual_input -> sigmoid per crop; prob_summary("visual"), visual_num_faces;
               prob_fake = visual_prob_mean; per-frame embeddings for temporal
    temporal   temporal_input(embeddings) -> sigmoid; temporal_prob_fake
    mri        mri_input -> sigmoid per crop; prob_summary("mri"); prob_fake = mri_prob_mean
    audio      audio_input(pcm) -> mean window sigmoid = audio_prob_fake
    sync       sync_inputs(...) -> mean window sigmoid = sync_prob; prob_fake = 1 - sync_prob
A branch whose model is not in the repository, or that has no usable input, returns None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dfmesh.preprocess import audio as audio_pre
from dfmesh.preprocess import mouth as mouth_pre
from dfmesh.preprocess.patches import tiny_patches_batch
from dfmesh.preprocess.stats import BRANCHES, prob_summary
from dfmesh.preprocess.tensors import mri_input, temporal_input, visual_input
from dfmesh.runtime.errors import ModelIntegrityError
from dfmesh.runtime.model_repo import ModelManifest, load_verified


@dataclass
class BranchScore:
    """One branch's statistics and probability for one clip."""

    features: dict[str, float]
    prob_fake: float
    embeddings: np.ndarray | None = None


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class OnnxBranches:
    """ONNX sessions of the branch models found in `models_dir` (checksum-verified)."""

    models_dir: Path
    batch_size: int = 32
    sessions: dict[str, ort.InferenceSession] = field(default_factory=dict)
    manifests: dict[str, ModelManifest] = field(default_factory=dict)

    def __post_init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        for branch in BRANCHES:
            try:
                manifest = load_verified(self.models_dir, branch)
            except ModelIntegrityError:
                continue
            self.manifests[branch] = manifest
            self.sessions[branch] = ort.InferenceSession(
                str(manifest.artifact_path), options, providers=["CPUExecutionProvider"])

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(b for b in BRANCHES if b in self.sessions)

    def versions(self) -> dict[str, str]:
        return {b: f"{m.name}:{m.version}:{m.sha256[:12]}" for b, m in self.manifests.items()}

    def _run(self, branch: str, feeds: dict[str, np.ndarray], *outputs: str) -> list[np.ndarray]:
        """Named outputs over the feeds, in batches of batch_size rows."""
        session = self.sessions[branch]
        n = len(next(iter(feeds.values())))
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, self.batch_size):
            batch = {k: v[start:start + self.batch_size] for k, v in feeds.items()}
            parts.append(session.run(list(outputs), batch))
        return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]

    def tiny_gate(self, crops: list[np.ndarray]) -> BranchScore | None:
        if "tiny_gate" not in self.sessions or not crops:
            return None
        patches, per_crop = tiny_patches_batch(crops)
        probs = sigmoid(self._run("tiny_gate", {"patches": patches}, "logit")[0].reshape(-1))
        features = prob_summary("tiny", probs)
        features["tiny_num_files"] = float(len(per_crop))
        features["tiny_num_patches"] = float(probs.size)
        return BranchScore(features, features["tiny_prob_mean"])

    def visual(self, crops: list[np.ndarray], num_faces: int) -> BranchScore | None:
        if "visual" not in self.sessions or not crops:
            return None
        feeds = {"image": visual_input(crops)}
        logits, embeddings = self._run("visual", feeds, "logit", "embedding")
        features = prob_summary("visual", sigmoid(logits.reshape(-1)))
        features["visual_num_faces"] = float(num_faces)
        return BranchScore(features, features["visual_prob_mean"],
                           embeddings.reshape(len(crops), -1))

    def temporal(self, embeddings: np.ndarray | None) -> BranchScore | None:
        if "temporal" not in self.sessions or embeddings is None or len(embeddings) < 2:
            return None
        (logit,) = self._run("temporal", {"embeddings": temporal_input(embeddings)}, "logit")
        prob = float(sigmoid(logit.reshape(-1))[0])
        return BranchScore({"temporal_prob_fake": prob}, prob)

    def mri(self, crops: list[np.ndarray]) -> BranchScore | None:
        if "mri" not in self.sessions or not crops:
            return None
        probs = sigmoid(self._run("mri", {"image": mri_input(crops)}, "logit")[0].reshape(-1))
        features = prob_summary("mri", probs)
        return BranchScore(features, features["mri_prob_mean"])

    def audio(self, pcm: np.ndarray) -> BranchScore | None:
        if "audio" not in self.sessions or pcm.size == 0:
            return None
        (logits,) = self._run("audio", {"cqcc": audio_pre.audio_input(pcm)}, "logit")
        prob = float(sigmoid(logits.reshape(-1)).mean())
        return BranchScore({"audio_prob_fake": prob}, prob)

    def sync(self, mouths: np.ndarray, timestamps: np.ndarray, valid: np.ndarray,
             pcm: np.ndarray) -> BranchScore | None:
        if "sync" not in self.sessions or pcm.size == 0 or not valid.any():
            return None
        m, a = mouth_pre.sync_inputs(list(mouths), timestamps, pcm, mouth_pre.SAMPLE_RATE,
                                     valid=valid)
        if len(m) == 0:
            return None
        (logits,) = self._run("sync", {"mouth": m, "audio": a}, "logit")
        sync_prob = float(sigmoid(logits.reshape(-1)).mean())
        return BranchScore({"sync_prob": sync_prob}, 1.0 - sync_prob)
