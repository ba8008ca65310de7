"""Train the visual branch (ResNet-18 or EfficientNet-B0 from scratch) on real faces and
pseudo-fakes; evaluate on the identity-disjoint test split and the dev set; export.

CPU budget: training runs on random `--train-size` windows (default 128) of the 224 input,
which keeps pixel-level artifacts at their serving scale (no resizing) while costing about
a third of a full-size step; the network pools globally, so evaluation and serving use the full
224 input.

With `--labelled SPEC` (training.data.labelled) a share of the training samples are labelled
crops of a public dataset. Their fakes carry no manipulation mask, so the auxiliary mask loss
only sees samples whose mask is known (real faces, pseudo-fakes, labelled reals). Validation
and test report the pseudo-fake numbers as before and, separately, `val_labelled` /
`test_labelled` on the labelled val/test files; the best epoch is then chosen by the labelled
validation AUC (the data the user trains for), by the pseudo-fake one otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
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
    random_windows,
    save_checkpoint,
    start_run,
)
from training.data.labelled import LabelledEvalSet, labelled_metrics
from training.export import ExportSpec, TensorSpec, export_branch
from training.models.visual import VISUAL_ARCHS, VisualDetector
from training.scoring import binary_metrics

BRANCH = "visual"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--arch", choices=VISUAL_ARCHS, default="resnet18")
    parser.add_argument("--train-size", type=int, default=128,
                        help="side of the random training window taken from the 224 input")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this checkpoint's weights (e.g. fine-tune at the "
                             "serving size 224 after training on smaller windows)")
    parser.add_argument("--mask-weight", type=float, default=1.0,
                        help="weight of the auxiliary manipulation-map loss (0: off)")


def mask_tensor(samples: Sequence, size: int = VISUAL_SIZE) -> torch.Tensor:
    """Manipulation masks resized like the crops ([N, 1, size, size])."""
    masks = [cv2.resize(s.mask, (size, size), interpolation=cv2.INTER_AREA) for s in samples]
    return torch.from_numpy(np.stack(masks)[:, None])


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


def evaluate_labelled(model: VisualDetector, eval_set: LabelledEvalSet) -> dict:
    return labelled_metrics(eval_set, predict_probs(model, eval_set.crops))


def mask_loss(mask_logits: torch.Tensor, masks: torch.Tensor,
              known: torch.Tensor) -> torch.Tensor:
    """BCE of the predicted manipulation map, averaged over the samples whose mask is known
    (a labelled fake's mask is unknown, and zeros would teach "nothing changed here")."""
    target = F.adaptive_avg_pool2d(masks, mask_logits.shape[-2:])
    per_sample = F.binary_cross_entropy_with_logits(mask_logits, target,
                                                    reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * known).sum() / known.sum().clamp(min=1.0)


def train(ctx: RunContext) -> VisualDetector:
    args = ctx.args
    model = VisualDetector(args.arch).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    total = args.epochs * args.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(s, total))
    start_epoch, best_auc, history = 0, -1.0, []
    state = load_checkpoint(ctx)
    if state is None and args.init_from:
        model.load_state_dict(torch.load(args.init_from, map_location="cpu",
                                         weights_only=False)["model"])
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_auc, history = state["epoch"], state["best_auc"], state["history"]
    sampler = ctx.sampler("train")
    val = held_out_samples(ctx.sampler("val"), args.val_samples)
    val_labelled = ctx.labelled_eval("val", args.val_samples)
    for epoch in range(start_epoch, args.epochs):
        model.train()
        rng = np.random.default_rng([args.seed, epoch])
        bar = tqdm(range(args.steps_per_epoch), desc=f"visual epoch {epoch + 1}/{args.epochs}")
        losses = []
        for step in bar:
            first = step * args.batch_size
            samples = [sampler.sample(epoch, first + j) for j in range(args.batch_size)]
            x = torch.from_numpy(visual_input([s.crop for s in samples]))
            x, masks = random_windows(x, mask_tensor(samples), args.train_size, rng)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.tensor([[float(s.label)] for s in samples])
            logit, _, mask_logits = model.forward_with_mask(x)
            loss = F.binary_cross_entropy_with_logits(logit, y)
            if mask_logits is not None and args.mask_weight > 0:
                known = torch.tensor([float(s.mask_known) for s in samples])
                loss = loss + args.mask_weight * mask_loss(mask_logits, masks, known)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        val_metrics = evaluate(model, val)
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val": val_metrics}
        selection_auc = val_metrics["auc"]
        if val_labelled is not None:
            entry["val_labelled"] = evaluate_labelled(model, val_labelled)
            if not np.isnan(entry["val_labelled"]["crop"]["auc"]):
                selection_auc = entry["val_labelled"]["crop"]["auc"]
        history.append(entry)
        print(f"epoch {epoch + 1}: train loss {np.mean(losses):.4f}, val {val_metrics}"
              + (f", val_labelled {entry['val_labelled']}" if val_labelled is not None else ""))
        if selection_auc > best_auc or not (ctx.run_dir / "best.pt").is_file():
            best_auc = selection_auc
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
    test_labelled = ctx.labelled_eval("test", args.test_samples)
    if test_labelled is not None:
        metrics["test_labelled"] = {**evaluate_labelled(model, test_labelled),
                                    "specs": ctx.labelled_specs}
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
        metrics=metrics,
        extra={"architecture": args.arch, "train_window": args.train_size,
               "initialized_from": str(args.init_from) if args.init_from else None},
        onnx_metrics=lambda path: onnx_test_metrics(ctx, path))
    out = export_branch(model, example, spec, args.models_dir)
    print(f"exported {out}")


def onnx_test_metrics(ctx: RunContext, path) -> dict:
    """The exported file's own test metrics (float16-stored weights), to check they hold."""
    from training.export import onnx_outputs

    test = held_out_samples(ctx.sampler("test"), ctx.args.test_samples)
    logits = np.concatenate([
        onnx_outputs(path, {"image": visual_input([s.crop for s in test[i : i + 32]])})[0][:, 0]
        for i in range(0, len(test), 32)])
    return {"test_pseudo_fakes": binary_metrics(np.array([s.label for s in test]),
                                                1 / (1 + np.exp(-logits)))}


def load_best(ctx: RunContext) -> VisualDetector:
    model = VisualDetector(ctx.args.arch)
    best = torch.load(ctx.run_dir / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(best["model"])
    return model.eval()


def run(args: argparse.Namespace) -> dict:
    ctx = start_run(BRANCH, args)
    model = load_best(ctx) if args.export_only else train(ctx)
    metrics = measure(ctx, model)
    if args.export or args.export_only:
        export(ctx, model, metrics)
    return metrics
