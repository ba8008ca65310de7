"""Model repositories for tests and benchmarks: the shipped release in models/ when it is
complete, otherwise, for every branch, a small real ONNX model whose logit is a known
function of its input (`build_model`) and a real scikit-learn fusion bundle with every head
(`build_fusion_bundle`). Verdicts from these models test the plumbing, not accuracy."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression

from dfmesh.branches import BRANCH_NAMES
from dfmesh.preprocess import mouth, waveform
from dfmesh.preprocess.stats import BRANCH_FEATURES, FEATURE_COLS
from dfmesh.runtime.config import REPO_ROOT
from dfmesh.runtime.model_repo import write_manifest
from services.fusion.heads import LR_BRANCHES, head_key

SHIPPED_MODELS = REPO_ROOT / "models"
OPSET = 17
EMBEDDING_SIZE = 3  # build_model's "embedding" output: per-channel mean of the crop


def _reduce(op: str, source: str, out: str, axes: list[int]) -> list[onnx.NodeProto]:
    """[N, ...] -> [N, 1]: `op` (ReduceMean / ReduceMax) over `axes`, flattened."""
    return [helper.make_node(op, [source], [out + "_r"], axes=axes, keepdims=1),
            helper.make_node("Flatten", [out + "_r"], [out], axis=1)]


def build_model(version_dir: Path, branch: str, inputs: dict[str, list[int | str]],
                reduce_ops: dict[str, str], extra_outputs: Sequence[str] = (),
                version: str = "1.0.0", preprocessing: dict | None = None,
                **manifest_extra: Any) -> Path:
    """An ONNX model whose logit is the sum over inputs of reduce_ops[name](input) over all
    non-batch axes, written with a real manifest. extra_outputs may name "embedding" (the
    per-channel spatial mean, [N, C]) and "mri_map" (sigmoid of the input)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    nodes, terms = [], []
    for name, shape in inputs.items():
        nodes += _reduce(reduce_ops[name], name, f"{name}_term", list(range(1, len(shape))))
        terms.append(f"{name}_term")
    if len(terms) == 1:
        nodes.append(helper.make_node("Identity", terms, ["logit"]))
    else:
        nodes.append(helper.make_node("Sum", terms, ["logit"]))
    first = next(iter(inputs))
    outputs = [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])]
    if "embedding" in extra_outputs:
        nodes += _reduce("ReduceMean", first, "embedding", [2, 3])
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]))
    if "mri_map" in extra_outputs:
        nodes.append(helper.make_node("Sigmoid", [first], ["mri_map"]))
        outputs.append(helper.make_tensor_value_info("mri_map", TensorProto.FLOAT,
                                                     inputs[first]))
    graph = helper.make_graph(
        nodes, f"{branch}_known_function",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, version_dir / "model.onnx")
    write_manifest(
        version_dir, name=f"{branch}-known-function", branch=branch, version=version,
        fmt="onnx", artifact="model.onnx",
        inputs=[{"name": n, "shape": s, "dtype": "float32"} for n, s in inputs.items()],
        outputs=[{"name": o.name, "shape": ["N"], "dtype": "float32"} for o in outputs],
        preprocessing=preprocessing or {"test": "logit = reduction of the input"},
        training_data="none: built by the test", metrics={}, **manifest_extra)
    return version_dir


KNOWN_MODELS: dict[str, tuple[dict, dict, tuple[str, ...]]] = {
    # branch: (its inputs and their shapes, the reduction per input, extra outputs)
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
    names = (*BRANCH_NAMES, "fusion")
    if prefer_shipped and all(shipped(n) for n in names):
        for name in names:
            shutil.copytree(SHIPPED_MODELS / name, root / name)
        return "shipped"
    unknown = [n for n in BRANCH_NAMES if n not in KNOWN_MODELS]
    if unknown:
        raise KeyError(f"no test-built model for {', '.join(unknown)}: add its inputs to "
                       "devkit.known_models.KNOWN_MODELS")
    for name, (inputs, ops, extra) in KNOWN_MODELS.items():
        build_model(root / name / "1.0.0", name, inputs, ops, extra_outputs=extra)
    build_fusion_bundle(root / "fusion" / "1.0.0")
    return "test-built"
