"""Report how much disk each service's installed dependencies take: the stand-in for image size.

For every extra a service image installs (see docker/Dockerfile), create a fresh venv under
/tmp, install the core dependencies plus that extra exactly as pinned in pyproject.toml, and
measure site-packages. Slow (it downloads and unpacks every wheel): run it by hand, not in CI,
and copy the table into docs/DEPLOY.md.

    .venv/bin/python scripts/dep_sizes.py                 # every extra
    .venv/bin/python scripts/dep_sizes.py branch fusion   # some
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dfmesh.branches import BRANCH_NAMES, BRANCHES

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = Path("/tmp/dfmesh-dep-sizes")

# extra -> the services whose image installs it
SERVICES_BY_EXTRA: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest",),
    "branch": BRANCH_NAMES,
    "branch-gpu": tuple(f"{b.name}-gpu" for b in BRANCHES if b.gpu),
    "fusion": ("fusion",),
    "gateway": ("gateway",),
}
# Installed after the extra with --no-deps, as scripts/setup.sh and the Dockerfile do.
NO_DEPS_EXTRAS: dict[str, tuple[str, ...]] = {"ingest": ("facenet-pytorch==2.6.0",)}


@dataclass(frozen=True)
class SizeReport:
    extra: str
    total_bytes: int
    largest: list[tuple[str, int]]


def pinned_requirements(extra: str, pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The core dependencies plus one extra's, exactly as pinned in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    if extra not in extras:
        raise SystemExit(f"unknown extra {extra!r}; pyproject has {sorted(extras)}")
    return [*project["dependencies"], *extras[extra]]


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under path (what `du -sb` reports)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def measure(extra: str, pip_args: list[str]) -> SizeReport:
    """Install one extra into a fresh venv and measure its site-packages."""
    venv = WORK_DIR / extra
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
           "--quiet", "--disable-pip-version-check", *pip_args]
    subprocess.run([*pip, *pinned_requirements(extra)], check=True)
    if extra in NO_DEPS_EXTRAS:
        subprocess.run([*pip, "--no-deps", *NO_DEPS_EXTRAS[extra]], check=True)
    sp = site_packages(venv)
    sizes = sorted(((d.name, tree_bytes(d)) for d in sp.iterdir() if d.is_dir()),
                   key=lambda item: item[1], reverse=True)
    return SizeReport(extra, tree_bytes(sp), [s for s in sizes if not s[0].endswith("-info")][:5])


def markdown_table(reports: list[SizeReport]) -> str:
    mib = 1024 * 1024
    lines = ["| extra | images | installed deps (MiB) | largest packages (MiB) |",
             "|---|---|---:|---|"]
    for r in reports:
        largest = ", ".join(f"{name} {size / mib:.0f}" for name, size in r.largest)
        services = ", ".join(SERVICES_BY_EXTRA.get(r.extra, ()))
        lines.append(f"| {r.extra} | {services} | {r.total_bytes / mib:.0f} | {largest} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", default=list(SERVICES_BY_EXTRA))
    parser.add_argument("--pip-arg", action="append", default=[],
                        help="extra argument for pip install (repeatable), e.g. an index URL")
    parser.add_argument("--keep", action="store_true", help="keep the venvs under /tmp")
    args = parser.parse_args(argv)
    os.environ.setdefault("PIP_NO_INPUT", "1")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    reports = []
    for extra in args.extras:
        print(f"measuring {extra} ...", file=sys.stderr, flush=True)
        reports.append(measure(extra, args.pip_arg))
        if not args.keep:
            shutil.rmtree(WORK_DIR / extra, ignore_errors=True)
    print(markdown_table(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
