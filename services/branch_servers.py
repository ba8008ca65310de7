"""Each registry branch's server class and settings class, found by convention: the
`ModelServer` subclass in `services/<name>/service.py` whose `branch` is the name, and the
settings class its `settings` attribute is annotated with. Used by bench and by training's
in-process feature path, so neither lists the branches."""

from __future__ import annotations

import importlib
import inspect
from typing import get_type_hints

from dfmesh.branches import BRANCH_NAMES
from dfmesh.runtime.model_server import ModelServer, ModelServerSettings


def branch_server(name: str) -> tuple[type[ModelServer], type[ModelServerSettings]]:
    """(server class, settings class) of branch `name`."""
    module = importlib.import_module(f"services.{name}.service")
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, ModelServer) and cls is not ModelServer and cls.branch == name:
            settings = get_type_hints(cls).get("settings", ModelServerSettings)
            return cls, settings
    raise LookupError(f"services/{name}/service.py defines no ModelServer with branch {name!r}")


def branch_servers() -> dict[str, tuple[type[ModelServer], type[ModelServerSettings]]]:
    """Every registry branch's classes, in registry order."""
    return {name: branch_server(name) for name in BRANCH_NAMES}
