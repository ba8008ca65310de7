"""A small binary-classifier training loop shared by the audio and sync branches.

AdamW, BCE-with-logits, class-balanced loss weight, fixed seed and one torch thread; keeps the
weights of the epoch with the best validation AUC (ties: lower log-loss).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from training.evaluation.metrics import binary_report, sigmoid

log = logging.getLogger(__name__)
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


@dataclass
class FitResult:
    """The trained module (best validation epoch) and what happened on the way."""

    module: nn.Module
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def predict_logits(module: nn.Module, inputs: tuple[np.ndarray, ...],
                   batch_size: int = 128) -> np.ndarray:
    """Logits [N] of `module` over numpy inputs, in eval mode."""
    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs[0]), batch_size):
            batch = tuple(torch.from_numpy(np.ascontiguousarray(a[start:start + batch_size]))
                          for a in inputs)
            out.append(module(*batch).reshape(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def fit_binary(module: nn.Module, make_epoch: Callable[[int], list[Batch]],
               val_inputs: tuple[np.ndarray, ...], val_labels: np.ndarray, *, epochs: int,
               lr: float = 1e-3, weight_decay: float = 1e-3, pos_weight: float = 1.0,
               max_seconds: float | None = None) -> FitResult:
    """Train with batches from `make_epoch(epoch)`; select the epoch by validation AUC."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    best, best_key, best_epoch, history = None, None, -1, []
    started = time.monotonic()
    for epoch in range(epochs):
        module.train()
        losses = []
        for inputs, labels in make_epoch(epoch):
            optimizer.zero_grad()
            loss = loss_fn(module(*inputs).reshape(-1), labels.float())
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        scheduler.step()
        val = binary_report(val_labels, sigmoid(predict_logits(module, val_inputs)))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                        "val_auc": val["auc"], "val_log_loss": val["log_loss"],
                        "val_accuracy": val["accuracy"]})
        log.info("epoch %d loss %.4f val auc %.4f acc %.3f ll %.4f", epoch, np.mean(losses),
                 val["auc"], val["accuracy"], val["log_loss"])
        key = (np.nan_to_num(val["auc"]), -val["log_loss"])
        if best_key is None or key > best_key:
            best, best_key, best_epoch = copy.deepcopy(module.state_dict()), key, epoch
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            log.info("time budget reached after epoch %d", epoch)
            break
    module.load_state_dict(best)
    module.eval()
    return FitResult(module, best_epoch, history, time.monotonic() - started)
