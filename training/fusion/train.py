"""`python -m training train --branch fusion`: score the clip dataset with every shipped model,
fit the heads and temperatures, write models/fusion/<version>/fusion.joblib + manifest.json.

    --rescore all|visual|audio|b1,b2   re-score runs/fusion/rows.jsonl after models changed
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import joblib

from dfmesh.runtime.model_repo import write_manifest
from training.evaluation.metrics import binary_report
from training.fakes.registry import DonorPool, Face
from training.fusion.branches import ServedBranches
from training.fusion.dataset import (
    AUDIO_BRANCHES,
    VERSIONS,
    VISUAL_BRANCHES,
    build_rows,
    load_rows,
)
from training.fusion.fit import (
    FUSION_ARITHMETIC,
    LR_BRANCHES,
    MANIFEST_IO,
    adaptive_probs,
    calibrated,
    fit_bundle,
    head_key,
)
from training.loaders.dense import build_dense_cache
from training.loaders.talking import talking_clips
from training.runtime import MODELS_DIR, RUNS_DIR, seed_everything, shared_data_dir

log = logging.getLogger(__name__)
VERSION = "1.0.0"
ARTIFACT = "fusion.joblib"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--rows", type=Path, default=RUNS_DIR / "fusion" / "rows.jsonl")
    parser.add_argument("--rescore", default=None,
                        help="rebuild rows.jsonl for: all | visual (tiny_gate, visual, "
                             "temporal, mri) | audio (audio, sync) | comma-separated branches")
    parser.add_argument("--score-only", action="store_true", help="write rows.jsonl, fit nothing")


def donor_pools(seed: int) -> dict[str, DonorPool]:
    """Face photos of each split (training.data's face cache) as swap donors for that split."""
    from training.data.faces import load_face_sources

    pools = {}
    for split in ("train", "val", "test"):
        faces = [Face(crop, lm, src.group)
                 for src in load_face_sources(split=split, category="faces")
                 for crop, lm in zip(src.crops, src.landmarks, strict=True)]
        pools[split] = DonorPool(faces)
    return pools


def score_rows(args: argparse.Namespace) -> Path:
    data_dir = args.data_dir or shared_data_dir()
    models = ServedBranches(args.models_dir)
    log.info("scoring with %s", models.versions())
    tracks = build_dense_cache(data_dir, talking_clips(data_dir, args.seed))
    groups = {"all": VISUAL_BRANCHES + AUDIO_BRANCHES, "visual": VISUAL_BRANCHES,
              "audio": AUDIO_BRANCHES}
    only = frozenset(b for part in (args.rescore or "all").split(",")
                     for b in groups.get(part, (part,)))
    unknown = only - set(groups["all"])
    if unknown:
        raise SystemExit(f"--rescore: unknown branches {sorted(unknown)}")
    build_rows(tracks, data_dir, models, donor_pools(args.seed), args.rows, seed=args.seed,
               only=only)
    record = args.rows.with_suffix(".models.json")
    versions = json.loads(record.read_text()) if record.is_file() and only != frozenset(
        groups["all"]) else {}
    current = models.versions()
    versions.update({b: current.get(b) for b in only})   # None: no model, branch left empty
    record.write_text(json.dumps(versions, indent=1))
    return args.rows


def summarize(bundle: dict, rows: dict[str, list[dict]]) -> dict:
    """Validation numbers for the manifest (the test split is EVALUATION.md's business)."""
    val = rows["val"]
    out = {"split": "validation split (identity-disjoint); temperatures were fitted on it, so "
                    "these are optimistic; test numbers are in docs/EVALUATION.md"}
    full = bundle["heads"][head_key(LR_BRANCHES)]
    p, y = calibrated(full, val)
    out["val_5way"] = binary_report(y, p) if len(y) else {}
    p, y = adaptive_probs(val, bundle["adaptive"]["temperatures"])
    out["val_adaptive"] = binary_report(y, p) if len(y) else {}
    return out


def run(args: argparse.Namespace) -> dict:
    seed_everything(args.seed)
    if args.rescore or not args.rows.is_file():
        score_rows(args)
    if args.score_only:
        return {}
    all_rows = load_rows(args.rows)
    rows = {s: [r for r in all_rows if r["split"] == s] for s in ("train", "val", "test")}
    bundle = fit_bundle(rows["train"], rows["val"])
    version_dir = args.models_dir / "fusion" / args.version
    version_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, version_dir / ARTIFACT)
    scored_with = json.loads(args.rows.with_suffix(".models.json").read_text()) \
        if args.rows.with_suffix(".models.json").is_file() else {}
    metrics = summarize(bundle, rows)
    counts = {s: dict(Counter(r["version"] for r in v)) | {"rows": len(v),
              "segments": len({r["segment"] for r in v}), "clips": len({r["clip"] for r in v})}
              for s, v in rows.items()}
    write_manifest(
        version_dir, name="fusion-logreg", branch="fusion", version=args.version, fmt="joblib",
        artifact=ARTIFACT, **MANIFEST_IO,
        preprocessing=FUSION_ARITHMETIC | {"heads": sorted(bundle["heads"])},
        training_data={
            "clips": "real segments of ../shared/data/talking clips with real audio and their "
                     "pseudo-fake versions: " + ", ".join(VERSIONS),
            "splits": "identity-disjoint (training.data.identities); heads fitted on train, "
                      "temperatures on val, test held out",
            "counts": counts, "scored_with": scored_with},
        metrics=metrics,
        head_summary={k: {"feature_cols": h["feature_cols"], "temperature": h["temperature"],
                          "n_train": h["n_train"], "n_val": h["n_val"]}
                      for k, h in bundle["heads"].items()},
        adaptive_temperatures=bundle["adaptive"]["temperatures"], threshold=bundle["threshold"])
    log.info("wrote %s", version_dir)
    return metrics


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
