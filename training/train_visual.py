"""Train the visual branch (ResNet-18 or EfficientNet-B0 from scratch) on real faces and
pseudo-fakes; evaluate on the identity-disjoint test split and the dev set; export.

CPU budget: training runs on random `--train-size` crops (default 160) of the 224 input,
which keeps pixel-level artifacts at their serving scale (no resizing) while costing about
half of full-size steps; the network pools globally, so evaluation and serving use the full
224 input.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dfmesh.preprocess.tensors import VISUAL_SIZE, visual_input
from training.common import (
    RunContext,
    add_common_arguments,
    cosine_lr,
    held_out_samples,
    load_checkpoint,
    load_dev_set,
    predict_in_batches,
    save_checkpoint,
    start_run,
)
from training.export import ExportSpec, TensorSpec, export_branch
from training.models.visual import VISUAL_ARCHS, VisualDetector
from training.scoring import binary_metrics

BRANCH = "visual"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--arch", choices=VISUAL_ARCHS, default="resnet18")
    parser.add_argument("--train-size", type=int, default=160,
                        help="side of the random training crop taken from the 224 input")


def random_crops(batch: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random size x size window of each [3, H, W] item (no resampling)."""
    if size >= batch.shape[-1]:
        return batch
    h, w = batch.shape[-2:]
    out = []
    for item in batch:
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        out.append(item[:, y : y + size, x : x + size])
    return torch.stack(out)


def predict_probs(model: VisualDetector, crops: Sequence[np.ndarray],
                  batch_size: int = 32) -> np.ndarray:
    """P(fake) per crop, through the serving preprocessing."""
    model.eval()

    def run(chunk: Sequence[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            logit, _ = model(torch.from_numpy(visual_input(chunk)))
        return torch.sigmoid(logit)[:, 0].numpy()

    return predict_in_batches(run, crops, batch_size)


def embed(model: VisualDetector, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Per-crop embeddings [N, D] (what the temporal branch consumes)."""
    model.eval()

    def run(chunk: Sequence[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            _, emb = model(torch.from_numpy(visual_input(chunk)))
        return emb.numpy()

    return predict_in_batches(run, crops, batch_size)


def evaluate(model: VisualDetector, samples: Sequence) -> dict[str, float]:
    probs = predict_probs(model, [s.crop for s in samples])
    labels = np.array([s.label for s in samples])
    return binary_metrics(labels, probs)


def train(ctx: RunContext) -> VisualDetector:
    args = ctx.args
    model = VisualDetector(args.arch).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    total = args.epochs * args.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(s, total))
    start_epoch, best_auc, history = 0, -1.0, []
    state = load_checkpoint(ctx)
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_auc, history = state["epoch"], state["best_auc"], state["history"]
    sampler = ctx.sampler("train")
    val = held_out_samples(ctx.sampler("val"), args.val_samples)
    for epoch in range(start_epoch, args.epochs):
        model.train()
        rng = np.random.default_rng([args.seed, epoch])
        bar = tqdm(range(args.steps_per_epoch), desc=f"visual epoch {epoch + 1}/{args.epochs}")
        losses = []
        for step in bar:
            first = step * args.batch_size
            samples = [sampler.sample(epoch, first + j) for j in range(args.batch_size)]
            x = torch.from_numpy(visual_input([s.crop for s in samples]))
            x = random_crops(x, args.train_size, rng).contiguous(memory_format=torch.channels_last)
            y = torch.tensor([[float(s.label)] for s in samples])
            logit, _ = model(x)
            loss = F.binary_cross_entropy_with_logits(logit, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        val_metrics = evaluate(model, val)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "val": val_metrics})
        print(f"epoch {epoch + 1}: train loss {np.mean(losses):.4f}, val {val_metrics}")
        if val_metrics["auc"] > best_auc:
            best_auc = val_metrics["auc"]
            save_checkpoint(ctx.run_dir / "best.pt", model=model.state_dict(), epoch=epoch + 1)
        save_checkpoint(ctx.checkpoint_path, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        epoch=epoch + 1, best_auc=best_auc, history=history)
    ctx.write_json("history.json", history)
    best = torch.load(ctx.run_dir / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(best["model"])
    return model.eval()


def measure(ctx: RunContext, model: VisualDetector) -> dict:
    args = ctx.args
    metrics = {"test_pseudo_fakes": evaluate(model, held_out_samples(ctx.sampler("test"),
                                                                     args.test_samples))}
    if not args.no_dev:
        crops, labels = load_dev_set()
        if crops:
            metrics["dev_sanity"] = binary_metrics(labels, predict_probs(model, crops))
    ctx.write_json("metrics.json", metrics)
    print(metrics)
    return metrics


def export(ctx: RunContext, model: VisualDetector, metrics: dict) -> None:
    args = ctx.args
    example = (torch.from_numpy(visual_input([s.crop for s in held_out_samples(
        ctx.sampler("val"), 2)])),)
    spec = ExportSpec(
        name=f"visual-{args.arch.replace('_', '')}", branch=BRANCH, version=args.version,
        inputs=[TensorSpec("image", ["batch", 3, VISUAL_SIZE, VISUAL_SIZE])],
        outputs=[TensorSpec("logit", ["batch", 1]),
                 TensorSpec("embedding", ["batch", model.embedding_dim])],
        preprocessing={"function": "dfmesh.preprocess.tensors.visual_input",
                       "input": "uint8 RGB face crops from dfmesh.preprocess.geometry.face_crop "
                                "(256x256), resized with area interpolation",
                       "size": VISUAL_SIZE, "normalization": "ImageNet mean/std",
                       "layout": "NCHW float32", "output": "sigmoid(logit) = P(fake)"},
        training_data=ctx.training_data_summary(),
        metrics=metrics, extra={"architecture": args.arch})
    out = export_branch(model, example, spec, args.models_dir)
    print(f"exported {out}")


def run(args: argparse.Namespace) -> dict:
    ctx = start_run(BRANCH, args)
    model = train(ctx)
    metrics = measure(ctx, model)
    if args.export:
        export(ctx, model, metrics)
    return metrics
