"""Train the MRI-GAN: the U-Net generator against 1 - SSIM target maps (zeros for real faces)
with a conditional PatchGAN and L1 + SSIM losses, then the classifier over generated maps;
evaluate and export generator + classifier as one graph.

CPU budget: the generator is fully convolutional and trained on random `--train-size`
windows (default 128) of the 256 input and target; maps for the classifier and every
evaluation are made at the full 256.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dfmesh.preprocess.tensors import MRI_SIZE, mri_input
from training import reproduce
from training.common import (
    RunContext,
    add_common_arguments,
    cosine_lr,
    held_out_samples,
    load_checkpoint,
    load_dev_set,
    random_windows,
    save_checkpoint,
    start_run,
)
from training.data.pseudo import Sample
from training.export import ExportSpec, TensorSpec, export_branch
from training.models.mri import (
    MapClassifier,
    MRIDetector,
    PatchDiscriminator,
    UNetGenerator,
    ssim_loss,
)
from training.scoring import binary_metrics

BRANCH = "mri"
L1_WEIGHT, SSIM_WEIGHT, ADV_WEIGHT = 10.0, 1.0, 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--train-size", type=int, default=128, help="random window side (x16)")
    parser.add_argument("--classifier-samples", type=int, default=480,
                        help="train samples whose 256 maps train the classifier")
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.set_defaults(batch_size=8, lr=1e-3)


def to_tensors(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(mri_input([s.crop for s in samples]))
    maps = torch.from_numpy(np.stack([s.target_map for s in samples])[:, None])
    labels = torch.tensor([[float(s.label)] for s in samples])
    return images, maps, labels


def generate_maps(generator: UNetGenerator, crops: Sequence[np.ndarray],
                  batch_size: int = 8) -> torch.Tensor:
    generator.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch_size):
            out.append(generator(torch.from_numpy(mri_input(crops[i : i + batch_size]))))
    return torch.cat(out)


def train_generator(ctx: RunContext, generator: UNetGenerator,
                    discriminator: PatchDiscriminator) -> dict:
    args = ctx.args
    opt_g = torch.optim.AdamW(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.AdamW(discriminator.parameters(), lr=args.lr / 2, betas=(0.5, 0.999))
    total = args.epochs * args.steps_per_epoch
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: cosine_lr(s, total))
    start_epoch, best_l1, history = 0, float("inf"), []
    state = load_checkpoint(ctx)
    if state:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sched_g.load_state_dict(state["sched_g"])
        start_epoch, best_l1, history = state["epoch"], state["best_l1"], state["history"]
    sampler = ctx.sampler("train")
    val = held_out_samples(ctx.sampler("val"), args.val_samples)
    val_targets = torch.from_numpy(np.stack([s.target_map for s in val])[:, None])
    for epoch in range(start_epoch, args.epochs):
        generator.train()
        discriminator.train()
        rng = np.random.default_rng([args.seed, epoch])
        bar = tqdm(range(args.steps_per_epoch), desc=f"mri GAN epoch {epoch + 1}/{args.epochs}")
        logs = []
        for step in bar:
            first = step * args.batch_size
            samples = [sampler.sample(epoch, first + j) for j in range(args.batch_size)]
            images, targets, _ = to_tensors(samples)
            images, targets = random_windows(images, targets, args.train_size, rng)
            pred = generator(images)
            d_real = discriminator(images, targets)
            d_fake = discriminator(images, pred.detach())
            loss_d = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            d_pred = discriminator(images, pred)
            adv = F.binary_cross_entropy_with_logits(d_pred, torch.ones_like(d_pred))
            l1 = F.l1_loss(pred, targets)
            loss_g = L1_WEIGHT * l1 + SSIM_WEIGHT * ssim_loss(pred, targets) + ADV_WEIGHT * adv
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            sched_g.step()
            logs.append((loss_g.item(), l1.item(), loss_d.item()))
            recent = np.mean(logs[-20:], axis=0)
            bar.set_postfix(g=f"{recent[0]:.3f}", l1=f"{recent[1]:.4f}", d=f"{recent[2]:.3f}")
        val_l1 = float(F.l1_loss(generate_maps(generator, [s.crop for s in val]), val_targets))
        history.append({"epoch": epoch + 1, "train": np.mean(logs, axis=0).tolist(),
                        "val_map_l1": val_l1})
        print(f"epoch {epoch + 1}: (G, L1, D) {np.mean(logs, axis=0)}, val map L1 {val_l1:.4f}")
        if val_l1 < best_l1:
            best_l1 = val_l1
            save_checkpoint(ctx.run_dir / "best_generator.pt", generator=generator.state_dict(),
                            epoch=epoch + 1)
        save_checkpoint(ctx.checkpoint_path, generator=generator.state_dict(),
                        discriminator=discriminator.state_dict(), opt_g=opt_g.state_dict(),
                        opt_d=opt_d.state_dict(), sched_g=sched_g.state_dict(),
                        epoch=epoch + 1, best_l1=best_l1, history=history)
    best = torch.load(ctx.run_dir / "best_generator.pt", weights_only=False)
    generator.load_state_dict(best["generator"])
    return {"history": history, "best_val_map_l1": best_l1}


def train_classifier(ctx: RunContext, generator: UNetGenerator) -> MapClassifier:
    """The map classifier on the (frozen) generator's full-size maps of train samples, kept
    at the epoch with the lowest validation log-loss (it overfits a few hundred maps fast,
    and an overfit classifier is a badly calibrated one)."""
    args = ctx.args
    sampler = ctx.sampler("train")
    samples = [sampler.sample(HELD_TRAIN_EPOCH, i, label=i % 2)
               for i in range(args.classifier_samples)]
    maps = generate_maps(generator, [s.crop for s in samples])
    labels = torch.tensor([[float(s.label)] for s in samples])
    val = held_out_samples(ctx.sampler("val"), args.val_samples)
    val_maps = generate_maps(generator, [s.crop for s in val])
    val_labels = torch.tensor([[float(s.label)] for s in val])
    classifier = MapClassifier()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)
    best_loss, best_state, history = float("inf"), None, []
    for epoch in tqdm(range(args.classifier_epochs), desc="mri classifier"):
        classifier.train()
        for idx in torch.randperm(len(maps), generator=gen).split(32):
            loss = F.binary_cross_entropy_with_logits(classifier(maps[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        classifier.eval()
        with torch.no_grad():
            val_loss = float(F.binary_cross_entropy_with_logits(classifier(val_maps), val_labels))
        history.append({"epoch": epoch + 1, "val_log_loss": val_loss})
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.clone() for k, v in classifier.state_dict().items()}
    assert best_state is not None
    classifier.load_state_dict(best_state)
    ctx.write_json("classifier_history.json", history)
    print(f"mri classifier: best validation log-loss {best_loss:.4f} "
          f"(epoch {min(history, key=lambda h: h['val_log_loss'])['epoch']})")
    return classifier.eval()


HELD_TRAIN_EPOCH = 999_999
"""Epoch number of the train-split samples the classifier learns from (not a GAN epoch)."""


def predict(model: MRIDetector, crops: Sequence[np.ndarray], batch_size: int = 8
            ) -> tuple[np.ndarray, np.ndarray]:
    """(P(fake) [N], maps [N, 256, 256]) through the serving preprocessing."""
    model.eval()
    probs, maps = [], []
    with torch.no_grad():
        for i in range(0, len(crops), batch_size):
            m, logit = model(torch.from_numpy(mri_input(crops[i : i + batch_size])))
            probs.append(torch.sigmoid(logit)[:, 0].numpy())
            maps.append(m[:, 0].numpy())
    return np.concatenate(probs), np.concatenate(maps)


def measure(ctx: RunContext, model: MRIDetector) -> dict:
    test = held_out_samples(ctx.sampler("test"), ctx.args.test_samples)
    probs, maps = predict(model, [s.crop for s in test])
    labels = np.array([s.label for s in test])
    targets = np.stack([s.target_map for s in test])
    metrics = {"test_pseudo_fakes": {
        **binary_metrics(labels, probs),
        "map_l1": float(np.abs(maps - targets).mean()),
        "mean_map_real": float(maps[labels == 0].mean()),
        "mean_map_fake": float(maps[labels == 1].mean()),
    }}
    if not ctx.args.no_dev:
        crops, dev_labels = load_dev_set()
        if crops:
            dev_probs, dev_maps = predict(model, crops)
            metrics["dev_sanity"] = {**binary_metrics(dev_labels, dev_probs),
                                     "mean_map_real": float(dev_maps[dev_labels == 0].mean()),
                                     "mean_map_fake": float(dev_maps[dev_labels == 1].mean())}
    ctx.write_json("metrics.json", metrics)
    print(metrics)
    return metrics


def export(ctx: RunContext, model: MRIDetector, metrics: dict) -> None:
    args = ctx.args
    crops = [s.crop for s in held_out_samples(ctx.sampler("val"), 2)]
    example = (torch.from_numpy(mri_input(crops)),)
    spec = ExportSpec(
        name="mri-gan-unet", branch=BRANCH, version=args.version,
        inputs=[TensorSpec("image", ["batch", 3, MRI_SIZE, MRI_SIZE])],
        outputs=[TensorSpec("mri_map", ["batch", 1, MRI_SIZE, MRI_SIZE]),
                 TensorSpec("logit", ["batch", 1])],
        preprocessing={"function": "dfmesh.preprocess.tensors.mri_input",
                       "input": "uint8 RGB face crops from dfmesh.preprocess.geometry.face_crop "
                                "(256x256)",
                       "size": MRI_SIZE, "normalization": "ImageNet mean/std",
                       "layout": "NCHW float32",
                       "output": "mri_map in [0, 1] (near 0 for real faces, bright where "
                                 "synthesized); sigmoid(logit) = P(fake)"},
        training_data={**ctx.training_data_summary(),
                       "targets": "1 - SSIM(pseudo-fake, its real source) on luma, "
                                  "zeros for real faces"},
        metrics=metrics, fp16_weights=False,
        extra={"architecture": "U-Net generator (16-32-64-128) + map CNN classifier; "
                               "PatchGAN discriminator used in training only"}
        | reproduce.manifest_entry(BRANCH, args.version))
    print(f"exported {export_branch(model, example, spec, args.models_dir)}")


def run(args: argparse.Namespace) -> dict:
    if getattr(args, "labelled", None):
        # a labelled fake has no real source face, so no 1 - SSIM target to learn from
        raise SystemExit("--labelled: the mri trainer learns 1 - SSIM(fake, its real source) "
                         "maps; labelled fakes have no real source. Train visual or tiny_gate "
                         "on labelled data, and mri without --labelled.")
    ctx = start_run(BRANCH, args)
    if args.export_only:
        model = MRIDetector()
        if (ctx.run_dir / "detector.pt").is_file():
            model.load_state_dict(torch.load(ctx.run_dir / "detector.pt",
                                             weights_only=False)["model"])
        else:  # mid-run: the best generator so far, with a classifier fitted to it now
            best = torch.load(ctx.run_dir / "best_generator.pt", weights_only=False)
            model.generator.load_state_dict(best["generator"])
            model.classifier = train_classifier(ctx, model.generator)
        model.eval()
        metrics = measure(ctx, model)
        export(ctx, model, metrics)
        return metrics
    generator, discriminator = UNetGenerator(), PatchDiscriminator()
    gan = train_generator(ctx, generator, discriminator)
    classifier = train_classifier(ctx, generator)
    model = MRIDetector(generator, classifier).eval()
    save_checkpoint(ctx.run_dir / "detector.pt", model=model.state_dict())
    ctx.write_json("history.json", gan)
    metrics = measure(ctx, model)
    if args.export:
        export(ctx, model, metrics)
    return metrics
