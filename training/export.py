"""Export a trained torch module to ONNX in the model repository, with its manifest.

`export_branch` writes models/<branch>/<version>/model.onnx (opset 17, dynamic batch and any
other named dynamic axes), optionally stores large weights as float16 (computation stays
float32: each fp16 initializer feeds a Cast), checks the file against the torch module on
ONNX Runtime, and writes manifest.json through dfmesh.runtime.model_repo.write_manifest.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from dfmesh.runtime.model_repo import ModelManifest, sha256_file, write_manifest

OPSET = 17
TORCH_STATE = "torch_state.pt"
FP16_MIN_ELEMENTS = 1024
"""Initializers smaller than this stay float32 (biases, norms: no size to gain)."""


@dataclass
class TensorSpec:
    """A graph input or output: name, shape with axis names for dynamic axes, dtype."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"

    def as_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclass
class ExportSpec:
    """Everything a branch's export needs besides the module and example inputs."""

    name: str
    branch: str
    version: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: dict[str, Any]
    training_data: Any
    metrics: dict[str, Any]
    fp16_weights: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    keep_torch_state: dict[str, Any] | None = None
    """For small models only: save the state dict beside the artifact (torch_state.pt) with
    these constructor arguments, so tests can check torch-vs-ONNX parity of the shipped model."""
    onnx_metrics: Callable[[Path], dict[str, Any]] | None = None
    """Measures the exported file itself (e.g. test metrics through ONNX Runtime with the
    float16-stored weights); merged into the manifest's metrics under "onnx"."""


def weights_to_fp16(model: onnx.ModelProto,
                    min_elements: int = FP16_MIN_ELEMENTS) -> onnx.ModelProto:
    """Store large float32 initializers as float16, each cast back to float32 in the graph."""
    graph = model.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                       name=f"{init.name}__fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def export_onnx(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
                inputs: list[TensorSpec], outputs: list[TensorSpec],
                fp16_weights: bool = False) -> Path:
    """torch -> ONNX file at `path` (TorchScript exporter, opset 17), checked by onnx.checker."""
    module = module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {s.name: s.dynamic_axes() for s in inputs + outputs if s.dynamic_axes()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about LSTM batch sizes and such
        torch.onnx.export(module, example_inputs, str(path), dynamo=False,
                          input_names=[s.name for s in inputs],
                          output_names=[s.name for s in outputs],
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True)
    model = onnx.load(str(path))
    if fp16_weights:
        model = weights_to_fp16(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run an ONNX file on CPU with ONNX Runtime (one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def max_abs_difference(module: torch.nn.Module, path: Path,
                       example_inputs: tuple[torch.Tensor, ...],
                       input_names: list[str]) -> list[float]:
    """Largest |torch - onnx| per output on the example inputs."""
    module = module.eval()
    with torch.no_grad():
        expected = module(*example_inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = onnx_outputs(path, {n: t.numpy() for n, t in zip(input_names, example_inputs,
                                                              strict=True)})
    return [float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True)]


def export_branch(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                  spec: ExportSpec, models_dir: Path, artifact: str = "model.onnx") -> Path:
    """Export, verify against torch, write the manifest; returns the version folder."""
    version_dir = models_dir / spec.branch / spec.version
    path = export_onnx(module, example_inputs, version_dir / artifact, spec.inputs,
                       spec.outputs, fp16_weights=spec.fp16_weights)
    diffs = max_abs_difference(module, path, example_inputs, [s.name for s in spec.inputs])
    metrics = dict(spec.metrics)
    if spec.onnx_metrics is not None:
        metrics["onnx"] = spec.onnx_metrics(path)
    extra = dict(spec.extra)
    if spec.keep_torch_state is not None:
        state_path = version_dir / TORCH_STATE
        torch.save(module.state_dict(), state_path)
        extra["torch_state"] = {"file": TORCH_STATE, "sha256": sha256_file(state_path),
                                "constructor": spec.keep_torch_state}
    write_manifest(
        version_dir, name=spec.name, branch=spec.branch, version=spec.version, fmt="onnx",
        artifact=artifact, inputs=[s.as_manifest() for s in spec.inputs],
        outputs=[s.as_manifest() for s in spec.outputs], preprocessing=spec.preprocessing,
        training_data=spec.training_data, metrics=metrics,
        weights_dtype="float16 storage, float32 compute" if spec.fp16_weights else "float32",
        export_check={"opset": OPSET,
                      "max_abs_diff_vs_torch": dict(zip([s.name for s in spec.outputs], diffs,
                                                        strict=True))},
        **extra)
    return version_dir


def load_torch_state(manifest: ModelManifest) -> torch.nn.Module | None:
    """The torch module a manifest's `torch_state` describes (see ExportSpec.keep_torch_state),
    its file checked against the recorded sha256; None when the export kept no state."""
    state = manifest.extra.get("torch_state")
    if not state:
        return None
    path = manifest.directory / state["file"]
    if sha256_file(path) != state["sha256"]:
        raise ValueError(f"{path}: sha256 does not match the manifest's torch_state")
    module, _, name = state["constructor"]["class"].rpartition(".")
    model = getattr(importlib.import_module(module), name)(**state["constructor"]["kwargs"])
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()
