"""The layers stay apart: preprocessing (shared by training and serving) imports neither
grpc nor torch, bench and tests share code only through devkit and dfmesh, and nothing
patches sys.path (the editable install puts every package on it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from dfmesh.runtime.config import REPO_ROOT

SKIP_DIRS = {".venv", "node_modules", ".git", "build", "dist"}


def python_files(*roots: str) -> list[Path]:
    files = []
    for root in roots:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            if not SKIP_DIRS & set(path.relative_to(REPO_ROOT).parts):
                files.append(path)
    return files


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_preprocessing_imports_neither_grpc_nor_torch() -> None:
    modules = sorted(f"dfmesh.preprocess.{p.stem}" for p in python_files("dfmesh/preprocess")
                     if p.stem != "__init__")
    assert modules
    probe = ("import sys, importlib\n"
             f"for m in {modules!r}: importlib.import_module(m)\n"
             "print(' '.join(sorted({n.split('.')[0] for n in sys.modules} "
             "& {'grpc', 'torch', 'torchvision'})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO_ROOT, check=True)
    assert done.stdout.strip() == "", f"dfmesh.preprocess pulls in {done.stdout.strip()}"


def test_bench_does_not_import_tests() -> None:
    offenders = {str(p.relative_to(REPO_ROOT)): sorted(m for m in imported_modules(p)
                                                       if m == "tests" or m.startswith("tests."))
                 for p in python_files("bench")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_patches_sys_path() -> None:
    patched = [str(p.relative_to(REPO_ROOT)) for p in python_files(".")
               if p.resolve() != Path(__file__).resolve() and "sys.path" in p.read_text()]
    assert patched == []


def test_no_module_of_the_services_is_over_400_lines() -> None:
    long = {str(p.relative_to(REPO_ROOT)): n for p in python_files("dfmesh", "services", "gateway")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
