"""Training: optimiser config, pure helpers, and a plain epoch loop.

The loop here is the simplest that does the job (it makes the bundled demo net); resumable
bursts build on the same helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core import freezing
from core.data import ImageData, augment, to_float

# -----------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # "adam", "adamw" or "sgd" (with momentum)
    lr: float = 1e-3  # base learning rate; blocks scale it by their plan multiplier
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    batch_size: int = 64
    cosine: bool = False  # cosine decay to zero over the planned steps; else constant


OPTIMIZERS = ("adam", "adamw", "sgd")


# -----------------------------------------------------------------------------
# Pure helpers


def make_optimizer(model, cfg: OptimConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """An optimizer over the trainable parameters only, one group per block (see freezing.param_groups)."""
    groups = freezing.param_groups(model, cfg.lr if lr is None else lr)
    if not groups:
        raise ValueError("Nothing to train: the plan freezes every parameter.")
    if cfg.name == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"Optimizer is one of {OPTIMIZERS}, not {cfg.name!r}.")


def lr_factor(step: int, total: int, cosine: bool) -> float:
    """Multiplier on every group's LR at `step` of `total`."""
    if not cosine or total <= 0:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode on uint8 images `x`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = to_float(x[i : i + batch_size].to(device)), y[i : i + batch_size].to(device)
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    return loss_sum / max(len(x), 1), correct / max(len(x), 1)


# -----------------------------------------------------------------------------
# The plain loop


def train_epochs(model, data: ImageData, epochs: int, cfg: OptimConfig, seed: int = 0,
                 on_epoch: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Train `epochs` passes over `data` with the model's current plan; one metrics dict per epoch."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, cfg)
    base = [g["lr"] for g in optimizer.param_groups]
    steps_per_epoch = math.ceil(len(data.train_x) / cfg.batch_size)
    history, step = [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(data.train_x), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = augment(data.train_x[idx], gen, data.config.flip, data.config.crop_pad)
            for g, lr in zip(optimizer.param_groups, base, strict=True):
                g["lr"] = lr * lr_factor(step, epochs * steps_per_epoch, cfg.cosine)
            loss = F.cross_entropy(model(to_float(xb.to(device))), data.train_y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        train_loss, train_acc = evaluate(model, data.train_x, data.train_y)
        val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": val_loss, "val_acc": val_acc}
        history.append(row)
        if on_epoch:
            on_epoch(epoch, row)
    return history
