"""How each step reads its numbers: from this browser's runs of a set (found by the part each plays), the run
store, and what is computed from checkpoints or measured. A reader returns a Reading: the plain numbers its
reveal is a function of, and what its chart draws; Missing, in words, when what it needs is not there.

The app reads through a `Lab` (ui/lesson.py: its caches, this browser's runs); a test or a tool can pass any
object with the same methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from core.experiments import studies
from core.insight import attribution as A
from core.insight import explain as E
from core.lesson.reveals import RACE_CHOICES
from core.lesson.runs import BATCHNORM, DEPTH, RACE, RunSet
from core.store.runs import RunStore

if TYPE_CHECKING:
    import torch
    from torch import nn

    from core.data.datasets import ImageData


class Missing(Exception):
    """What a step needs is not there (say, checkpoints the race did not keep); the message says what, in words."""


NEEDS_THE_RACE = "This step needs the race's checkpoints: run step 1 first."
NO_SOURCE_HEAD = ("This step needs a race whose pretrained weights kept their source task's head (the offline "
                  "demo's do: the demo net learned digits 0-4); these runs' weights did not. Run the race on the "
                  "offline demo to see it.")
COST_BATCH = 20  # images per step in the cost step's measurement: the lesson's batch size


@dataclass
class Maps:
    image: torch.Tensor  # the uint8 validation image explained
    true_class: str
    maps: dict[str, np.ndarray]  # by the part each run plays: Grad-CAM of the true class, scaled to [0, 1]
    spearman: float  # of the maps as computed
    overlap: float  # the share of their top 10% pixels in common
    sanity: dict[str, str]  # by the part each run plays: the sanity check's verdict


class Lab(Protocol):
    """What a step's reader reads from."""
    store: RunStore

    def runs(self, run_set: RunSet) -> dict[str, str]:
        """This browser's runs of a set by the part each plays, once every one has finished ({} before)."""

    def curves(self, run_ids: list[str]) -> pd.DataFrame:
        """The runs' epoch curves (Metrics.curves)."""

    def forgetting(self, run_id: str) -> pd.DataFrame | None:
        """A run's source-task accuracy over its kept steps (insight.inside.forgetting); None without one."""

    def maps(self, runs: dict[str, str]) -> Maps | None:
        """Grad-CAM of two runs (by part) on one image (`maps_of`); None before both have checkpoints."""

    def cost(self) -> pd.DataFrame:
        """Cost against depth of the lesson's network, batch COST_BATCH (insight.inside.freeze_cost)."""


@dataclass(frozen=True)
class Reading:
    numbers: dict[str, Any]  # the step's reveal's arguments: plain numbers (and their spreads), by name
    shown: Any  # what the step's chart draws (its Chart kind says what that is)


# -----------------------------------------------------------------------------
# From the run store


def final_accuracies(store: RunStore, runs: dict[str, str]) -> dict[str, float]:
    """Each run's final validation accuracy (the run store's `val_acc`, as every table shows it), by the part it
    plays (`runs`: part -> run id), in that order; runs with no epoch left out."""
    table = store.runs().set_index("id")["val_acc"]
    return {part: float(table[r]) for part, r in runs.items() if r in table.index and pd.notna(table[r])}


def last_drift(store: RunStore, run_id: str) -> dict[str, float]:
    """A run's weight drift per block (the head last) at its last recorded epoch."""
    stats = store.metrics.block_stats([run_id])
    last = stats[stats.epoch == stats.epoch.max()]
    return {row.block: float(row.drift) for row in last.itertuples()}


def bn_policy_numbers(store: RunStore, runs: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """(final accuracy, mean BatchNorm drift of the frozen blocks at the last epoch), each by policy (`runs`:
    policy -> run id)."""
    finals, drifts = {}, {}
    for policy, accuracy in final_accuracies(store, runs).items():
        plan = store.config(runs[policy]).phases[0].plan
        finals[policy] = accuracy
        stats = store.metrics.block_stats([runs[policy]])
        last = stats[(stats.epoch == stats.epoch.max()) & ~stats.block.isin([*plan.trainable, "head"])]
        drifts[policy] = float(last.bn_drift.mean()) if last.bn_drift.notna().any() else 0.0
    return finals, drifts


def depth_numbers(runs: pd.DataFrame) -> tuple[dict[int, float], float, float]:
    """(mean final accuracy by frozen depth, the seeds' standard deviation averaged over depths, the from-scratch
    control's mean) of a depth sweep's runs (studies.sweep_runs)."""
    done = runs[runs.val_acc.notna()]
    frozen = done[done.depth.notna()]
    by_depth = frozen.groupby("depth").val_acc
    means = {int(k): float(v) for k, v in by_depth.mean().items()}
    spread = float(by_depth.std().mean()) if len(frozen) > len(means) else 0.0
    scratch = done[done.depth.isna()].val_acc.mean()
    return means, spread, float(scratch) if pd.notna(scratch) else math.nan


# -----------------------------------------------------------------------------
# From checkpoints


def maps_of(models: dict[str, nn.Module], data: ImageData, index: int = 0) -> Maps:
    """Grad-CAM maps of validation image `index`'s true class for each model (by part; two), how alike they are,
    and each one's sanity check over that image and the next two."""
    cfg = A.AttributionConfig()
    image, target = data.val_x[index], int(data.val_y[index])
    explained = E.explain_runs(models, image, cfg, target)
    maps = {name: run.result.maps[0].numpy() for name, run in explained.items()}
    first, second = maps.values()
    images, targets = E.sanity_images(image, target, "true", data)
    sanity = {name: A.sanity_check(model, images, cfg, targets).verdict for name, model in models.items()}
    shown = {name: A.normalize(m) for name, m in maps.items()}
    alike = A.similarity(first, second)
    return Maps(image, data.classes[target], shown, alike["spearman"], alike["top_k_overlap"], sanity)


# -----------------------------------------------------------------------------
# Each step's reader


def read_race(lab: Lab) -> Reading:
    runs = lab.runs(RACE)
    return Reading({"finals": final_accuracies(lab.store, runs)}, lab.curves(list(runs.values())))


def read_boundary(lab: Lab) -> Reading:
    """The race's fine-tuning run: each block's weight drift at its last epoch, and the blocks it trains."""
    tuned = lab.runs(RACE).get(RACE_CHOICES[1])
    if tuned is None:
        raise Missing(NEEDS_THE_RACE)
    drift = last_drift(lab.store, tuned)
    trainable = lab.store.config(tuned).phases[0].plan.trainable
    return Reading({"drift": drift, "trainable": trainable}, drift)


def read_batchnorm(lab: Lab) -> Reading:
    runs = lab.runs(BATCHNORM)
    finals, drifts = bn_policy_numbers(lab.store, runs)
    return Reading({"finals": finals, "frozen_bn_drift": drifts}, lab.curves(list(runs.values())))


def read_depth(lab: Lab) -> Reading:
    runs = studies.sweep_runs(lab.store, list(lab.runs(DEPTH).values()))
    means, spread, scratch = depth_numbers(runs)
    return Reading({"mean_by_depth": means, "spread": spread, "scratch": scratch}, runs)


def read_forgetting(lab: Lab) -> Reading:
    """Source-task accuracy over the kept steps of the race's frozen and fine-tuned runs."""
    runs, tables = lab.runs(RACE), {}
    for part in RACE_CHOICES[:2]:
        table = lab.forgetting(runs[part]) if part in runs else None
        if table is not None and not table.empty:
            tables[part] = table
    if len(tables) < 2:
        raise Missing(NO_SOURCE_HEAD if runs and not tables else NEEDS_THE_RACE)
    return Reading({"source_before": {k: float(t.accuracy.iloc[0]) for k, t in tables.items()},
                    "source_after": {k: float(t.accuracy.iloc[-1]) for k, t in tables.items()}}, tables)


def read_maps(lab: Lab) -> Reading:
    """Grad-CAM of the race's frozen and fine-tuned runs on one image, with their sanity checks."""
    runs = lab.runs(RACE)
    both = {part: runs[part] for part in RACE_CHOICES[:2] if part in runs}
    found = lab.maps(both) if len(both) == 2 else None
    if found is None:
        raise Missing(NEEDS_THE_RACE)
    return Reading({"spearman": found.spearman, "overlap": found.overlap, "sanity": found.sanity}, found)


def read_cost(lab: Lab) -> Reading:
    """A training step's cost with nothing frozen and with the backbone frozen (medians and their spread), and,
    once the race has ended, what freezing cost there in accuracy (as step 1 says it: two decimals)."""
    table = lab.cost()
    finals = final_accuracies(lab.store, lab.runs(RACE))
    gap = round(finals[RACE_CHOICES[1]], 2) - round(finals[RACE_CHOICES[0]], 2) if len(finals) == 3 else None
    first, last = table.iloc[0], table.iloc[-1]
    return Reading({"step_s_none_frozen": float(first.step_s), "step_s_all_frozen": float(last.step_s),
                    "spread_s": float(first.step_spread_s + last.step_spread_s), "accuracy_gap": gap}, table)
