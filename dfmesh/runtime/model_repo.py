"""The model repository: `models/<branch>/<version>/` holding one artifact and manifest.json.

manifest.json keys:
    name, branch, version        what this is ("visual-resnet18", "visual", "1.0.0")
    format                       "onnx" or "joblib"
    artifact                     file name of the artifact inside the version folder
    sha256                       hex digest of the artifact; checked before every load
    inputs, outputs              [{"name", "shape" (ints or axis names), "dtype"}]
    preprocessing                how inputs are made (sizes, normalization, features)
    training_data                what the model was trained on, in words and counts
    metrics                      held-out metrics with the split they were measured on
    created                      ISO-8601 UTC time of export

A service refuses an artifact whose checksum does not match (joblib is a pickle: never
load one unchecked). This module is torch-free; training writes manifests with it too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dfmesh.runtime.errors import ModelIntegrityError

MANIFEST = "manifest.json"
REQUIRED_KEYS = ("name", "branch", "version", "format", "artifact", "sha256", "inputs",
                 "outputs", "preprocessing", "training_data", "metrics", "created")


@dataclass(frozen=True)
class ModelManifest:
    """A parsed manifest.json, with the folder it came from."""

    directory: Path
    name: str
    branch: str
    version: str
    format: str
    artifact: str
    sha256: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    preprocessing: dict[str, Any]
    training_data: Any
    metrics: dict[str, Any]
    created: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def artifact_path(self) -> Path:
        return self.directory / self.artifact


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-_]", version))


def read_manifest(version_dir: Path) -> ModelManifest:
    """Parse `version_dir/manifest.json`; raises ModelIntegrityError when it is malformed."""
    path = version_dir / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelIntegrityError(f"no {MANIFEST} in {version_dir}") from exc
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"{path} is not valid JSON: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ModelIntegrityError(f"{path} lacks required keys: {', '.join(missing)}")
    known = {k: data[k] for k in REQUIRED_KEYS}
    extra = {k: v for k, v in data.items() if k not in REQUIRED_KEYS}
    return ModelManifest(directory=version_dir, extra=extra, **known)


def resolve_version_dir(repo_root: Path, branch: str, version: str = "latest") -> Path:
    """The folder of `branch` at `version`; "latest" picks the highest version number."""
    branch_dir = repo_root / branch
    if version != "latest":
        target = branch_dir / version
        if not (target / MANIFEST).is_file():
            raise ModelIntegrityError(f"model {branch} version {version} not found in {branch_dir}")
        return target
    candidates = [p for p in branch_dir.glob("*") if (p / MANIFEST).is_file()]
    if not candidates:
        raise ModelIntegrityError(
            f"no model versions for {branch!r} under {branch_dir}; "
            "train and export one (see docs/MODELS.md) or set DFMESH_MODEL_REPO")
    return max(candidates, key=lambda p: _version_key(p.name))


def load_verified(repo_root: Path, branch: str, version: str = "latest") -> ModelManifest:
    """Resolve, parse and checksum-verify a model; raises ModelIntegrityError on any mismatch."""
    manifest = read_manifest(resolve_version_dir(repo_root, branch, version))
    if not manifest.artifact_path.is_file():
        raise ModelIntegrityError(f"artifact {manifest.artifact_path} is missing")
    actual = sha256_file(manifest.artifact_path)
    if actual != manifest.sha256:
        raise ModelIntegrityError(
            f"checksum mismatch for {manifest.artifact_path}: manifest says {manifest.sha256}, "
            f"file is {actual}; refusing to load a modified artifact")
    return manifest


def write_manifest(version_dir: Path, *, name: str, branch: str, version: str, fmt: str,
                   artifact: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                   preprocessing: dict[str, Any], training_data: Any, metrics: dict[str, Any],
                   **extra: Any) -> Path:
    """Write manifest.json for an artifact already in `version_dir`, computing its sha256."""
    data = {
        "name": name, "branch": branch, "version": version, "format": fmt,
        "artifact": artifact, "sha256": sha256_file(version_dir / artifact),
        "inputs": inputs, "outputs": outputs, "preprocessing": preprocessing,
        "training_data": training_data, "metrics": metrics,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        **extra,
    }
    path = version_dir / MANIFEST
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
