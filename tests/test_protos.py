"""The committed generated code matches protos/ (regenerate: python scripts/gen_protos.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "gen_protos.py"),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    fresh = {p.relative_to(tmp_path): p.read_bytes()
             for p in (tmp_path / "deepfake").rglob("*.py*")}
    committed = {p.relative_to(REPO_ROOT): p.read_bytes()
                 for p in (REPO_ROOT / "deepfake").rglob("*.py*")}
    assert sorted(fresh) == sorted(committed), \
        "generated file set differs: run scripts/gen_protos.py"
    stale = [str(name) for name, data in fresh.items() if committed[name] != data]
    assert not stale, f"stale generated code {stale}: run python scripts/gen_protos.py"
