"""training.reproduce: every shipped model names a recipe whose steps today's trainers accept,
the plan puts what a model needs first, and --run runs real commands in order."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dfmesh.branches import BRANCH_NAMES
from dfmesh.runtime.model_repo import resolve_version_dir
from training import reproduce
from training.runtime import MODELS_DIR

SHIPPED = [b for b in (*BRANCH_NAMES, "fusion") if (MODELS_DIR / b).is_dir()]


class Parsed(Exception):
    """Raised in place of running a trainer once its parser has accepted the arguments."""


def accepted_by_its_parser(command: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the module a `python -m` command runs parses the command's arguments. The
    parser is the trainer's own; only what would follow parsing (hours of training) is
    cut off, by raising once parse_args has returned."""
    words = reproduce.argv_of(command)[1:]
    assert words[0] == "-m", command
    module = importlib.import_module("training.cli" if words[1] == "training" else words[1])
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    try:
        module.main(words[2:])
    except Parsed:
        return True
    except SystemExit:
        return False
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)
    return False


@pytest.mark.parametrize("branch", SHIPPED)
def test_every_shipped_model_names_its_own_recipe(branch: str) -> None:
    manifest = json.loads(
        (resolve_version_dir(MODELS_DIR, branch) / "manifest.json").read_text())
    recipe = reproduce.shipped_recipe(branch)
    assert (recipe.branch, recipe.version) == (branch, manifest["version"])
    assert recipe.path.is_file()


@pytest.mark.parametrize("device", reproduce.DEVICES)
def test_every_step_is_accepted_by_the_trainer_it_calls(device: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # every recipe in the repository, shipped or tried: each must still run
    recipes = [reproduce.load_recipe(*path.stem.rsplit("-", 1))
               for path in sorted(reproduce.RECIPES_DIR.glob("*.json"))]
    commands = {c for r in recipes
                for c in reproduce.plan_commands(reproduce.plan(r), device)}
    refused = [c for c in sorted(commands) if not accepted_by_its_parser(c, monkeypatch)]
    assert not refused, f"steps today's trainers refuse: {refused}"
    assert any("training.real.sync" in c for c in commands)


def test_a_refused_argument_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # the check above can fail: a flag the trainer lacks is refused
    assert not accepted_by_its_parser(
        "python -m training train --branch sync --device cuda", monkeypatch)
    assert not accepted_by_its_parser(
        "python -m training.real.temporal --visual 2.2.0", monkeypatch)


def test_the_release_plan_puts_what_each_model_needs_first() -> None:
    recipes = reproduce.plan(reproduce.shipped_recipe("fusion"))
    order = [r.branch for r in recipes]
    assert order[-1] == "fusion"
    assert set(order) == set(SHIPPED)
    assert order.index("visual") < order.index("temporal") < order.index("fusion")
    commands = reproduce.plan_commands(recipes)
    assert len(commands) == len(set(commands))
    assert commands.count("python -m training pack") == 1
    assert commands.index("python -m training pack") < commands.index(
        next(c for c in commands if c.startswith("python -m training.real.score")))


def write_recipe(directory: Path, branch: str, version: str, **fields: object) -> None:
    body = {"branch": branch, "version": version,
            "steps": ["python -m training branches"]} | fields
    (directory / f"{branch}-{version}.json").write_text(json.dumps(body))


def test_cycles_and_misnamed_recipes_are_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reproduce, "RECIPES_DIR", tmp_path)
    write_recipe(tmp_path, "a", "1.0.0", needs={"b": "1.0.0"})
    write_recipe(tmp_path, "b", "1.0.0", needs={"a": "1.0.0"})
    with pytest.raises(reproduce.RecipeError, match="cycle"):
        reproduce.plan(reproduce.load_recipe("a", "1.0.0"))
    write_recipe(tmp_path, "c", "1.0.0")
    (tmp_path / "c-1.0.0.json").rename(tmp_path / "c-3.0.0.json")
    with pytest.raises(reproduce.RecipeError, match="not c 3.0.0"):
        reproduce.load_recipe("c", "3.0.0")
    write_recipe(tmp_path, "d", "1.0.0", steps=["rm -rf /tmp/x"])
    with pytest.raises(reproduce.RecipeError, match="python -m"):
        reproduce.load_recipe("d", "1.0.0")
    with pytest.raises(reproduce.RecipeError, match="does not exist"):
        reproduce.load_recipe("e", "1.0.0")


def test_run_runs_the_steps_in_order_and_stops_at_the_first_failure(
        capfd: pytest.CaptureFixture[str]) -> None:
    status = reproduce.run_commands(["python -m training branches",
                                     "python -m training no-such-command",
                                     "python -m training evaluate --help"])
    out, err = capfd.readouterr()
    assert status == 2
    assert "[1/3]" in out and "[2/3]" in out and "[3/3]" not in out
    assert "visual" in out.splitlines()  # `branches` ran and listed the trainers
    assert "step 2 failed" in err


def test_the_command_line_prints_a_models_steps_and_refuses_an_unknown_version() -> None:
    run = [sys.executable, "-m", "training", "reproduce"]
    printed = subprocess.run([*run, "visual", "--no-deps", "--device", "cuda"],
                             capture_output=True, text=True, check=True).stdout
    assert "--device cuda" in printed
    assert printed.splitlines()[0].startswith("# visual ")
    missing = subprocess.run([*run, "sync", "9.9.9"], capture_output=True, text=True)
    assert missing.returncode != 0 and "9.9.9 not found" in missing.stderr


def test_exporters_name_the_recipe_only_where_there_is_one() -> None:
    version = reproduce.shipped_recipe("fusion").version
    assert reproduce.manifest_entry("fusion", version) == {
        "recipe": f"training/recipes/fusion-{version}.json"}
    assert reproduce.manifest_entry("fusion", "0.0.1") == {}
