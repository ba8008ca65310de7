"""The code passes the repository's ruff configuration (pyproject [tool.ruff]) and mypy over
dfmesh, services and gateway (pyproject [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys

from tests.branch_support import REPO_ROOT


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                           str(REPO_ROOT)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
