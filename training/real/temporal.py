"""Temporal 2.x: the sequence model over a visual model's per-frame embeddings, cross-fitted
with that visual model's folds, so temporal's held-out scores are as honest as visual's.

    python -m training.real.temporal --visual 2.3.0 --version 2.4.0 [--final] [--device cuda]

Fold k's temporal model is trained on fold k's visual embeddings of every video outside
fold k and scores fold k's videos through the temporal service's code; the final model is
trained on the served visual model's embeddings of every video and records that model's
sha256 (the temporal service refuses embeddings of any other visual model). Every model is
trained by the shared loop (training.real.loop: seeds, checkpoints and resume under
runs/real/temporal/<version>/fold<k> and final, CPU or GPU by flag); a finished checkpoint
is reused, and one trained on other embeddings is refused: delete its folder to train again.
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
from training.real.loop import BatchFn, FitConfig, data_key_of, fit
from training.real.score import features_dir, fold_repo
from training.runtime import MODELS_DIR, RUNS_DIR

ARCH = "stats"
STEPS = 200
BATCH = 16
LR = 1e-2
WEIGHT_DECAY = 1e-3
MIN_FRAMES = 2
SCHEDULE = (f"{ARCH}, the shared loop (training.real.loop): {STEPS} steps of {BATCH} (half "
            f"real, half fake) random sub-sequences, AdamW lr {LR:g} with 10 warm-up steps and "
            f"cosine decay, weight decay {WEIGHT_DECAY:g}")


def sequences(rows: list[dict[str, Any]], emb: dict[str, np.ndarray]
              ) -> tuple[list[np.ndarray], np.ndarray, list[dict[str, Any]]]:
    """Video rows with at least MIN_FRAMES embedded frames (what the service would score)."""
    keep = [r for r in rows if r["kind"] == "video" and r["entry"] in emb
            and len(emb[r["entry"]]) >= MIN_FRAMES]
    return [emb[r["entry"]] for r in keep], np.array([r["label"] for r in keep]), keep


def sequence_batches(seqs: list[np.ndarray], labels: np.ndarray, batch: int = BATCH
                     ) -> BatchFn:
    """The shared loop's batches: half reals, half fakes, each sequence cut to one random
    window whose length is the batch's shortest sequence, or, half the time, a random
    length down to MIN_FRAMES (the service scores clips with as few as MIN_FRAMES faces)."""
    reals, fakes = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if not len(reals) or not len(fakes):
        raise ValueError("temporal training needs real and fake videos")

    def draw(step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([rng.choice(reals, batch // 2), rng.choice(fakes, batch - batch // 2)])
        n = min(len(seqs[i]) for i in idx)
        if n > MIN_FRAMES and rng.random() < 0.5:
            n = int(rng.integers(MIN_FRAMES, n + 1))
        starts = [int(rng.integers(0, len(seqs[i]) - n + 1)) for i in idx]
        x = np.stack([seqs[i][s:s + n] for i, s in zip(idx, starts, strict=True)])
        return x.astype(np.float32), labels[idx].astype(np.float32)

    return draw


def train(seqs: list[np.ndarray], labels: np.ndarray, run_dir: Path, seed: int = 0,
          device: str = "cpu") -> nn.Module:
    """The sequence model on the shared training loop (training.real.loop.fit): class-balanced
    batches of random sub-sequences, a fixed schedule (no selection on held-out data),
    checkpointed in run_dir and resumed from it; a run_dir whose model was trained on other
    sequences is refused (training.real.loop.StaleCheckpoint)."""
    model = build_temporal(ARCH, seqs[0].shape[1])
    cfg = FitConfig(steps=STEPS, lr=LR, weight_decay=WEIGHT_DECAY, warmup_steps=10, seed=seed,
                    device=device, threads=1, label_smoothing=0.0)
    fit(model, sequence_batches(seqs, labels), cfg, run_dir,
        data_key_of(seqs, labels))
    return model.cpu().eval()


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


def temporal_run_dir(version: str, name: str) -> Path:
    """Where fold k's (name fold<k>) or the final model's checkpoint and export live."""
    return RUNS_DIR / "real" / "temporal" / version / name


def cross_fit(visual_version: str, version: str, device: str = "cpu") -> list[dict[str, Any]]:
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
        model = train(seqs, labels, temporal_run_dir(version, f"fold{f}"), seed=f, device=device)
        vrepo = fold_repo("visual", visual_version, f)
        vman = load_verified(vrepo, "visual", "latest")
        trepo = temporal_run_dir(version, f"fold{f}") / "repo"
        export(model, seqs[0].shape[1], version, vman, trepo, {})
        hseqs, _, hrows = sequences(held, emb)
        for r, p in zip(hrows, score_with_service(trepo, hseqs, vman.sha256), strict=True):
            r["features"]["temporal_prob_fake"] = p
            r["prob_fake"]["temporal"] = p
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def final(visual_version: str, version: str, metrics: dict[str, Any], device: str = "cpu"
          ) -> None:
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
    model = train(seqs, labels, temporal_run_dir(version, "final"), seed=0, device=device)
    info = {"training_data": {
        "videos": int(len(labels)), "fake": int(labels.sum()),
        "what": "every packed video of ../shared/train and ../shared/data/talking (research / "
                "non-commercial material), as the served visual model embeds its ingest crops",
        "schedule": SCHEDULE},
        "metrics": metrics}
    export(model, seqs[0].shape[1], version, vserver.manifest, MODELS_DIR, info)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.real.temporal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual", required=True)
    parser.add_argument("--version", required=True, help="the temporal version to write")
    parser.add_argument("--final", action="store_true", help="train and export the served model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.final:
        metrics_path = features_dir() / "temporal_oof.json"
        final(args.visual, args.version,
              json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}, args.device)
    else:
        rows = cross_fit(args.visual, args.version, args.device)
        from training.evaluation.metrics import binary_report

        have = [r for r in rows if "temporal" in r["prob_fake"] and r["collection"] != "dev"]
        rep = binary_report([r["label"] for r in have], [r["prob_fake"]["temporal"] for r in have])
        (features_dir() / "temporal_oof.json").write_text(json.dumps(rep, indent=1))
        print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
