"""A model repository for orchestrator tests: the shipped models when models/ holds a
complete release, otherwise, for every branch, a small real ONNX model whose output is a
known function of its input (tests.branch_support.build_model) and a real scikit-learn
fusion bundle with every head."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

from dfmesh.preprocess import mouth, waveform
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.model_repo import write_manifest
from services.fusion.heads import LR_BRANCHES, head_key
from tests.branch_support import SHIPPED_MODELS, build_model

EMBEDDING_SIZE = 3  # build_model's "embedding" output: per-channel mean of the crop

KNOWN_MODELS: dict[str, tuple[dict, dict, tuple[str, ...]]] = {
    "tiny_gate": ({"patches": ["N", 3, 32, 32]}, {"patches": "ReduceMean"}, ()),
    "visual": ({"image": ["N", 3, 224, 224]}, {"image": "ReduceMean"}, ("embedding",)),
    "audio": ({"waveform": ["W", waveform.WINDOW_SAMPLES]}, {"waveform": "ReduceMax"}, ()),
    "temporal": ({"embeddings": [1, "T", EMBEDDING_SIZE]}, {"embeddings": "ReduceMean"}, ()),
    "sync": ({"mouth": ["N", mouth.WINDOW_FRAMES, mouth.MOUTH_SIZE, mouth.MOUTH_SIZE],
              "audio": ["N", mouth.N_MELS, mouth.MEL_FRAMES]},
             {"mouth": "ReduceMax", "audio": "ReduceMean"}, ()),
    "mri": ({"image": ["N", 3, 256, 256]}, {"image": "ReduceMean"}, ("mri_map",)),
}


def shipped(name: str) -> bool:
    return any((SHIPPED_MODELS / name).glob("*/manifest.json"))


COUNT_SCALE = {"tiny_num_files": 16.0, "tiny_num_patches": 1024.0, "visual_num_faces": 16.0}


def _fit(cols: list[str], rng: np.random.Generator) -> LogisticRegression:
    """A real LR on synthetic clip features: probabilities higher for fakes, counts at the
    scale the branches report them and unrelated to the label."""
    y = rng.integers(0, 2, 300)
    x = rng.normal(0.35 + 0.3 * y[:, None], 0.2, size=(300, len(cols)))
    for i, col in enumerate(cols):
        if col in COUNT_SCALE:
            x[:, i] = COUNT_SCALE[col] * rng.uniform(0.5, 1.0, 300)
    return LogisticRegression(max_iter=1000).fit(x, y)


def build_fusion_bundle(version_dir: Path) -> dict:
    """A fusion bundle with the full 5-way head and every 2/3/4-way head, with a manifest."""
    rng = np.random.default_rng(3)
    heads = {}
    for k in (2, 3, 4):
        for subset in itertools.combinations(LR_BRANCHES, k):
            wanted = {c for b in subset for c in BRANCH_FEATURES[b]}
            cols = [c for c in FEATURE_COLS if c in wanted]
            heads[head_key(subset)] = {"model": _fit(cols, rng), "feature_cols": cols,
                                       "temperature": 1.3}
    bundle = {"model": _fit(list(FEATURE_COLS), rng), "feature_cols": list(FEATURE_COLS),
              "temperature": 1.5, "heads": heads, "threshold": 0.5,
              "adaptive": {"temperatures": {"visual": 1.2, "mri": 0.8}}}
    version_dir.mkdir(parents=True)
    joblib.dump(bundle, version_dir / "fusion.joblib")
    write_manifest(version_dir, name="fusion-test", branch="fusion", version=version_dir.name,
                   fmt="joblib", artifact="fusion.joblib", inputs=[], outputs=[],
                   preprocessing={"feature_cols": list(FEATURE_COLS)},
                   training_data="synthetic features (built by the test)", metrics={})
    return bundle


def build_test_repo(root: Path, prefer_shipped: bool = True) -> str:
    """Fill `root` with a model for every branch and fusion: the shipped repository when it
    is complete (every branch and the fusion bundle exported: a release whose parts were
    made to fit each other), else test-built models throughout. Returns "shipped" or
    "test-built" so a test can say what it ran on."""
    names = (*KNOWN_MODELS, "fusion")
    if prefer_shipped and all(shipped(n) for n in names):
        for name in names:
            shutil.copytree(SHIPPED_MODELS / name, root / name)
        return "shipped"
    for name, (inputs, ops, extra) in KNOWN_MODELS.items():
        build_model(root / name / "1.0.0", name, inputs, ops, extra_outputs=extra)
    build_fusion_bundle(root / "fusion" / "1.0.0")
    return "test-built"
