"""Rebuild a shipped model from its recipe: one command for any model in models/.

    python -m training reproduce BRANCH [VERSION] [--no-deps] [--run] [--device cpu|cuda]

Every shipped model's manifest names its recipe (`recipe`: a path under training/recipes/,
or the recipe itself with its `path`). A recipe records what the model is made of (data,
fakes, schedule, starting weights) and two things this command reads:

    steps   the commands that make the model from ../shared, in order; `{device}` marks
            where a trainer takes --device (the 2.x fine-tuning loops), so the same recipe
            runs on the CPU or on a lent GPU
    needs   {branch: version} of the other models whose outputs its steps read (temporal
            reads every branch's held-out scores; fusion reads temporal's)

The plan is the needed recipes' steps first (each recipe once, a command repeated by two
recipes run once), then the model's own. Without --run it is printed; with --run each
command runs from the repository root and the first failure stops the rest.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfmesh.errors import ModelIntegrityError
from dfmesh.runtime.model_repo import read_manifest, resolve_version_dir
from training.runtime import MODELS_DIR

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
REPO_ROOT = RECIPES_DIR.parents[1]
DEVICES = ("cpu", "cuda")


class RecipeError(ValueError):
    """A recipe that is missing, malformed or names another model than the one asked for."""


@dataclass(frozen=True)
class Recipe:
    """The parts of a recipe file that rebuild its model."""

    branch: str
    version: str
    steps: tuple[str, ...]
    needs: dict[str, str] = field(default_factory=dict)
    path: Path = RECIPES_DIR

    def commands(self, device: str = "cpu") -> list[str]:
        """The steps with `{device}` filled in."""
        if device not in DEVICES:
            raise RecipeError(f"device {device!r} is not one of {DEVICES}")
        return [step.replace("{device}", device) for step in self.steps]


def recipe_path(branch: str, version: str) -> Path:
    return RECIPES_DIR / f"{branch}-{version}.json"


def manifest_entry(branch: str, version: str) -> dict[str, str]:
    """What an exporter writes into the version's manifest: `recipe`, its recipe file
    relative to the repository, where there is one."""
    path = recipe_path(branch, version)
    return {"recipe": str(path.relative_to(REPO_ROOT))} if path.is_file() else {}


def parse_recipe(data: dict[str, Any], path: Path) -> Recipe:
    """A Recipe from a recipe file's JSON; RecipeError naming `path` when a part is missing."""
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps or not all(
            isinstance(s, str) and s.startswith("python -m ") for s in steps):
        raise RecipeError(f"{path}: `steps` must be a non-empty list of `python -m ...` commands")
    needs = data.get("needs", {})
    if not isinstance(needs, dict):
        raise RecipeError(f"{path}: `needs` must map branch to version")
    try:
        return Recipe(str(data["branch"]), str(data["version"]), tuple(steps),
                      {str(k): str(v) for k, v in needs.items()}, path)
    except KeyError as exc:
        raise RecipeError(f"{path}: lacks {exc.args[0]!r}") from exc


def load_recipe(branch: str, version: str) -> Recipe:
    """training/recipes/<branch>-<version>.json, checked to be that model's."""
    path = recipe_path(branch, version)
    if not path.is_file():
        raise RecipeError(f"no recipe for {branch} {version}: {path} does not exist")
    recipe = parse_recipe(json.loads(path.read_text()), path)
    if (recipe.branch, recipe.version) != (branch, version):
        raise RecipeError(f"{path} is the recipe of {recipe.branch} {recipe.version}, "
                          f"not {branch} {version}")
    return recipe


def shipped_recipe(branch: str, version: str = "latest", models_dir: Path = MODELS_DIR
                   ) -> Recipe:
    """The recipe a shipped model's manifest names (RecipeError when it names none)."""
    manifest = read_manifest(resolve_version_dir(models_dir, branch, version))
    named = manifest.extra.get("recipe")
    if isinstance(named, dict):
        named = named.get("path")
    if not isinstance(named, str):
        raise RecipeError(f"{manifest.directory}/manifest.json names no recipe")
    if Path(named).name != recipe_path(manifest.branch, manifest.version).name:
        raise RecipeError(f"{manifest.directory}/manifest.json names {named}, not the recipe "
                          f"of {manifest.branch} {manifest.version}")
    return load_recipe(manifest.branch, manifest.version)


def plan(recipe: Recipe, with_needs: bool = True) -> list[Recipe]:
    """`recipe` after the recipes it needs (depth first, each once)."""
    order: list[Recipe] = []
    visiting: set[tuple[str, str]] = set()

    def visit(r: Recipe) -> None:
        key = (r.branch, r.version)
        if any((o.branch, o.version) == key for o in order):
            return
        if key in visiting:
            raise RecipeError(f"recipes need each other in a cycle through {r.branch} {r.version}")
        visiting.add(key)
        if with_needs:
            for branch, version in sorted(r.needs.items()):
                visit(load_recipe(branch, version))
        order.append(r)

    visit(recipe)
    return order


def plan_commands(recipes: list[Recipe], device: str = "cpu") -> list[str]:
    """Every recipe's commands in order, a command that two recipes share only once."""
    out: list[str] = []
    for recipe in recipes:
        out += [c for c in recipe.commands(device) if c not in out]
    return out


def argv_of(command: str) -> list[str]:
    """A `python -m ...` command as the argv this interpreter runs."""
    words = shlex.split(command)
    return [sys.executable, *words[1:]]


def run_commands(commands: list[str], cwd: Path = REPO_ROOT) -> int:
    """Run each command in order; the first failing one's exit status (0 when all pass)."""
    for n, command in enumerate(commands, 1):
        print(f"[{n}/{len(commands)}] {command}", flush=True)
        status = subprocess.run(argv_of(command), cwd=cwd, check=False).returncode
        if status != 0:
            print(f"step {n} failed with status {status}; the later steps were not run",
                  file=sys.stderr)
            return status
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("branch")
    parser.add_argument("version", nargs="?", default="latest",
                        help="the shipped version (default: the one served)")
    parser.add_argument("--no-deps", action="store_true",
                        help="only the model's own steps, not those of the models it needs")
    parser.add_argument("--run", action="store_true", help="run the steps, not only print them")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where the fine-tuning steps train (the others use the CPU)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)


def run(args: argparse.Namespace) -> int:
    try:
        recipes = plan(shipped_recipe(args.branch, args.version, args.models_dir),
                       with_needs=not args.no_deps)
    except (RecipeError, ModelIntegrityError, OSError) as exc:
        raise SystemExit(str(exc)) from exc
    commands = plan_commands(recipes, args.device)
    if not args.run:
        for recipe in recipes:
            print(f"# {recipe.branch} {recipe.version}: {recipe.path.relative_to(REPO_ROOT)}")
        print("\n".join(commands))
        return 0
    return run_commands(commands)
