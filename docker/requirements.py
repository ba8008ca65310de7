"""Print the pinned requirements of the core plus the given extras, one per line, read from
pyproject.toml: the Dockerfile installs a service's dependencies from this before copying
any code, so the dependency layer is rebuilt only when pyproject.toml changes.

    python docker/requirements.py branch > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

DEFAULT_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned_requirements(extras: list[str], pyproject: Path = DEFAULT_PYPROJECT) -> list[str]:
    """The core dependencies followed by each extra's, exactly as pyproject.toml pins them."""
    project = tomllib.loads(pyproject.read_text())["project"]
    known = project["optional-dependencies"]
    unknown = [e for e in extras if e not in known]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(known)}")
    return [*project["dependencies"], *(req for e in extras for req in known[e])]


if __name__ == "__main__":
    print("\n".join(pinned_requirements(sys.argv[1:])))
