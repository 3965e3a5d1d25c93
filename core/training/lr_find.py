"""The learning-rate range test (Smith, 2017, "Cyclical Learning Rates for Training Neural Networks";
fastai's `lr_find`): train a run's configuration for a few dozen steps while the learning rate grows
exponentially, record the loss at each, and suggest a rate a little below where the loss falls fastest.

    table = lr_range_test(cfg, data)        # lr, loss, smoothed
    lr = suggest(table)

It runs the real burst loop one step at a time (feature cache, frozen prefix and per-block multipliers
included), so the rate it suggests is for what this configuration trains.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from core.data.datasets import ImageData
from core.runtime.download import Progress
from core.training.config import RunConfig
from core.training.events import StepEnd
from core.training.loop import run_burst, start_run

SMOOTHING = 0.3  # weight of each new loss in the exponential moving average the suggestion reads


def lr_range_test(cfg: RunConfig, data: ImageData | None = None, start: float = 1e-6, end: float = 1.0,
                  steps: int = 60, progress: Progress | None = None) -> pd.DataFrame:
    """lr, loss, smoothed: one row per step until `end` or until the loss diverges (the run's own test:
    a hundred times its start, or not a number). Only the first phase of `cfg` is tested."""
    if not 0 < start < end:
        raise ValueError(f"The range test needs 0 < start < end, not {start} and {end}.")
    if steps < 5:
        raise ValueError(f"The range test needs at least 5 steps, not {steps}.")
    first = dataclasses.replace(cfg.phases[0], epochs=None, lr=cfg.optim.lr)
    cfg = dataclasses.replace(cfg, phases=(first,), epochs=10**6, patience=None)
    state = start_run(cfg, data)
    shares = [g["base_lr"] / cfg.optim.lr for g in state.optimizer.param_groups]  # per-block multipliers
    rows, avg = [], None
    for i in range(steps):
        lr = start * (end / start) ** (i / (steps - 1))
        for group, share in zip(state.optimizer.param_groups, shares, strict=True):
            group["base_lr"] = lr * share
        done = [e for e in run_burst(state, steps=1) if isinstance(e, StepEnd)]
        if not done or state.done:
            break
        loss = done[-1].loss
        avg = loss if avg is None else SMOOTHING * loss + (1 - SMOOTHING) * avg
        rows.append({"lr": lr, "loss": loss, "smoothed": avg})
        if progress:
            progress(i + 1, steps, f"learning rate {lr:.1e}")
        if avg > 4 * min(r["smoothed"] for r in rows):  # well past the minimum: the rest says nothing
            break
    return pd.DataFrame(rows, columns=["lr", "loss", "smoothed"])


def suggest(table: pd.DataFrame) -> float:
    """A tenth of the rate at which the smoothed loss was lowest (the rule fastai's lr_find first used):
    below where training becomes unstable, well above where it barely moves."""
    if table.empty:
        raise ValueError("The range test recorded no step.")
    return float(table.loc[table.smoothed.idxmin(), "lr"] / 10)
