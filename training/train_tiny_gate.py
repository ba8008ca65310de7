"""Train tiny_gate (Tiny-LaDeDa) on 32x32 patches of real faces and pseudo-fakes; export.

Patch labels come from where the face was changed: a patch of a fake is fake in proportion
to the manipulation mask it covers (full at 30% coverage), every patch of a real face is
real. A multiple-instance term adds the crop's label against the mean of its top patches.
Evaluation is per crop, on the statistics the service reports (mean and p90 of patch
probabilities), and per patch.

With `--labelled SPEC` a share of the training samples are labelled crops of a public dataset
(training.data.labelled). A labelled real face is real in every patch, as any real face. A
labelled fake has no mask: it stays out of the patch loss and teaches through the
multiple-instance term alone (see `batch_tensors`). Validation and test add `val_labelled` /
`test_labelled` (per crop on the p90 statistic, and per file); the best epoch is then chosen
by the labelled validation AUC.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dfmesh.preprocess.patches import (
    TINY_CROP_SIZE,
    TINY_PATCH_SIZE,
    TINY_PATCH_STRIDE,
    patch_grid,
    tiny_patches,
)
from training.common import (
    RunContext,
    add_common_arguments,
    cosine_lr,
    held_out_samples,
    load_checkpoint,
    load_dev_set,
    save_checkpoint,
    start_run,
)
from training.data.labelled import LabelledEvalSet, labelled_metrics
from training.data.pseudo import Sample
from training.export import ExportSpec, TensorSpec, export_branch
from training.fakes.masks import face_hull_points, hull_mask
from training.models.tiny_ladeda import TinyLaDeDa, manifest_preprocessing
from training.scoring import binary_metrics

BRANCH = "tiny_gate"
FULL_COVERAGE = 0.3
TOP_K = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--patches-per-crop", type=int, default=16,
                        help="random patches of each crop's 64 per training step")
    parser.set_defaults(batch_size=32, lr=3e-3)


def patch_targets(mask: np.ndarray, label: int) -> np.ndarray:
    """Soft fake-ness per patch on the tiny_patches grid, from a manipulation mask."""
    if not label:
        return np.zeros(len(patch_grid(TINY_CROP_SIZE, TINY_CROP_SIZE, TINY_PATCH_SIZE,
                                       TINY_PATCH_STRIDE)), np.float32)
    return np.clip(patch_coverage(mask) / FULL_COVERAGE, 0.0, 1.0)


def face_region(landmarks: np.ndarray, size: int = TINY_CROP_SIZE) -> np.ndarray:
    """The inner-face mask of a crop (the same hull manipulations are blended through)."""
    return hull_mask(face_hull_points(landmarks), (size, size))


def patch_coverage(mask: np.ndarray) -> np.ndarray:
    p = TINY_PATCH_SIZE
    return np.array([mask[y : y + p, x : x + p].mean()
                     for y, x in patch_grid(*mask.shape, p, TINY_PATCH_STRIDE)], np.float32)


def batch_tensors(samples: Sequence[Sample], rng: np.random.Generator, per_crop: int = 16
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`per_crop` patches of each crop (three quarters from its face region, the rest from
    anywhere), their targets, the crop labels, and each crop's weight in the patch loss.

    Trained on all 64 patches alike, the model learns "face skin vs background" (the
    manipulations only touch the face) instead of "manipulated"; drawing real and fake
    patches mostly from the face removes that shortcut.

    A labelled fake (mask unknown) gets patch weight 0 and keeps only the crop-level term.
    Calling all its face patches fake would be wrong for every partial manipulation
    (NeuralTextures changes the mouth, a lip-sync fake the lower face) and would teach "a face
    is fake" instead of "this patch was changed"; the top-k term only says that some patches
    are, which is all the label knows.
    """
    n_face = per_crop * 3 // 4
    all_patches, all_targets = [], []
    for s in samples:
        patches, targets = tiny_patches(s.crop), patch_targets(s.mask, s.label)
        inside = np.flatnonzero(patch_coverage(face_region(s.landmarks)) >= 0.5)
        if len(inside) == 0:
            inside = np.arange(len(patches))
        keep = np.concatenate([rng.choice(inside, n_face, replace=len(inside) < n_face),
                               rng.choice(len(patches), per_crop - n_face, replace=False)])
        all_patches.append(patches[keep])
        all_targets.append(targets[keep])
    labels = np.array([s.label for s in samples], np.float32)
    known = np.array([s.mask_known for s in samples], np.float32)
    return (torch.from_numpy(np.stack(all_patches)), torch.from_numpy(np.stack(all_targets)),
            torch.from_numpy(labels), torch.from_numpy(known))


def loss_fn(model: TinyLaDeDa, patches: torch.Tensor, targets: torch.Tensor,
            labels: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """Patch BCE over the crops whose mask is known (`known`, default all) plus half the BCE
    of the crop label against the mean of the top-k patch logits."""
    b, p = patches.shape[:2]
    logits = model(patches.flatten(0, 1)).view(b, p)
    if known is None:
        patch_loss = F.binary_cross_entropy_with_logits(logits, targets)
    else:
        per_crop = F.binary_cross_entropy_with_logits(logits, targets,
                                                      reduction="none").mean(dim=1)
        patch_loss = (per_crop * known).sum() / known.sum().clamp(min=1.0)
    crop_logit = logits.topk(TOP_K, dim=1).values.mean(dim=1)
    return patch_loss + 0.5 * F.binary_cross_entropy_with_logits(crop_logit, labels)


def patch_probs(model: TinyLaDeDa, crops: Sequence[np.ndarray]) -> np.ndarray:
    """[N, P] P(fake) per patch, through the serving preprocessing."""
    model.eval()
    out = []
    with torch.no_grad():
        for crop in crops:
            logits = model(torch.from_numpy(tiny_patches(crop)))
            out.append(torch.sigmoid(logits)[:, 0].numpy())
    return np.stack(out)


def evaluate(model: TinyLaDeDa, crops: Sequence[np.ndarray], labels: np.ndarray,
             masks: Sequence[np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    probs = patch_probs(model, crops)
    out = {"crop_mean": binary_metrics(labels, probs.mean(axis=1)),
           "crop_p90": binary_metrics(labels, np.percentile(probs, 90, axis=1))}
    if masks is not None:
        targets = np.concatenate([patch_targets(m, y) for m, y in zip(masks, labels, strict=True)])
        out["patch"] = binary_metrics(targets >= 0.5, probs.ravel())
    return out


def evaluate_labelled(model: TinyLaDeDa, eval_set: LabelledEvalSet) -> dict:
    """Labelled crops scored by the p90 of their patch probabilities (no masks: no patch
    metrics)."""
    probs = patch_probs(model, eval_set.crops)
    return labelled_metrics(eval_set, np.percentile(probs, 90, axis=1))


def train(ctx: RunContext) -> TinyLaDeDa:
    args = ctx.args
    model = TinyLaDeDa()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
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
    val_labels = np.array([s.label for s in val])
    val_labelled = ctx.labelled_eval("val", args.val_samples)
    for epoch in range(start_epoch, args.epochs):
        model.train()
        losses = []
        rng = np.random.default_rng([args.seed, epoch])
        bar = tqdm(range(args.steps_per_epoch), desc=f"tiny_gate epoch {epoch + 1}/{args.epochs}")
        for step in bar:
            first = step * args.batch_size
            samples = [sampler.sample(epoch, first + j) for j in range(args.batch_size)]
            loss = loss_fn(model, *batch_tensors(samples, rng, args.patches_per_crop))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        val_metrics = evaluate(model, [s.crop for s in val], val_labels, [s.mask for s in val])
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val": val_metrics}
        selection_auc = val_metrics["crop_p90"]["auc"]
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
    model.load_state_dict(torch.load(ctx.run_dir / "best.pt", weights_only=False)["model"])
    return model.eval()


def measure(ctx: RunContext, model: TinyLaDeDa) -> dict:
    test = held_out_samples(ctx.sampler("test"), ctx.args.test_samples)
    metrics = {"test_pseudo_fakes": evaluate(model, [s.crop for s in test],
                                             np.array([s.label for s in test]),
                                             [s.mask for s in test])}
    test_labelled = ctx.labelled_eval("test", ctx.args.test_samples)
    if test_labelled is not None:
        metrics["test_labelled"] = {**evaluate_labelled(model, test_labelled),
                                    "specs": ctx.labelled_specs}
    if not ctx.args.no_dev:
        crops, labels = load_dev_set()
        if crops:
            metrics["dev_sanity"] = evaluate(model, crops, labels)
    ctx.write_json("metrics.json", metrics)
    print(metrics)
    return metrics


def export(ctx: RunContext, model: TinyLaDeDa, metrics: dict) -> None:
    args = ctx.args
    example = (torch.from_numpy(tiny_patches(held_out_samples(ctx.sampler("val"), 1)[0].crop)),)
    spec = ExportSpec(
        name="tiny_gate-tiny-ladeda", branch=BRANCH, version=args.version,
        inputs=[TensorSpec("patches", ["batch", 3, "height", "width"])],
        outputs=[TensorSpec("logit", ["batch", 1])],
        preprocessing=manifest_preprocessing(
            "sigmoid(logit) = P(fake) per patch; the service reports mean, max and p90 over "
            "all patches of a clip"),
        training_data=ctx.training_data_summary(), metrics=metrics, fp16_weights=False,
        keep_torch_state={"class": "training.models.tiny_ladeda.TinyLaDeDa", "kwargs": {}},
        extra={"architecture": "Tiny-LaDeDa",
               "parameters": sum(p.numel() for p in model.parameters())})
    print(f"exported {export_branch(model, example, spec, args.models_dir)}")


def load_best(ctx: RunContext) -> TinyLaDeDa:
    model = TinyLaDeDa()
    model.load_state_dict(torch.load(ctx.run_dir / "best.pt", weights_only=False)["model"])
    return model.eval()


def run(args: argparse.Namespace) -> dict:
    ctx = start_run(BRANCH, args)
    model = load_best(ctx) if args.export_only else train(ctx)
    metrics = measure(ctx, model)
    if args.export or args.export_only:
        export(ctx, model, metrics)
    return metrics
