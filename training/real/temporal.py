"""Temporal 2.x: the sequence model over a visual model's per-frame embeddings, cross-fitted
with that visual model's folds, so temporal's held-out scores are as honest as visual's.

    python -m training.real.temporal --visual 2.3.0 --version 2.3.0 [--final]

Fold k's temporal model is trained on fold k's visual embeddings of every video outside
fold k and scores fold k's videos through the temporal service's code; the final model is
trained on the served visual model's embeddings of every video and records that model's
sha256 (the temporal service refuses embeddings of any other visual model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dfmesh.runtime.branch_inputs import BranchInputs, EmbeddingInput
from dfmesh.runtime.model_repo import load_verified
from training import reproduce
from training.export import ExportSpec, TensorSpec, export_branch
from training.models.temporal import build_temporal
from training.real.features import load_server, served_features
from training.real.score import features_dir, fold_repo
from training.runtime import MODELS_DIR, RUNS_DIR

ARCH = "stats"
EPOCHS = 30
LR = 1e-2
MIN_FRAMES = 2


def sequences(rows: list[dict[str, Any]], emb: dict[str, np.ndarray]
              ) -> tuple[list[np.ndarray], np.ndarray, list[dict[str, Any]]]:
    """Video rows with at least MIN_FRAMES embedded frames (what the service would score)."""
    keep = [r for r in rows if r["kind"] == "video" and r["entry"] in emb
            and len(emb[r["entry"]]) >= MIN_FRAMES]
    return [emb[r["entry"]] for r in keep], np.array([r["label"] for r in keep]), keep


def train(seqs: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> nn.Module:
    """Full-batch-ish training of the TCN on variable-length sequences (one at a time, with
    random frame dropout), class-balanced, fixed schedule (no selection on held-out data)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_temporal(ARCH, seqs[0].shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-3)
    pos = labels.mean()
    weights = np.where(labels == 1, 0.5 / max(pos, 1e-6), 0.5 / max(1 - pos, 1e-6))
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    model.train()
    for _ in range(EPOCHS):
        for batch in np.array_split(rng.permutation(len(seqs)), max(1, len(seqs) // 16)):
            losses = []
            for i in batch:
                seq = seqs[i]
                if len(seq) > MIN_FRAMES and rng.random() < 0.5:
                    n = int(rng.integers(MIN_FRAMES, len(seq) + 1))
                    start = int(rng.integers(0, len(seq) - n + 1))
                    seq = seq[start:start + n]
                logit = model(torch.from_numpy(seq[None].astype(np.float32))).reshape(1)
                target = torch.tensor([float(labels[i])])
                losses.append(loss_fn(logit, target) * float(weights[i]))
            loss = torch.cat(losses).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def export(model: nn.Module, dim: int, version: str, visual_manifest: Any, repo: Path,
           info: dict[str, Any]) -> None:
    spec = ExportSpec(
        name=f"temporal-{ARCH}", branch="temporal", version=version,
        inputs=[TensorSpec("embeddings", ["batch", "time", dim])],
        outputs=[TensorSpec("logit", ["batch", 1])],
        preprocessing={"function": "dfmesh.preprocess.tensors.temporal_input",
                       "input": "the visual model's 'embedding' output for each sampled "
                                "frame's face crop, in frame order, [T, D] -> [1, T, D]",
                       "output": "sigmoid(logit) = temporal_prob_fake"},
        training_data=info.get("training_data", ""), metrics=info.get("metrics", {}),
        fp16_weights=False,
        keep_torch_state={"class": "training.models.temporal.build_temporal",
                          "kwargs": {"arch": ARCH, "input_dim": dim}},
        extra={"architecture": ARCH, "visual_model": {
            "name": visual_manifest.name, "version": visual_manifest.version,
            "sha256": visual_manifest.sha256}}
        | reproduce.manifest_entry("temporal", version) | info.get("extra", {}))
    example = (torch.zeros(1, 16, dim),)
    export_branch(model, example, spec, repo)


def score_with_service(repo: Path, seqs: list[np.ndarray], visual_sha: str) -> list[float]:
    server = load_server("temporal", repo, "latest")
    out = []
    for seq in seqs:
        inputs = BranchInputs(embeddings=[EmbeddingInput(i, 0.0, v, visual_sha)
                                          for i, v in enumerate(seq)])
        got = served_features(server, inputs)
        out.append(float(got["prob_fake"]) if got else float("nan"))
    return out


def cross_fit(visual_version: str, version: str) -> list[dict[str, Any]]:
    """Fold models -> temporal_prob_fake of every video (written into rows.jsonl)."""
    rows_path = features_dir() / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    num_folds = max(r["fold"] for r in rows) + 1
    for f in range(num_folds):
        with np.load(features_dir() / f"embeddings_fold{f}.npz") as z:
            emb = {k: z[k] for k in z.files}
        train_rows = [r for r in rows if r["fold"] not in (f, -1)]
        held = [r for r in rows if r["fold"] == f or (f == 0 and r["fold"] == -1)]
        seqs, labels, _ = sequences(train_rows, emb)
        model = train(seqs, labels, seed=f)
        vrepo = fold_repo("visual", visual_version, f)
        vman = load_verified(vrepo, "visual", "latest")
        trepo = RUNS_DIR / "real" / "temporal" / version / f"fold{f}" / "repo"
        export(model, seqs[0].shape[1], version, vman, trepo, {})
        hseqs, _, hrows = sequences(held, emb)
        for r, p in zip(hrows, score_with_service(trepo, hseqs, vman.sha256), strict=True):
            r["features"]["temporal_prob_fake"] = p
            r["prob_fake"]["temporal"] = p
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def final(visual_version: str, version: str, metrics: dict[str, Any]) -> None:
    """Train on the served visual model's embeddings of every video; export to models/."""
    from training.real.features import branch_inputs
    from training.real.pack import load_entry, read_index

    vserver = load_server("visual", MODELS_DIR, visual_version)
    rows, emb = [], {}
    for r in read_index():
        if r["kind"] != "video" or r.get("error") or r["collection"] == "dev" or not r.get("faces"):
            continue
        got = served_features(vserver, branch_inputs(load_entry(r)))
        if got and got["embeddings"]:
            emb[r["entry"]] = np.stack(got["embeddings"]).astype(np.float32)
            rows.append(r)
    seqs, labels, _ = sequences(rows, emb)
    model = train(seqs, labels, seed=0)
    info = {"training_data": {
        "videos": int(len(labels)), "fake": int(labels.sum()),
        "what": "every packed video of ../shared/train and ../shared/data/talking (research / "
                "non-commercial material), as the served visual model embeds its ingest crops",
        "schedule": f"{ARCH}, {EPOCHS} epochs, AdamW lr {LR:g}, class-balanced, random "
                    "sub-sequences"},
        "metrics": metrics}
    export(model, seqs[0].shape[1], version, vserver.manifest, MODELS_DIR, info)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.temporal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual", required=True)
    parser.add_argument("--version", required=True, help="the temporal version to write")
    parser.add_argument("--final", action="store_true", help="train and export the served model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.final:
        metrics_path = features_dir() / "temporal_oof.json"
        final(args.visual, args.version,
              json.loads(metrics_path.read_text()) if metrics_path.is_file() else {})
    else:
        rows = cross_fit(args.visual, args.version)
        from training.evaluation.metrics import binary_report

        have = [r for r in rows if "temporal" in r["prob_fake"] and r["collection"] != "dev"]
        rep = binary_report([r["label"] for r in have], [r["prob_fake"]["temporal"] for r in have])
        (features_dir() / "temporal_oof.json").write_text(json.dumps(rep, indent=1))
        print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
