"""Out-of-fold branch features for every packed file: the rows fusion is fitted and judged on.

    python -m training.real.score --visual 2.0.0 [--audio 2.0.0]
    python -m training.real.score --visual 2.1.0 --reuse runs/real/features-2.0.0/rows.jsonl
    python -m training.real.score --visual 2.1.0 --audio 2.1.0 --reuse OLD_ROWS --fresh audio
    python -m training.real.score --visual 2.3.0 --audio 2.2.0 --reuse OLD_ROWS --fresh audio
    python -m training.real.score --visual 2.3.0 --audio 2.2.0 --tiny-gate 2.0.0 \
        --reuse OLD_ROWS --fresh tiny_gate
    python -m training.real.score --visual 2.4.0 --audio 2.2.0 \
        --reuse models/fusion/2.7.0/heldout_rows.jsonl
    python -m training.real.score --visual 2.3.0 --audio 2.3.0 \
        --reuse models/fusion/2.7.0/heldout_rows.jsonl --fresh audio --keep-visual

Each file gets, through the services' own code (training.real.features):
- visual: from the fold model trained without the file's source
  (runs/real/visual/<v>/fold<k>/repo), features and per-frame embeddings;
- audio: from the audio fold model trained without the file's source
  (runs/real/audio/fold<k>/repo, when the audio recipe left one);
- tiny_gate: from its fold model the same way when its version has them
  (runs/real/tiny_gate/<v>/fold<k>/repo, training.real.tiny_gate: 2.0.0 on), else the
  shipped model;
- sync and mri (and tiny_gate 1.x): the shipped models (trained only on ../shared/data
  reals and pseudo-fakes, never on ../shared/train), so their scores of ../shared/train are
  held out.

Writes runs/real/features/rows.jsonl (one row per file: label, kind, source, generator,
fold, `features` by FEATURE_COLS name, `prob_fake` by branch) and embeddings_fold<k>.npz
(every face file's per-frame embeddings by fold k's visual model, for temporal).

With --keep-visual, visual's and temporal's rows are copied from --reuse as well (a rows file
made with the same visual fold models and temporal version): no visual fold model is needed
or run, no embeddings are written, and temporal is not cross-fitted again. That is how a
release of another branch is scored without retraining visual's folds.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dfmesh.preprocess.stats import BRANCH_FEATURES
from training.real.features import branch_inputs, load_server, served_features
from training.real.folds import assign_folds, fold_of
from training.real.pack import load_entry, path_entry, read_index
from training.runtime import MODELS_DIR, RUNS_DIR


def features_dir() -> Path:
    return RUNS_DIR / "real" / "features"


def fold_repo(branch: str, version: str, fold: int) -> Path:
    return RUNS_DIR / "real" / branch / version / f"fold{fold}" / "repo"


REUSABLE = ("tiny_gate", "mri", "audio", "sync")
KEPT_WITH_VISUAL = ("visual", "temporal")


def reused_branches(path: Path, reusable: Sequence[str] = REUSABLE
                    ) -> dict[str, dict[str, Any]]:
    """entry -> {"features", "prob_fake"} of the `reusable` branches in an earlier rows file:
    this script's rows.jsonl, or a release's models/fusion/<v>/heldout_rows.jsonl (which names
    each file by its path, not by its packed entry)."""
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out[row.get("entry") or path_entry(row["path"])] = {
            "features": {c: v for c, v in row["features"].items()
                         if any(c in BRANCH_FEATURES[b] for b in reusable)},
            "prob_fake": {b: v for b, v in row["prob_fake"].items() if b in reusable}}
    return out


def score_rows(visual_version: str, audio_version: str | None, shipped: dict[str, str],
               reuse: Path | None = None, fresh: Sequence[str] = (),
               keep_visual: bool = False) -> list[dict[str, Any]]:
    """One row per packed file (dev included, marked by its collection). With `reuse`, the
    tiny_gate, mri, audio and sync features of every file that file scored are taken from it
    (a rows file made with the same versions of those branches) instead of recomputed; with
    `keep_visual` too, visual's and temporal's."""
    if keep_visual and reuse is None:
        raise ValueError("keep_visual copies visual's rows from an earlier file: give `reuse`")
    index = [r for r in read_index() if not r.get("error")]
    folds = assign_folds(index)
    num_folds = max(folds.values()) + 1
    rows = {r["entry"]: {k: r[k] for k in ("path", "kind", "label", "source", "group",
                                           "generator", "collection")}
            | {"entry": r["entry"], "fold": fold_of(r, folds), "features": {}, "prob_fake": {}}
            for r in index}
    fold_servers = {}
    for branch, version in (("visual", None if keep_visual else visual_version),
                            ("audio", audio_version), ("tiny_gate", shipped.get("tiny_gate"))):
        for f in range(num_folds):
            repo = fold_repo(branch, str(version), f)
            if version and repo.is_dir():
                fold_servers[(branch, f)] = load_server(branch, repo, "latest")
    # a branch with fold models is scored by them; the others by their shipped model
    shipped_servers = {b: load_server(b, MODELS_DIR, v) for b, v in shipped.items()
                       if (b, 0) not in fold_servers}
    embeddings: dict[int, dict[str, np.ndarray]] = {f: {} for f in range(num_folds)}
    reusable = [b for b in REUSABLE if b not in fresh] + list(KEPT_WITH_VISUAL if keep_visual
                                                              else ())
    earlier = reused_branches(reuse, reusable) if reuse else {}
    for r in tqdm(index, desc="score", unit="file"):
        row = rows[r["entry"]]
        done = earlier.get(r["entry"])
        if keep_visual and r.get("faces", 0) > 0 and done is None:
            raise SystemExit(f"{r['entry']}: not in {reuse}, so it has no visual row to keep; "
                             f"score without --keep-visual (visual {visual_version}'s fold "
                             "models)")
        if done:
            row["features"].update(done["features"])
            row["prob_fake"].update(done["prob_fake"])
        own = row["fold"] if row["fold"] >= 0 else 0  # dev: never trained on; fold 0 scores it
        entry = load_entry(r)
        inputs = branch_inputs(entry)
        # (branch, server, fold of a fold model or None, whether the row keeps its features)
        wanted: list[tuple[str, Any, int | None, bool]] = []
        if r.get("faces", 0) > 0:
            wanted.append(("tiny_gate", fold_servers.get(("tiny_gate", own),
                                                         shipped_servers.get("tiny_gate")),
                           None, True))
            wanted.append(("mri", shipped_servers.get("mri"), None, True))
            # every fold's visual model embeds every face file (temporal is cross-fitted on
            # them); only the file's own held-out fold gives its visual features
            if not keep_visual:
                wanted += [("visual", fold_servers.get(("visual", f)), f, f == own)
                           for f in range(num_folds)]
        if entry["pcm"].size:
            wanted.append(("audio", fold_servers.get(("audio", own)), own, True))
            if "dense_found" in entry and entry["dense_found"].any():
                wanted.append(("sync", shipped_servers.get("sync"), None, True))
        for branch, srv, fold, keep in wanted:
            if srv is None or (done and branch in reusable):
                continue
            got = served_features(srv, inputs)
            if got is None:
                continue
            if branch == "visual" and fold is not None and got["embeddings"]:
                embeddings[fold][r["entry"]] = np.stack(got["embeddings"]).astype(np.float32)
            if keep:
                row["features"].update(got["features"])
                row["prob_fake"][branch] = got["prob_fake"]
    out = features_dir()
    out.mkdir(parents=True, exist_ok=True)
    ordered = [rows[r["entry"]] for r in index]
    (out / "rows.jsonl").write_text("".join(json.dumps(x) + "\n" for x in ordered))
    if not keep_visual:
        for f, emb in embeddings.items():
            np.savez(out / f"embeddings_fold{f}.npz", **emb)
    return ordered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual", required=True, help="visual recipe version (fold models)")
    parser.add_argument("--audio", default=None, help="audio recipe version (fold models)")
    parser.add_argument("--tiny-gate", default="1.1.0",
                        help="its fold models when runs/real/tiny_gate/<v> has them, else "
                             "the shipped model")
    parser.add_argument("--sync", default="1.0.0")
    parser.add_argument("--mri", default="1.0.0")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="an earlier rows.jsonl made with the same tiny_gate, mri, audio "
                             "and sync versions: their features are copied, not recomputed")
    parser.add_argument("--fresh", nargs="*", default=(), choices=REUSABLE,
                        help="with --reuse: these branches are scored again (a new version)")
    parser.add_argument("--keep-visual", action="store_true",
                        help="with --reuse: copy visual's and temporal's rows too (made with "
                             "--visual's fold models): no visual fold model is run")
    args = parser.parse_args(argv)
    if args.keep_visual and args.reuse is None:
        parser.error("--keep-visual needs --reuse")
    rows = score_rows(args.visual, args.audio, {"tiny_gate": args.tiny_gate, "sync": args.sync,
                                                "mri": args.mri}, args.reuse, args.fresh,
                      args.keep_visual)
    print(f"{len(rows)} rows in {features_dir() / 'rows.jsonl'}")


if __name__ == "__main__":
    main()
