"""ONNX Runtime around a branch model: which execution providers, feeds cut into batches,
and the checks that the model and this code's preprocessing agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from dfmesh.errors import ModelIntegrityError
from dfmesh.runtime.model_repo import ModelManifest

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def choose_providers(preference: str, available: list[str]) -> list[str]:
    """CUDA first when asked for (or on auto, when present), CPU always as the fallback."""
    if preference == "cuda" and CUDA not in available:
        raise ModelIntegrityError(
            "DFMESH_EXECUTION_PROVIDER=cuda but ONNX Runtime offers only "
            f"{', '.join(available)}; install onnxruntime-gpu on a GPU node or use auto")
    if preference != "cpu" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def slice_batches(feeds: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    """Split every feed along axis 0 into slices of at most `size` rows."""
    n = len(next(iter(feeds.values())))
    return [{k: v[i:i + size] for k, v in feeds.items()} for i in range(0, max(n, 1), size)]


def check_preprocessing(manifest: ModelManifest, contract: dict[str, Any]) -> None:
    """Refuse a model trained on other preprocessing than this code makes."""
    differ = [f"{k}: model {manifest.preprocessing[k]!r}, code {v!r}"
              for k, v in contract.items()
              if k in manifest.preprocessing and manifest.preprocessing[k] != v]
    if differ:
        raise ModelIntegrityError(
            f"{manifest.name} {manifest.version} was trained on other preprocessing than this "
            f"service makes ({'; '.join(differ)}); re-export the model or deploy matching code")


def check_feeds(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> None:
    """Every fixed axis of the model's inputs matches the feeds (preprocessing and model
    agree); a mismatch is the deployment's fault, not the caller's."""
    for arg in session.get_inputs():
        got = feeds[arg.name].shape
        fixed = [(i, d) for i, d in enumerate(arg.shape) if isinstance(d, int)]
        if len(got) != len(arg.shape) or any(got[i] != d for i, d in fixed):
            raise ModelIntegrityError(
                f"model input {arg.name} is {arg.shape} but preprocessing made {list(got)}; "
                "the model and the preprocessing code are from different versions")


def warmup_shape(declared: list[Any], example: tuple[int | None, ...] = ()) -> list[int]:
    """A concrete shape for warm-up: the model's fixed sizes, the service's example size for
    each named (dynamic) axis, else 1."""
    example = example or (None,) * len(declared)
    return [d if isinstance(d, int) and d > 0 else (e or 1)
            for d, e in zip(declared, example, strict=True)]
