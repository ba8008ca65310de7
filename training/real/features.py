"""Branch features of packed files, computed by the services' own code in process.

A branch model under training is exported to a private model repository and loaded by its
service class (services.<branch>.service), whose preprocess, predict and postprocess make
the features: exactly what the mesh would report for the same ingest output, without a
server. Fusion is fitted on these numbers, so it never sees features the services do not
produce.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmesh.preprocess.tensors import FULL_SIZE
from dfmesh.runtime.branch_inputs import BranchInputs, DenseInput, FrameInput
from training.export import ExportSpec, TensorSpec, export_branch
from training.real.pack import load_entry


def branch_inputs(entry: dict[str, np.ndarray], sample_rate: int = 16000) -> BranchInputs:
    """What ingest's stream for this file decodes to on a branch (faces per frame, largest
    first; the PCM)."""
    by_frame: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    stamps = entry.get("frame_ts", np.zeros(len(entry["frame"]), np.float32))
    when: dict[int, float] = {}
    for crop, frame, rank, ts in zip(entry["crops"], entry["frame"], entry["rank"], stamps,
                                     strict=True):
        by_frame[int(frame)].append((int(rank), crop))
        when[int(frame)] = float(ts)
    frames = [FrameInput(index=f, timestamp_seconds=when[f],
                         faces=[c for _, c in sorted(by_frame[f], key=lambda t: t[0])])
              for f in sorted(by_frame)]
    dense = [DenseInput(i, float(ts), bool(found), mouth if found else None)
             for i, (ts, found, mouth) in enumerate(zip(
                 entry.get("dense_ts", ()), entry.get("dense_found", ()),
                 entry.get("mouth", ()), strict=True))]
    pcm = entry["pcm"] if entry["pcm"].size else None
    return BranchInputs(has_audio=pcm is not None, frames=frames, dense=dense, pcm=pcm,
                        sample_rate=sample_rate if pcm is not None else 0)


def served_features(server: Any, inputs: BranchInputs) -> dict[str, Any] | None:
    """preprocess -> predict -> postprocess of a loaded ModelServer; None when the branch
    has no usable input (NO_INPUT in the mesh)."""
    from dfmesh.runtime.model_server import NoUsableInput

    try:
        prepared = server.preprocess(inputs)
    except NoUsableInput:
        return None
    out = server.postprocess(prepared, server.predict(prepared.feeds))
    return {"status": out.status, "features": out.features, "prob_fake": out.prob_fake,
            "embeddings": [v for _, v in out.embeddings]}


def load_server(branch: str, repo: Path, version: str) -> Any:
    """The branch's service class over `repo`, loaded and warmed up (one ORT thread)."""
    import importlib

    module = importlib.import_module(f"services.{branch}.service")
    server_cls = next(v for k, v in vars(module).items()
                      if k.endswith("Server") and getattr(v, "branch", "") == branch)
    settings_cls = next(v for k, v in vars(module).items()
                        if k.endswith("Settings")
                        and getattr(v, "__module__", "") == module.__name__)
    server = server_cls(settings_cls(model_repo=repo, model_version=version, intra_op_threads=2))
    server.load_model()
    return server


def export_visual(model: torch.nn.Module, recipe: dict[str, Any], models_dir: Path,
                  info: dict[str, Any]) -> Path:
    """Export a visual model (logit + embedding) into `models_dir`; returns the repo root. A
    stacked model (training.models.visual.StackedVisual) also takes `image_full`."""
    from training.models.visual import StackedVisual

    size = int(recipe["input_size"])
    stacked = isinstance(model, StackedVisual)
    inputs = [TensorSpec("image", ["batch", 3, size, size])]
    preprocessing = {
        "function": "dfmesh.preprocess.tensors.visual_input",
        "input": "uint8 RGB face crops from dfmesh.preprocess.geometry.face_crop "
                 "(256x256), resized with area interpolation",
        "size": size, "normalization": "ImageNet mean/std",
        "layout": "NCHW float32", "output": "sigmoid(logit) = P(fake)"}
    rng = np.random.default_rng(0)
    example = [torch.from_numpy(rng.normal(size=(2, 3, size, size)).astype(np.float32))]
    if stacked:
        inputs.append(TensorSpec("image_full", ["batch", 3, FULL_SIZE, FULL_SIZE]))
        preprocessing["image_full"] = {"function": "dfmesh.preprocess.tensors.visual_full_input",
                                       "size": FULL_SIZE, "normalization": "ImageNet mean/std"}
        example.append(torch.from_numpy(
            rng.normal(size=(2, 3, FULL_SIZE, FULL_SIZE)).astype(np.float32)))
    name = f"visual-{recipe['arch'].replace('_', '-')}" + ("-meso-stack" if stacked else "")
    spec = ExportSpec(
        name=name, branch="visual", version=recipe["version"], inputs=inputs,
        outputs=[TensorSpec("logit", ["batch", 1]),
                 TensorSpec("embedding", ["batch", model.embedding_dim])],
        preprocessing=preprocessing,
        training_data=info.get("training_data", recipe.get("data", "")),
        metrics=info.get("metrics", {}), fp16_weights=True,
        extra={k: v for k, v in info.items() if k not in ("training_data", "metrics")})
    export_branch(model, tuple(example), spec, models_dir)
    return models_dir


def write_oof(branch: str, repo: Path, records: list[dict[str, Any]], fold: int,
              out: Path) -> None:
    """Score every packed face file of a held-out fold with the fold's `branch` model through
    that service's code; one JSON line per file (the branch's features under its name, or
    null)."""
    server = load_server(branch, repo, "latest")
    lines = []
    for r in records:
        got = None
        if r.get("faces", 0) > 0:
            got = served_features(server, branch_inputs(load_entry(r)))
        lines.append(json.dumps({"path": r["path"], "fold": fold, "label": r["label"],
                                 "kind": r["kind"], "source": r["source"],
                                 "generator": r["generator"], "collection": r["collection"],
                                 branch: None if got is None else
                                 {"features": got["features"], "prob_fake": got["prob_fake"]}}))
    out.write_text("\n".join(lines) + "\n")


def release_info(recipe: dict[str, Any], base: Path, recipe_path: Path) -> dict[str, Any]:
    """Manifest fields of a model released by a face-crop trainer (visual, tiny_gate, sync):
    recipe, data, licences, OOF metrics."""
    metrics_path = base / "metrics.json"
    return {
        "recipe": str(recipe_path), "recipe_contents": recipe,
        "starting_weights": recipe["starting_weights"],
        "training_data": {
            "what": recipe["data"],
            "licence": "../shared/train is research / non-commercial material (FaceForensics++ "
                       "terms, CC-BY-NC, NVIDIA NC); this model is for research use only",
            **{k: recipe[k] for k in ("pseudo_fakes", "conditions", "pairs") if k in recipe}},
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
    }


def clip_features(path: Path, repo: Path, versions: dict[str, str] | None = None
                  ) -> dict[str, float]:
    """The 12 fusion features of one file, made the training way: ingest's pipeline in
    process (training.real.pack), then each branch service's own code over `repo` (temporal
    on visual's embeddings). The mesh reports the same numbers for the same file."""
    import asyncio

    from dfmesh.runtime.branch_inputs import EmbeddingInput
    from services.ingest.faces import FaceDetector
    from services.ingest.settings import IngestSettings
    from training.real.pack import ingest_file

    versions = versions or {}
    entry = asyncio.run(ingest_file(path, FaceDetector(), IngestSettings()))
    inputs = branch_inputs(entry)
    features: dict[str, float] = {}
    visual_out, visual_sha = None, ""
    for branch in ("tiny_gate", "visual", "audio", "sync", "temporal"):
        server = load_server(branch, repo, versions.get(branch, "latest"))
        if branch == "temporal":  # on the embeddings visual made just above
            if visual_out is None:
                continue
            inputs = BranchInputs(embeddings=[EmbeddingInput(i, 0.0, v, visual_sha)
                                              for i, v in enumerate(visual_out["embeddings"])])
        got = served_features(server, inputs)
        if branch == "visual":
            visual_out, visual_sha = got, server.manifest.sha256
        if got is not None:
            features.update(got["features"])
    return features
