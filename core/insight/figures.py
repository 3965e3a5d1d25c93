"""Static figures for export (PNG), drawn with matplotlib so they need no browser."""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, safe from any thread

from core.store.runs import run_names


def curves_png(curves: pd.DataFrame, x: str = "epoch") -> bytes:
    """Loss and accuracy (train dashed, validation solid) of every run in `curves` (Metrics.curves)."""
    fig = Figure(figsize=(11, 4), dpi=120)
    ax_loss, ax_acc = fig.subplots(1, 2)
    names = run_names(curves)
    for run_id, run in curves.groupby("run_id", sort=False):
        label = names[run_id]
        line, = ax_loss.plot(run[x], run["val_loss"], marker="o", ms=3, label=label)
        ax_loss.plot(run[x], run["train_loss"], ls="--", color=line.get_color(), alpha=0.6)
        ax_acc.plot(run[x], run["val_acc"], marker="o", ms=3, color=line.get_color(), label=label)
        ax_acc.plot(run[x], run["train_acc"], ls="--", color=line.get_color(), alpha=0.6)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel(x)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(fontsize=8, loc="lower right")
    ax_loss.set_title("loss (dashed: train, solid: validation)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
