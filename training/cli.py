"""The training command line: `python -m training <command>`.

    prepare                      detect and cache real faces, write identity splits
    train --branch B [options]   train branch B (module training.train_<B>), optionally
                                 --export it to models/<B>/<version>/
    branches                     list the branches that have a trainer
    evaluate                     write docs/EVALUATION.md (training.evaluation.report)

Each trainer module defines `add_arguments(parser)` and `run(args) -> metrics`; adding a
branch is adding `training/train_<branch>.py`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import training
from training.runtime import shared_data_dir


def available_branches() -> list[str]:
    return sorted(m.name.removeprefix("train_") for m in pkgutil.iter_modules(training.__path__)
                  if m.name.startswith("train_"))


def trainer_module(branch: str):
    if branch not in available_branches():
        raise SystemExit(f"no trainer for branch {branch!r}; have {available_branches()}")
    return importlib.import_module(f"training.train_{branch}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="detect and cache real faces, write identity splits")
    prep.add_argument("--data-dir", type=Path, default=None)
    prep.add_argument("--cache-dir", type=Path, default=None)
    prep.add_argument("--frames-per-clip", type=int, default=48)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--limit", type=int, default=None, help="only the first N files (smoke)")
    train = sub.add_parser("train", help="train one branch")
    train.add_argument("--branch", required=True)
    sub.add_parser("branches", help="list branches with a trainer")
    from training.evaluation import report

    report.add_arguments(sub.add_parser(
        "evaluate", help="write docs/EVALUATION.md from the fusion test split and dev/"))

    if argv[:1] == ["train"]:
        # the branch's own options are only known once the branch is
        known, _ = train.parse_known_args(argv[1:])
        module = trainer_module(known.branch)
        module.add_arguments(train)
    args = parser.parse_args(argv)
    if args.command == "branches":
        print("\n".join(available_branches()))
    elif args.command == "evaluate":
        report.run(args)
    elif args.command == "prepare":
        from training.data.faces import build_face_cache

        index = build_face_cache(args.data_dir or shared_data_dir(), args.cache_dir,
                                 frames_per_clip=args.frames_per_clip, seed=args.seed,
                                 limit=args.limit)
        print(f"face cache index: {index}")
    else:
        trainer_module(args.branch).run(args)
    return 0
