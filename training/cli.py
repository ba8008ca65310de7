"""The training command line: `python -m training <command>`.

    prepare                      detect and cache real faces, write identity splits
    prepare --labelled SPEC      also cache the face crops of a labelled dataset
                                 (runs/cache/labelled/<sha of SPEC>/, group-disjoint splits)
    train --branch B [options]   train branch B (module training.train_<B>), optionally
                                 --export it to models/<B>/<version>/
    branches                     list the branches that have a trainer
    pack                         every labelled file of ../shared/train and ../shared/data
                                 through ingest's pipeline: crops, landmarks, 16 kHz audio
                                 (training.real.pack; runs/cache/real/)
    evaluate                     write docs/EVALUATION.md (training.evaluation.report)
    reproduce BRANCH [VERSION]   the steps that rebuild a shipped model from the recipe its
                                 manifest names, the models it needs first; --run runs
                                 them, --device cuda trains on a GPU (training.reproduce)
    benchmark --labelled SPEC    score labelled media through the running mesh (`dfmesh up`)
                                 and report AUC, accuracy, F1, log-loss, ECE per file set
                                 (training.benchmark; runs/benchmark/BENCHMARK.md)

Training on your own labelled data (docs/models/README.md, "Training on your own data"):
`--labelled SPEC`, repeatable, on prepare and on the visual, tiny_gate and audio trainers:

    dfdc:PATH                    a DFDC part folder (metadata.json beside the videos)
    ff++:PATH[@c40]              a FaceForensics++ root (compression c23 unless given)
    folders:PATH                 PATH/real/** and PATH/fake/** (images, videos or audio)
    asvspoof:PROTOCOL@AUDIO_DIR  an ASVspoof protocol and its audio (audio only)

    python -m training prepare --labelled dfdc:/data/dfdc_train_part_0
    python -m training train --branch visual --labelled dfdc:/data/dfdc_train_part_0 \
        --labelled-fraction 0.5
    python -m training train --branch audio --labelled asvspoof:PROTOCOL@FLAC_DIR

The image trainers mix `--labelled-fraction` labelled crops into their pseudo-fake samples
and report `test_labelled` next to `test_pseudo_fakes`; mri and temporal refuse --labelled.

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


def prepare(args: argparse.Namespace) -> None:
    """The real-face cache (unless --no-faces) and one cache per --labelled spec."""
    from training.data.faces import build_face_cache
    from training.data.labelled import build_labelled_cache
    from training.loaders.public import LabelledSpecError

    if not args.no_faces:
        index = build_face_cache(args.data_dir or shared_data_dir(), args.cache_dir,
                                 frames_per_clip=args.frames_per_clip, seed=args.seed,
                                 limit=args.limit)
        print(f"face cache index: {index}")
    for spec in args.labelled:
        try:
            index = build_labelled_cache(spec, args.labelled_cache_dir,
                                         frames_per_video=args.frames_per_video,
                                         seed=args.seed, limit=args.limit)
        except LabelledSpecError as exc:
            raise SystemExit(str(exc)) from exc
        print(f"labelled face cache index ({spec}): {index}")


def evaluate_command(args: argparse.Namespace) -> None:
    """The 2.x report from the served fusion bundle's held-out rows (or the 1.x one)."""
    from dfmesh.runtime.model_repo import load_verified
    from training.evaluation import report
    from training.real import report as real_report

    if args.pseudo:
        report.run(args)
        return
    manifest = load_verified(args.models_dir, "fusion", "latest")
    rows = manifest.directory / str(manifest.extra.get("heldout_rows", "heldout_rows.jsonl"))
    if not rows.is_file():
        raise SystemExit(f"{rows} not found: fusion {manifest.version} has no held-out rows; "
                         "use --pseudo for the 1.x report")
    print(f"wrote {real_report.run(rows, args.out)}")


def main(argv: list[str] | None = None) -> int:
    from training.data.labelled import DEFAULT_FRAMES_PER_VIDEO

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
    prep.add_argument("--labelled", action="append", default=[], metavar="SPEC",
                      help="also cache face crops of labelled data (repeatable): dfdc:PATH, "
                           "ff++:PATH[@c40], folders:PATH")
    prep.add_argument("--labelled-cache-dir", type=Path, default=None,
                      help="labelled face caches (default runs/cache/labelled)")
    prep.add_argument("--frames-per-video", type=int, default=DEFAULT_FRAMES_PER_VIDEO,
                      help="evenly spaced frames per labelled video")
    prep.add_argument("--no-faces", action="store_true",
                      help="only the --labelled caches, not the real-face cache")
    train = sub.add_parser("train", help="train one branch")
    train.add_argument("--branch", required=True)
    sub.add_parser("branches", help="list branches with a trainer")
    from training.evaluation import report

    evaluate = sub.add_parser(
        "evaluate", help="write docs/EVALUATION.md from the shipped fusion bundle's held-out "
                         "rows (leave-one-source-out on real labelled media)")
    report.add_arguments(evaluate)
    evaluate.add_argument("--pseudo", action="store_true",
                          help="the 1.x report instead: the pseudo-fake fusion test split")
    from training import benchmark, reproduce
    from training.real import pack

    pack.add_arguments(sub.add_parser(
        "pack", help="run every labelled file of ../shared through ingest and cache its "
                     "crops and audio (runs/cache/real)"))
    benchmark.add_arguments(sub.add_parser(
        "benchmark", help="score labelled media through the running mesh and report metrics"))
    reproduce.add_arguments(sub.add_parser(
        "reproduce", help="the steps that rebuild a shipped model from its recipe"))

    if argv[:1] == ["train"] and any(a.startswith("--branch") for a in argv):
        # the branch's own options are only known once the branch is (-h is held back so
        # that `train --branch B --help` lists B's options)
        known, _ = train.parse_known_args([a for a in argv[1:] if a not in ("-h", "--help")])
        module = trainer_module(known.branch)
        module.add_arguments(train)
    args = parser.parse_args(argv)
    if args.command == "branches":
        print("\n".join(available_branches()))
    elif args.command == "evaluate":
        evaluate_command(args)
    elif args.command == "benchmark":
        benchmark.run(args)
    elif args.command == "prepare":
        prepare(args)
    elif args.command == "pack":
        pack.run(args)
    elif args.command == "reproduce":
        return reproduce.run(args)
    else:
        trainer_module(args.branch).run(args)
    return 0
