"""What a trained model does: predictions, confusion matrices, per-class accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.data.datasets import to_float
from core.runtime.device import autocast
from core.store.status import RunStatus

if TYPE_CHECKING:  # the words and tables below serve pages that draw before torch is loaded
    import torch


def predict(model, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (N, C) for uint8 images `x`, in eval mode."""
    import torch

    from core.models.network import evaluating

    device = model.mean.device
    out = []
    with evaluating(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            with autocast(device):
                out.append(model(to_float(x[i : i + batch_size].to(device))).float().softmax(1).cpu())
    return torch.cat(out)


def results_in_words(runs) -> str:
    """The winner of a comparison named with its numbers, and how far behind each other run is, from a run
    table (RunStore.runs rows: label, val_acc, trainable, seconds, epochs, status): every figure said is in the
    table. "So far" while any run has not finished; a tie where two lead within half a point."""
    done = runs.dropna(subset=["val_acc"]).sort_values("val_acc", ascending=False)
    if done.empty:
        return ""
    best = done.iloc[0]
    so_far = "" if (runs.status == RunStatus.FINISHED).all() else " so far"
    said = (f"**{best.label}** leads{so_far} with {best.val_acc:.3f} validation accuracy after {best.epochs:g} "
            f"epochs, training {int(best.trainable):,} parameters in {best.seconds:.1f} s.")
    for row in done.iloc[1:].itertuples():
        gap = 100 * (best.val_acc - row.val_acc)
        said += (f" {row.label}: {row.val_acc:.3f}" + (", level with it (within half a point)" if gap < 0.5
                 else f", {gap:.1f} points behind") + f" ({int(row.trainable):,} parameters, {row.seconds:.1f} s).")
    return said


READABLE_RUNS = 5  # runs a chart shows at first: more piles up labels and repeats colours


def default_selection(group: list[str], visible: list[str], at_most: int = READABLE_RUNS) -> list[str]:
    """The runs a comparison shows at first: those of the group on show (else the first visible ones), at most
    `at_most` of them, spread over the group (a sweep's depths, not its first few) and in its order."""
    pool = [r for r in group if r in visible] or list(visible)
    if len(pool) <= at_most:
        return pool
    picks = sorted({round(i * (len(pool) - 1) / (at_most - 1)) for i in range(at_most)})
    return [pool[i] for i in picks]


def mean_by_setting(curves, setting: dict[str, str]):
    """Curves (Metrics.curves rows) averaged over the runs of each setting (`setting`: run id -> its setting,
    e.g. a sweep's "3 frozen"), one line per setting: a sweep's seeds read as one curve each, where the epochs
    of every seed are recorded (an epoch only some seeds reached is left out, not averaged over fewer)."""
    import pandas as pd

    rows = curves[curves.run_id.isin(setting)].assign(setting=lambda t: t.run_id.map(setting))
    if rows.empty:
        return curves.iloc[0:0]
    seeds = rows.groupby("setting").run_id.nunique()
    numeric = [c for c in rows.columns if c not in ("run_id", "label", "recipe", "setting", "epoch")]
    mean = rows.groupby(["setting", "epoch"], sort=False).agg(
        {**{c: "mean" for c in numeric}, "run_id": "nunique", "recipe": "first"}).reset_index()
    mean = mean[mean.run_id == mean.setting.map(seeds)]  # every seed of the setting has this epoch
    out = mean.assign(label=lambda t: [f"{s} (mean of {seeds[s]})" for s in t.setting], run_id=mean.setting)
    return pd.DataFrame(out.drop(columns="setting"))[list(dict.fromkeys(["run_id", "label", *curves.columns]))]


def every_run_has_a_point(curves) -> float:
    """The least training time by which every run (Metrics.curves rows) has recorded a validation figure:
    where a comparison at equal time shows them all."""
    return float(curves.groupby("run_id").seconds.min().max()) if len(curves) else 0.0


def at_equal_time(curves, seconds: float):
    """Per run (Metrics.curves rows): the last validation figures recorded within `seconds` of training,
    so runs that train at different speeds compare at the same cost; NaN for a run with none by then."""
    import pandas as pd

    rows = []
    for run_id, run in curves.groupby("run_id", sort=False):
        done = run[run.seconds <= seconds]
        last = done.iloc[-1] if len(done) else None
        rows.append({"run_id": run_id, "label": run.label.iloc[0], "recipe": run.get("recipe", run.label).iloc[0],
                     "epoch": last.epoch if last is not None else float("nan"),
                     "val_acc": last.val_acc if last is not None else float("nan")})
    return pd.DataFrame(rows, columns=["run_id", "label", "recipe", "epoch", "val_acc"])


def confusion_matrix(y_true: torch.Tensor | np.ndarray, y_pred: torch.Tensor | np.ndarray, n: int) -> np.ndarray:
    """counts[i, j]: images of class i predicted as class j."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class with no images."""
    totals = matrix.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


OUTCOMES = {
    "all": "all images",
    "correct": "right for every run",
    "wrong": "wrong for some run",
    "disagree": "runs disagree",
}


def pick_images(y: np.ndarray, predictions: list[np.ndarray], cls: int | None = None,
                outcome: str = "all") -> np.ndarray:
    """Indices of images of class `cls` (any when None) whose predictions by the runs match `outcome`."""
    y = np.asarray(y)
    preds = np.stack([np.asarray(p) for p in predictions]) if predictions else np.empty((0, len(y)), dtype=int)
    keep = np.ones(len(y), dtype=bool) if cls is None else y == cls
    if outcome == "correct":
        keep &= (preds == y).all(0)
    elif outcome == "wrong":
        keep &= (preds != y).any(0)
    elif outcome == "disagree":
        keep &= (preds != preds[:1]).any(0)
    elif outcome != "all":
        raise ValueError(f"Outcome is one of {list(OUTCOMES)}, not {outcome!r}.")
    return np.flatnonzero(keep)
