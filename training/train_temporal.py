"""Train the temporal branch (BiLSTM or 1-D CNN) over the exported visual model's per-frame
embeddings of real and temporally manipulated crop sequences; evaluate; export.

Embeddings come from models/visual/<version>/model.onnx through ONNX Runtime, exactly as
the services compute them, and are cached per visual checksum under runs/. The temporal
model is bound to that visual model: its manifest records the visual checksum, and a new
visual model needs a new temporal model.

The exported head carries a temperature fitted on the validation sequences (Brier score), so
`temporal_prob_fake` is a probability, not only a score. `--recalibrate VERSION` trains
nothing: it refits that temperature for a shipped version's weights and exports them anew.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dfmesh.preprocess.tensors import visual_input
from dfmesh.runtime.model_repo import load_verified
from training.common import RunContext, add_common_arguments, save_checkpoint, start_run
from training.data.pseudo import make_sequence
from training.export import ExportSpec, TensorSpec, export_branch, load_torch_state
from training.fakes.registry import DonorPool, Face
from training.fakes.temporal import TEMPORAL_MANIPULATIONS
from training.models.temporal import TEMPORAL_ARCHS, build_temporal, fold_temperature
from training.scoring import binary_metrics, fit_temperature, sigmoid

BRANCH = "temporal"
DEFAULT_TEMPORAL_MANIPULATIONS = "flicker=1,identity_jitter=1,stable_blend=1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--arch", choices=TEMPORAL_ARCHS, default="bilstm")
    parser.add_argument("--frames", type=int, default=16, help="frames per sequence (ingest: 16)")
    parser.add_argument("--train-sequences", type=int, default=320)
    parser.add_argument("--val-sequences", type=int, default=80)
    parser.add_argument("--test-sequences", type=int, default=120)
    parser.add_argument("--visual-version", default="latest")
    parser.add_argument("--recalibrate", default=None, metavar="VERSION",
                        help="train nothing: take the shipped temporal VERSION's weights, fit "
                             "the temperature on val, measure and export")
    parser.set_defaults(epochs=40, batch_size=32, lr=2e-3,
                        manipulations=DEFAULT_TEMPORAL_MANIPULATIONS)


class OnnxEmbedder:
    """visual's ONNX model, checksum-verified, returning per-crop embeddings."""

    def __init__(self, models_dir, version: str) -> None:
        import onnxruntime as ort

        self.manifest = load_verified(models_dir, "visual", version)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.manifest.artifact_path), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings [N, D], visual logits [N])"""
        logit, embedding = self.session.run(["logit", "embedding"],
                                            {"image": visual_input(crops)})
        return embedding, logit[:, 0]


def parse_temporal_weights(spec: str) -> dict[str, float]:
    weights = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition("=")
        if name not in TEMPORAL_MANIPULATIONS:
            raise ValueError(f"unknown temporal manipulation {name!r}; "
                             f"registered: {sorted(TEMPORAL_MANIPULATIONS)}")
        weights[name] = float(w) if w else 1.0
    return weights


def sequence_embeddings(ctx: RunContext, embedder: OnnxEmbedder, split: str, count: int
                        ) -> dict[str, np.ndarray]:
    """Embeddings [count, T, D], labels and manipulation names of one split (cached)."""
    args = ctx.args
    cache = (ctx.run_dir / f"embeddings_{split}_{embedder.manifest.sha256[:12]}_"
             f"{count}x{args.frames}_s{args.seed}.npz")
    if cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    sources = [s for s in ctx.sources(split, "talking") if len(s.crops) >= 4]
    donors = DonorPool([Face(s.crops[i], s.landmarks[i], s.group)
                        for s in ctx.sources(split) for i in range(0, len(s.crops), 6)])
    weights = parse_temporal_weights(args.manipulations)
    seed = args.seed * 10 + {"train": 0, "val": 1, "test": 2}[split]
    embeddings, logits, labels, names = [], [], [], []
    for i in tqdm(range(count), desc=f"temporal {split} sequences"):
        seq = make_sequence(sources, weights, seed, i, args.frames, donors, fake=bool(i % 2))
        emb, logit = embedder(seq.crops)
        embeddings.append(emb)
        logits.append(logit)
        labels.append(seq.label)
        names.append(seq.manipulation)
    data = {"embeddings": np.stack(embeddings).astype(np.float32),
            "visual_logits": np.stack(logits).astype(np.float32),
            "labels": np.array(labels), "manipulations": np.array(names)}
    np.savez_compressed(cache, **data)
    return data


def predict(model: torch.nn.Module, embeddings: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(embeddings)))[:, 0].numpy()


def train(ctx: RunContext, train_data: dict, val_data: dict, dim: int) -> torch.nn.Module:
    args = ctx.args
    model = build_temporal(args.arch, dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    x_all = torch.from_numpy(train_data["embeddings"])
    y_all = torch.from_numpy(train_data["labels"].astype(np.float32))[:, None]
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    best_auc, best_state, history = -1.0, None, []
    for epoch in tqdm(range(args.epochs), desc="temporal epochs"):
        model.train()
        losses = []
        for idx in torch.randperm(len(x_all), generator=gen).split(args.batch_size):
            # random sub-sequences teach the model any T (a clip may give fewer frames)
            t = int(rng.integers(max(2, args.frames // 4), args.frames + 1))
            start = int(rng.integers(0, args.frames - t + 1))
            logit = model(x_all[idx, start : start + t])
            loss = F.binary_cross_entropy_with_logits(logit, y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val = binary_metrics(val_data["labels"], predict(model, val_data["embeddings"]))
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val": val})
        if val["auc"] > best_auc:
            best_auc = val["auc"]
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    ctx.write_json("history.json", history)
    model.load_state_dict(best_state)
    save_checkpoint(ctx.run_dir / "best.pt", model=best_state)
    return model.eval()


def measure(test: dict, model: torch.nn.Module) -> dict:
    probs = predict(model, test["embeddings"])
    metrics = {"test_pseudo_fakes": binary_metrics(test["labels"], probs)}
    # the per-frame visual score averaged over the clip, for comparison on the same sequences
    metrics["visual_mean_baseline_same_sequences"] = binary_metrics(
        test["labels"], sigmoid(test["visual_logits"]).mean(axis=1))
    for name in np.unique(test["manipulations"]):
        if name == "real":
            continue
        keep = (test["manipulations"] == name) | (test["labels"] == 0)
        metrics[f"test_{name}_vs_real"] = binary_metrics(test["labels"][keep], probs[keep])
    return metrics


def shipped_model(args: argparse.Namespace, embedder: OnnxEmbedder
                  ) -> tuple[torch.nn.Module, str, dict]:
    """The weights of a shipped temporal version, its architecture and where it came from;
    refused unless it was trained on the same visual model's embeddings."""
    manifest = load_verified(args.models_dir, BRANCH, args.recalibrate)
    if manifest.extra.get("visual_model", {}).get("sha256") != embedder.manifest.sha256:
        raise SystemExit(f"temporal {manifest.version} was trained on another visual model's "
                         f"embeddings than visual {embedder.manifest.version}")
    model = load_torch_state(manifest)
    if model is None:
        raise SystemExit(f"temporal {manifest.version} ships no torch_state.pt to recalibrate")
    source = {"version": manifest.version, "sha256": manifest.sha256}
    return model, manifest.extra["architecture"], source


def run(args: argparse.Namespace) -> dict:
    ctx = start_run(BRANCH, args)
    embedder = OnnxEmbedder(args.models_dir, args.visual_version)
    data = {split: sequence_embeddings(ctx, embedder, split, n) for split, n in
            (("train", args.train_sequences), ("val", args.val_sequences),
             ("test", args.test_sequences))}
    dim = data["train"]["embeddings"].shape[-1]
    arch, source = args.arch, None
    if args.recalibrate:
        model, arch, source = shipped_model(args, embedder)
    else:
        model = train(ctx, data["train"], data["val"], dim)
    test = data["test"]
    uncalibrated = binary_metrics(test["labels"], predict(model, test["embeddings"]))
    # The BiLSTM is overconfident (test log-loss ~2 before this); the service reports its
    # probability as is, so the validation-fitted temperature goes into the exported head.
    temperature = fit_temperature(predict(model, data["val"]["embeddings"]), data["val"]["labels"])
    fold_temperature(model, temperature)
    metrics = measure(data["test"], model)
    metrics["test_pseudo_fakes_before_temperature"] = uncalibrated
    ctx.write_json("metrics.json", metrics)
    print(metrics)
    if args.export:
        example = (torch.from_numpy(data["val"]["embeddings"][:2]),)
        spec = ExportSpec(
            name=f"temporal-{arch}", branch=BRANCH, version=args.version,
            inputs=[TensorSpec("embeddings", ["batch", "time", dim])],
            outputs=[TensorSpec("logit", ["batch", 1])],
            preprocessing={"function": "dfmesh.preprocess.tensors.temporal_input",
                           "input": "the visual model's 'embedding' output for each sampled "
                                    "frame's face crop, in frame order, [T, D] -> [1, T, D]",
                           "frames_trained": f"{max(2, args.frames // 4)}-{args.frames}",
                           "output": "sigmoid(logit) = temporal_prob_fake"},
            training_data={
                "real": "sequences of talking/ clip face crops (MTCNN, 48 frames cached per "
                        f"clip, {args.frames} random frames in order per sequence), "
                        "identity-disjoint splits",
                "fakes": f"temporal manipulations: {args.manipulations}",
                "sequences": {k: int(len(v["labels"])) for k, v in data.items()},
                "seed": args.seed,
                "weights": (f"temporal {source['version']}'s, not retrained; only the "
                            "temperature was fitted" if source else
                            f"trained {args.epochs} epochs, best validation AUC kept")},
            metrics=metrics, fp16_weights=False,
            keep_torch_state={"class": "training.models.temporal.build_temporal",
                              "kwargs": {"arch": arch, "input_dim": dim}},
            extra={"architecture": arch,
                   "recalibrated_from": source,
                   "temperature": {"value": temperature, "folded_into": "head (logit / T)",
                                   "fitted_on": "val sequences, minimizing the Brier score"},
                   "visual_model": {"name": embedder.manifest.name,
                                    "version": embedder.manifest.version,
                                    "sha256": embedder.manifest.sha256}})
        print(f"exported {export_branch(model, example, spec, args.models_dir)}")
    return metrics
