"""One training loop for the fine-tuned branch models: seeds, CPU or GPU by flag, AdamW (or
Adam) with a warm-up and cosine decay (or a constant rate), checkpoints every few minutes and
resume, a progress bar.

    state = fit(model, batch_fn, FitConfig(steps=600, lr=2e-4), run_dir)

`batch_fn(step, rng)` returns (inputs, targets) as numpy arrays, inputs one array or a
tuple of them (the model's positional arguments); the model returns logits (or a tuple whose
first element is the logit); the loss is binary cross-entropy with label smoothing, unless
`fit` is given another `loss(output, targets)` (a generator's reconstruction loss, say).
Only parameters that require gradients are optimized (a model may freeze part of itself, and
keep it in eval mode by overriding `train`). The
sampler's generator is seeded from (seed, step), so a resumed run draws the same batches it
would have drawn without the interruption, and the next batch is drawn in a thread while the
model trains on this one (the samplers spend their time in OpenCV and ffmpeg, outside the GIL).

A checkpoint records what it was trained on (`data_key`, from `data_key_of` over the trainer's
own inputs) and the settings that shape the model; resuming from one made with other data or
other settings is refused (`StaleCheckpoint`), so a run folder never silently continues, or
hands back as finished, a model of something else.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

CHECKPOINT = "checkpoint.pt"


@dataclass
class FitConfig:
    steps: int
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    checkpoint_seconds: float = 120.0
    label_smoothing: float = 0.05
    optimizer: str = "adamw"
    """adamw (decoupled weight decay) or adam (weight decay as an L2 term)."""
    schedule: str = "cosine"
    """cosine (decay to 5% of lr after the warm-up) or constant."""


# how a run executes, not what it learns: free to differ between a run and its resume
RUN_ONLY = ("device", "threads", "checkpoint_seconds")


class StaleCheckpoint(RuntimeError):
    """The run folder's checkpoint was trained on other data or with other settings."""


def loop_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The command line every trainer on this loop takes: --recipe, --device and
    --steps-scale (a trainer adds its own arguments)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every schedule (0.01 for a smoke run)")
    return parser


def data_key_of(*parts: Any) -> str:
    """A digest of a trainer's inputs: numpy arrays by dtype, shape and bytes, anything else by
    its JSON form (sorted keys)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(part, (list, tuple)) and part and all(isinstance(a, np.ndarray)
                                                                for a in part):
            for a in part:
                h.update(data_key_of(a).encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


def check_resumable(state: dict[str, Any], cfg: FitConfig, data_key: str, ckpt: Path) -> None:
    """Refuse a checkpoint made from other data or with settings that change the model.
    Checkpoints written before keys were stored carry neither and are taken as they are."""
    stored = state.get("data_key")
    if stored is None:
        return
    if stored != data_key:
        raise StaleCheckpoint(f"{ckpt} holds a model trained on other data; delete its folder "
                              "to train again")
    before = {k: v for k, v in state.get("config", {}).items() if k not in RUN_ONLY}
    now = {k: v for k, v in asdict(cfg).items() if k not in RUN_ONLY}
    changed = sorted(k for k in now if k in before and before[k] != now[k])
    if changed:
        raise StaleCheckpoint(f"{ckpt} was trained with other settings ("
                              + ", ".join(f"{k}: {before[k]} -> {now[k]}" for k in changed)
                              + "); delete its folder to train again")


def load_weights(model: nn.Module, run_dir: Path) -> nn.Module:
    """`model` with the weights of run_dir's checkpoint (a finished or interrupted fit), on
    the CPU."""
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return model


OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
SCHEDULES = ("cosine", "constant")


def lr_at(step: int, cfg: FitConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


Inputs = np.ndarray | tuple[np.ndarray, ...]
BatchFn = Callable[[int, np.random.Generator], tuple[Inputs, np.ndarray]]
Loss = Callable[[Any, torch.Tensor], torch.Tensor]
"""(the model's output, the batch's targets as a float32 tensor) -> a scalar loss."""


def smoothed_bce(smoothing: float) -> Loss:
    """The default loss: binary cross-entropy of the (first) logit against targets pulled
    `smoothing` of the way towards 0.5."""
    bce = nn.BCEWithLogitsLoss()

    def loss(out: Any, target: torch.Tensor) -> torch.Tensor:
        logit = (out[0] if isinstance(out, tuple) else out).reshape(-1)
        return bce(logit, target.reshape(-1) * (1 - smoothing) + 0.5 * smoothing)

    return loss


def fit(model: nn.Module, batch_fn: BatchFn, cfg: FitConfig, run_dir: Path,
        data_key: str = "", loss: Loss | None = None) -> dict[str, float]:
    """Train `model` in place for cfg.steps (resuming from run_dir/checkpoint.pt when it was
    made from the same `data_key` and settings, else StaleCheckpoint) on `loss` (default
    `smoothed_bce(cfg.label_smoothing)`); returns the loss history summary. The final weights
    are in the model and in the checkpoint."""
    if cfg.optimizer not in OPTIMIZERS or cfg.schedule not in SCHEDULES:
        raise ValueError(f"optimizer {cfg.optimizer!r} / schedule {cfg.schedule!r}: expected "
                         f"one of {sorted(OPTIMIZERS)} / {SCHEDULES}")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    model.to(device)
    opt = OPTIMIZERS[cfg.optimizer]([p for p in model.parameters() if p.requires_grad],
                                    lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, losses = 0, []
    ckpt = run_dir / CHECKPOINT
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        check_resumable(state, cfg, data_key, ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, losses = state["step"], state["losses"]
    loss_fn = loss or smoothed_bce(cfg.label_smoothing)
    last_save = time.monotonic()

    def save(step: int) -> None:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "losses": losses, "config": asdict(cfg),
                    "data_key": data_key}, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)

    model.train()

    def draw(step: int) -> tuple[Inputs, np.ndarray]:
        return batch_fn(step, np.random.default_rng([cfg.seed, step]))

    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=run_dir.name)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") as ahead:
        pending = ahead.submit(draw, start) if start < cfg.steps else None
        for step in bar:
            assert pending is not None
            x, y = pending.result()
            if step + 1 < cfg.steps:
                pending = ahead.submit(draw, step + 1)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            out = model(*(torch.from_numpy(a).to(device)
                          for a in (x if isinstance(x, tuple) else (x,))))
            value = loss_fn(out, torch.from_numpy(y.astype(np.float32)).to(device))
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            losses.append(float(value.item()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if time.monotonic() - last_save > cfg.checkpoint_seconds:
                save(step + 1)
                last_save = time.monotonic()
    save(cfg.steps)
    model.eval()
    summary = {"steps": cfg.steps, "final_loss_mean20": float(np.mean(losses[-20:]))}
    (run_dir / "fit.json").write_text(json.dumps(summary | {"config": asdict(cfg)}, indent=1))
    return summary
