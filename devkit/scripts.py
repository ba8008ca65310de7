"""The repository's scripts/ files as modules, for the tests that call their functions.

scripts/ is not a package: each file runs as `python scripts/NAME.py`, where Python puts
scripts/ first on the import path so that one script imports another by its bare name. Loaded here
by path and registered under that bare name, a script's own imports of its siblings resolve
the same way without anyone patching the import path.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from dfmesh.runtime.config import REPO_ROOT

SCRIPTS_DIR = REPO_ROOT / "scripts"
SIBLINGS: dict[str, tuple[str, ...]] = {"k8s_podman": ("k8s_manifests",)}
"""The scripts each script imports by bare name (loaded first)."""


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as the module `name` (once; later calls return the same module)."""
    if name in sys.modules:
        return sys.modules[name]
    for sibling in SIBLINGS.get(name, ()):
        load_script(sibling)
    path = SCRIPTS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
