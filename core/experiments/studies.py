"""Experiments: many runs that answer one question together, as lists of RunConfigs for the job manager
(or, for a sweep, Ray Tune: core/execution/ray_engine.py) and tables read back from the run store.

    configs = depth_sweep(data, model, optim, epochs=6, seeds=3)   # Yosinski et al. (2014)
    ...train them...
    sweep_table(store, run_ids)                                    # accuracy against frozen depth

    cfg = pretrain_config(DataConfig(task="source"), "demo", epochs=8)   # A: from scratch on a subset
    ...train it...
    save_to_zoo(store, run_id, "my-digits")                              # into the local zoo
    transfer_comparison("my-digits", "demo", DataConfig(task="target"), ...)   # A -> B, against scratch

Sections: the depth sweep · pretraining into the zoo, and transfer from it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from core import freezing
from core.data.datasets import DataConfig, ImageData, load_data
from core.execution import ray_engine
from core.freezing import FreezePlan, Phase
from core.models import zoo
from core.models.backbones import ModelConfig, block_names
from core.models.network import count_params
from core.store.runs import RunStore
from core.store.status import ENDED, RunStatus
from core.training.config import OptimConfig, RunConfig
from core.training.loop import evaluate, model_from_state

# -----------------------------------------------------------------------------
# Transferability by depth
#
# Yosinski, Clune, Bengio & Lipson (2014), "How transferable are features in deep neural networks?":
# copy the first k layers of a network trained on task A, train the rest on task B, and read B's accuracy
# against k. Here k counts leading backbone blocks kept frozen: k = 0 fine-tunes everything from the
# pretrained weights, k = K (every block) is feature extraction; the control trains the same architecture
# from random weights. Every setting trains at the rate suited to what it trains (freezing.suited_lr) for
# the same budget, unless the caller holds one rate for all.

CONTROL = "from scratch"  # the setting name of the control in a sweep's table


MAX_SWEEP_RUNS = 200  # runs one sweep may create: more is a typo, not a lesson (and hours of a class's machine)


def depth_sweep(data: DataConfig, model: ModelConfig, optim: OptimConfig, epochs: int, seeds: int = 1,
                same_lr: float | None = None, feature_cache: bool = True, bn: str = "frozen") -> list[RunConfig]:
    """One run per number of frozen leading blocks (0 .. K) and a from-scratch control, each `seeds` times
    (seeds 0 .. seeds-1, which set the head's initialisation, the data order and augmentation; the images
    are the same for every run), the frozen blocks' BatchNorm following `bn`. Runs of one setting are
    adjacent."""
    if seeds < 1:
        raise ValueError(f"A sweep needs at least one seed, not {seeds}.")
    if epochs < 1:
        raise ValueError(f"A sweep's runs need at least one epoch each, not {epochs}.")
    blocks = list(block_names(model.backbone))
    total = len(blocks)
    if (total + 2) * seeds > MAX_SWEEP_RUNS:
        raise ValueError(f"{seeds} seeds would make {(total + 2) * seeds:,} runs ({total + 2} settings each); one "
                         f"sweep makes at most {MAX_SWEEP_RUNS}: at most {MAX_SWEEP_RUNS // (total + 2)} seeds for "
                         f"{model.backbone}.")
    configs = []
    for k in range(total + 1):
        plan = FreezePlan.freeze_to(blocks, k, bn=bn)
        lr = same_lr or freezing.suited_lr(plan, blocks)
        configs += [RunConfig(data, model, (Phase(plan, lr=lr),), optim, epochs, seed, feature_cache=feature_cache,
                              label=f"{k} of {total} blocks frozen · seed {seed}") for seed in range(seeds)]
    scratch = replace(model, weights="none")
    lr = same_lr or freezing.suited_lr(FreezePlan.unfreeze(blocks), blocks, from_scratch=True)
    configs += [RunConfig(data, scratch, (Phase(FreezePlan.unfreeze(blocks, bn=bn), lr=lr),), optim, epochs, seed,
                          feature_cache=feature_cache, label=f"From scratch (control) · seed {seed}")
                for seed in range(seeds)]
    return configs


def frozen_depth(cfg: RunConfig) -> int | None:
    """How many leading backbone blocks a run keeps frozen; None for a from-scratch run (the control)."""
    if cfg.model.weights == "none":
        return None
    blocks = block_names(cfg.model.backbone)
    trains = set(cfg.phases[0].plan.trainable)
    return next((i for i, b in enumerate(blocks) if b in trains), len(blocks))


SWEEP_PREFIX = "sweep"  # the group names of sweeps start with it (RunStore.group(prefix=...))
# What the app and the CLI say under a sweep some of whose runs have not had their budget (a fair comparison
# holds it equal).
UNEQUAL_BUDGETS = ("Runs that have not finished show their accuracy at the epoch they reached: compare settings once "
                   "every run has had its whole budget")


def sweep_progress(runs: pd.DataFrame) -> tuple[float, str]:
    """(fraction ended, the line that says so) of a sweep's runs (`sweep_runs`): how many ended, how many were
    stopped (a burst resumes them), and whether some wait for another Ray sweep to end."""
    done = int(runs.status.isin(ENDED).sum())
    stopped = int((runs.status == RunStatus.STOPPED).sum())
    queued = bool((runs.message == ray_engine.QUEUED).any())
    return done / len(runs), (f"{done} of {len(runs)} runs ended"
                              + (f", {stopped} stopped (a burst on the Train page resumes them)" if stopped else "")
                              + (f"; {ray_engine.QUEUED}" if queued else ""))


def setting_of(depth: int | None) -> str:
    """A sweep run's setting, by its frozen depth (`frozen_depth`; None: the from-scratch control)."""
    return CONTROL if depth is None else f"{depth} frozen"


def all_in_sweeps(run_ids: list[str], groups: Mapping[str, str]) -> bool:
    """Whether there are runs and every one belongs to a sweep (`groups`: a run table's id -> group)."""
    return bool(run_ids) and all(str(groups.get(r, "")).startswith(SWEEP_PREFIX) for r in run_ids)


def sweep_settings(store: RunStore, run_ids: list[str], groups: Mapping[str, str]) -> dict[str, str]:
    """Each run's setting ("3 frozen", "from scratch") where every one of `run_ids` belongs to a sweep; {}
    otherwise: runs of other kinds have no setting to average over."""
    if not all_in_sweeps(run_ids, groups):
        return {}
    return {r: setting_of(frozen_depth(store.config(r))) for r in run_ids}


def sweep_runs(store: RunStore, run_ids: list[str]) -> pd.DataFrame:
    """One row per run of a sweep: its setting, frozen depth (None for the control), seed, learning rate,
    status (and its message) and final validation accuracy (NaN before its first epoch)."""
    runs = store.runs().set_index("id").loc[run_ids]
    rows = []
    for run_id in run_ids:
        cfg = store.config(run_id)
        depth = frozen_depth(cfg)
        rows.append({"run_id": run_id, "setting": setting_of(depth),
                     "depth": depth, "order": math.inf if depth is None else depth,
                     "trainable": ", ".join(cfg.phases[0].plan.trainable) or "head only", "lr": cfg.start_lr,
                     "seed": cfg.seed, "status": runs.loc[run_id, "status"], "message": runs.loc[run_id, "message"],
                     "val_acc": runs.loc[run_id, "val_acc"],
                     "finished": runs.loc[run_id, "status"] == RunStatus.FINISHED})
    return pd.DataFrame(rows)


def sweep_table(store: RunStore, run_ids: list[str]) -> pd.DataFrame:
    """Final validation accuracy against frozen depth: one row per setting (depth 0 .. K, then the
    control) with the mean, the spread (standard deviation over seeds; empty with one seed), the range,
    and how many of its runs have finished."""
    long = sweep_runs(store, run_ids)
    table = long.groupby("setting", sort=False).agg(
        order=("order", "first"), trainable=("trainable", "first"), lr=("lr", "first"), runs=("seed", "size"),
        finished=("finished", "sum"), mean_val_acc=("val_acc", "mean"), spread=("val_acc", "std"),
        min_val_acc=("val_acc", "min"), max_val_acc=("val_acc", "max"))
    return table.sort_values("order").drop(columns="order").reset_index()


def sweep_takeaway(table: pd.DataFrame) -> str:
    """What a sweep's table (`sweep_table`) shows, in a sentence or three whose every figure is in it: the best
    setting, the settings within the seeds' spread of it, what freezing every block costs against the best, and
    how the control compares. With one seed there is no spread to judge by, and it says so."""
    rows = table.dropna(subset=["mean_val_acc"])
    if rows.empty:
        return ""
    depths = rows[rows.setting != CONTROL]
    best = depths.loc[depths.mean_val_acc.idxmax()] if len(depths) else rows.iloc[0]
    said = [f"Best: {best.setting} ({best.mean_val_acc:.3f} mean final validation accuracy)."]
    one_seed = int(rows.runs.max()) < 2
    if not one_seed:
        def spread(value: float) -> float:
            return value if value == value else 0.0  # NaN: a setting with one finished seed

        close = [r.setting for r in depths.itertuples() if r.setting != best.setting
                 and best.mean_val_acc - r.mean_val_acc <= max(spread(r.spread), spread(best.spread))]
        if close:
            said.append(f"Within the seeds' spread of it: {', '.join(close)}; the data cannot rank these.")
    everything = depths.iloc[-1] if len(depths) else None
    if everything is not None and everything.setting != best.setting:
        points = 100 * (best.mean_val_acc - everything.mean_val_acc)
        said.append(f"Freezing every block ({everything.setting}) ends {points:.1f} points below the best.")
    control = rows[rows.setting == CONTROL]
    if len(control):
        c = control.iloc[0]
        said.append(f"From scratch ends at {c.mean_val_acc:.3f}"
                    + (f", spread {c.spread:.3f} over seeds." if not one_seed and c.spread == c.spread else "."))
    if one_seed:
        said.append("With one seed there is no spread to judge by: a difference here may be noise; run two seeds "
                    "or more.")
    return " ".join(said)


# -----------------------------------------------------------------------------
# Pretraining into the local zoo (task A), and transfer from it (task B)


def pretrain_config(data: DataConfig, backbone: str, epochs: int, lr: float = 3e-3, batch_size: int = 64,
                    seed: int = 0, label: str = "") -> RunConfig:
    """The backbone from random weights, every block training, cosine decay: what a zoo entry is made by."""
    blocks = block_names(backbone)
    return RunConfig(data=data, model=ModelConfig(backbone, weights="none"),
                     phases=(Phase(FreezePlan.unfreeze(blocks)),),
                     optim=OptimConfig(lr=lr, batch_size=batch_size, cosine=True), epochs=epochs, seed=seed,
                     label=label or f"pretrain {backbone} on {describe_classes(data)}")


def describe_classes(data: DataConfig) -> str:
    """The classes of a data config, in a few words (for labels)."""
    if data.classes:
        shown = ", ".join(data.classes[:4]) + (f" and {len(data.classes) - 4} more" if len(data.classes) > 4 else "")
        return f"{data.source} {shown}"
    if data.source == "demo":
        return {"source": "digits 0-4", "target": "digits 5-9"}.get(data.task, data.task)
    return f"{data.source}, all classes"


def save_to_zoo(store: RunStore, run_id: str, name: str, data: ImageData | None = None, command: str = "",
                root: Path | None = None, replace: bool = False) -> Path:
    """Save a run's latest checkpoint as zoo entry `name`, with a manifest that says what it learned from
    (data config and classes: the Inside page's forgetting reads them), its held-out accuracy, and its
    curve. Refused, in words, before the run has a checkpoint, and for a name taken unless `replace`."""
    zoo.check_new_name(name, root, replace)
    cfg = store.config(run_id)
    saved = store.checkpoints.load(run_id)
    if saved is None:
        raise ValueError(f"Run {run_id} has no checkpoint yet: train it for at least one burst first.")
    data = data or load_data(cfg.data)
    model = model_from_state(cfg, saved["model"], data.num_classes, data.config.image_size)
    val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
    curves = store.metrics.curves([run_id])
    history = [{k: round(float(row[k]), 4) for k in ("epoch", "step", "seconds", "train_loss", "train_acc",
                                                     "val_loss", "val_acc", "lr")} for _, row in curves.iterrows()]
    manifest = {
        "command": command or f"pretrained in FreezeLab, run {run_id}",
        "run_id": run_id,
        "data": dataclasses.asdict(cfg.data),
        "classes": data.classes,
        "train_images": len(data.train_x),
        "heldout_images": len(data.val_x),
        "source_accuracy": round(val_acc, 4),
        "source_loss": round(val_loss, 4),
        "epochs": saved["counters"]["epoch"],
        "optim": dataclasses.asdict(cfg.optim),
        "params": count_params(model),
        "seconds": round(saved["counters"]["seconds"], 1),
        "torch": torch.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "history": history,
    }
    return zoo.save_entry(name, cfg.model.backbone, model.state_dict(), manifest, root, replace)


def transfer_comparison(entry: str, backbone: str, data: DataConfig, optim: OptimConfig, epochs: int,
                        seed: int = 0, keys: tuple[str, ...] = ("feature_extraction", "fine_tune_top", "from_scratch")
                        ) -> list[RunConfig]:
    """Task B from zoo entry `entry`: the presets `keys` with the entry's weights (from scratch keeps its
    random ones), each at its own learning rate, with data, budget and seed held equal."""
    if zoo.entry_dir(entry) is None:
        raise ValueError(f"The model zoo has no entry {entry!r}; pretrain one first.")
    manifest = zoo.read_manifest(entry)
    if manifest.get("backbone", backbone) != backbone:
        raise ValueError(f"Zoo entry {entry!r} holds a {manifest['backbone']}, not a {backbone}.")
    recipes = freezing.recipes_for(block_names(backbone))
    unknown = [k for k in keys if k not in recipes]
    if unknown:
        raise ValueError(f"Unknown presets {unknown}; choose from {', '.join(recipes)}.")
    model = ModelConfig(backbone, weights=f"zoo:{entry}")
    return [RunConfig.from_recipe(recipes[k], data=data, model=model, optim=optim, epochs=epochs, seed=seed,
                                  label=f"{recipes[k].title} from {entry}" if recipes[k].weights is None
                                  else recipes[k].title) for k in keys]
