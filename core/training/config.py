"""What a run is: its configuration (data, model, phases, optimiser, budget) and the comparisons built from it.

    cfg = RunConfig(data=DataConfig(), model=ModelConfig("resnet18"), phases=(Phase(FreezePlan.freeze()),))
    configs = demo_comparison()            # feature extraction, fine-tuning the top two blocks, from scratch
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, replace

from core import freezing
from core.data.datasets import SOURCES, DataConfig
from core.freezing import BN_POLICIES, FreezePlan, Phase, Recipe
from core.models.backbones import ModelConfig, block_names

# -----------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # one of OPTIMIZERS; sgd with momentum
    lr: float = 1e-3  # base learning rate; a phase may set its own, blocks scale it by their multiplier
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    batch_size: int = 32
    cosine: bool = False  # cosine decay to zero over each phase; else constant


OPTIMIZERS = ("adam", "adamw", "sgd")  # the one list: make_optimizer, the CLI and the Train page read it


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: tuple[Phase, ...] = (Phase(FreezePlan.freeze()),)  # one plan, or a schedule of them
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 10  # the run's whole length; bursts train slices of it
    seed: int = 0  # head initialisation, data order, augmentation, dropout
    patience: int | None = None  # early stopping: epochs without a better validation loss
    feature_cache: bool = True  # cache the frozen prefix's output whenever that is exact
    cache_mb: int = 1024  # memory bound for the cache; above it the cache is memory-mapped from disk
    cache_disk_mb: int = 16384  # bound for a cache on disk ($FREEZELAB_HOME/cache); above it training runs uncached
    label: str = ""  # the run's name in legends and tables

    @property
    def start_lr(self) -> float:
        """The learning rate the run starts at: its first phase's own, else the optimizer's."""
        return self.phases[0].lr or self.optim.lr

    def with_start_lr(self, lr: float) -> RunConfig:
        """The same run starting at `lr` (later phases keep their own rates)."""
        return replace(self, phases=(replace(self.phases[0], lr=lr), *self.phases[1:]))

    @classmethod
    def from_recipe(cls, recipe: Recipe, **kw) -> RunConfig:
        cfg = cls(phases=recipe.phases, label=kw.pop("label", recipe.title), **kw)
        if recipe.weights is not None:
            cfg = replace(cfg, model=replace(cfg.model, weights=recipe.weights))
        return cfg


# -----------------------------------------------------------------------------
# Checking a config: one validation for the app, the command line and stored configs


class ConfigInvalid(ValueError):
    """A run config with a value of the wrong type, a key no config has, or a value out of range; the message
    names where (e.g. `optim.lr`)."""


def config_from_plain(value) -> RunConfig:
    """A RunConfig from what `dataclasses.asdict` and JSON made of one (a missing key keeps its default), checked
    whole: types, unknown keys and ranges; ConfigInvalid, naming the first problem, otherwise."""
    cfg = from_plain(RunConfig, value)
    validate_config(cfg)
    return cfg


def from_plain(tp, value, where: str = "config"):
    """Rebuild a (nested, frozen) dataclass of type `tp` from plain values, checking each against its type;
    ConfigInvalid names the first that does not fit."""
    def wrong(what: str) -> ConfigInvalid:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return ConfigInvalid(f"{where} must be {what}, not {shown}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong("an object of " + ", ".join(f.name for f in dataclasses.fields(tp)))
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ConfigInvalid(f"{where} has no key {str(unknown[0])[:40]!r} (its keys: {', '.join(names)})")
        hints = typing.get_type_hints(tp)
        return tp(**{name: from_plain(hints[name], value[name], f"{where}.{name}".removeprefix("config."))
                     for name in names if name in value})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return from_plain(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong(f"a list of {len(args)}")
        return tuple(from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("a whole number")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong("text")
        return value
    return value


def _positive(x: float) -> bool:
    return x > 0 and math.isfinite(x)


def validate_config(cfg: RunConfig) -> None:
    """ConfigInvalid, in words, for a config no run can train with (types are the dataclasses')."""
    def check(ok: bool, why: str) -> None:
        if not ok:
            raise ConfigInvalid(why)

    check(bool(cfg.phases), "A run needs at least one phase.")
    check(all(p.epochs and p.epochs >= 1 for p in cfg.phases[:-1]),
          "Every phase but the last needs a length in epochs (1 or more).")
    check(cfg.epochs >= 1, f"A run needs at least one epoch, not {cfg.epochs}.")
    check(cfg.optim.name in OPTIMIZERS, f"optim.name is one of {', '.join(OPTIMIZERS)}, not {cfg.optim.name!r}.")
    check(cfg.optim.batch_size >= 1, f"Batch size must be at least 1, not {cfg.optim.batch_size}.")
    check(_positive(cfg.optim.lr), f"Learning rate must be a positive number, not {cfg.optim.lr}.")
    check(cfg.optim.weight_decay >= 0 and math.isfinite(cfg.optim.weight_decay),
          f"optim.weight_decay must be 0 or more, not {cfg.optim.weight_decay}.")
    check(0 <= cfg.optim.momentum < 1, f"optim.momentum must be from 0 to below 1, not {cfg.optim.momentum}.")
    for i, phase in enumerate(cfg.phases):  # None: the optimizer's; 0 would silently mean the same
        check(phase.lr is None or _positive(phase.lr),
              f"Phase {i + 1}'s own learning rate must be a positive number, not {phase.lr}.")
        check(phase.plan.bn in BN_POLICIES,
              f"Phase {i + 1}'s BatchNorm policy is one of {', '.join(BN_POLICIES)}, not {phase.plan.bn!r}.")
        check(all(_positive(m) or m == 0 for _, m in phase.plan.lr_mult),
              f"Phase {i + 1}'s learning-rate multipliers must be 0 or more.")
    check(cfg.seed >= 0 and cfg.data.seed >= 0, f"Seeds are whole numbers from 0, not {min(cfg.seed, cfg.data.seed)}.")
    check(cfg.patience is None or cfg.patience >= 1,
          f"patience (early stopping) must be 1 epoch or more, or off, not {cfg.patience}.")
    check(cfg.cache_mb >= 0 and cfg.cache_disk_mb >= 0,
          f"cache_mb and cache_disk_mb must be 0 or more, not {cfg.cache_mb} and {cfg.cache_disk_mb}.")
    data = cfg.data
    check(data.source in SOURCES, f"data.source is one of {', '.join(SOURCES)}, not {data.source!r}.")
    check(data.image_size >= 8, f"data.image_size must be 8 pixels or more, not {data.image_size}.")
    check(all(n is None or n >= 1 for n in (data.per_class, data.val_per_class)),
          "data.per_class and data.val_per_class must be 1 or more, or null for all.")
    check(0 < data.val_fraction < 1, f"data.val_fraction must be between 0 and 1, not {data.val_fraction}.")
    check(data.crop_pad >= 0, f"data.crop_pad must be 0 or more, not {data.crop_pad}.")
    head = cfg.model.head
    check(head.pool in ("avg", "flatten"), f"model.head.pool is avg or flatten, not {head.pool!r}.")
    check(all(w >= 1 for w in head.hidden), "model.head.hidden holds widths of 1 or more.")
    check(0 <= head.dropout < 1, f"model.head.dropout must be from 0 to below 1, not {head.dropout}.")


# What a run trains, as one of the recipes' kinds: the key of its colour on every page and chart.
RECIPE_KINDS = ("feature_extraction", "fine_tune_top", "fine_tune_all", "from_scratch", "two_phase", "truncated",
                "custom")


def recipe_kind(cfg: RunConfig) -> str:
    """Which kind of recipe a run is, read from what it trains (not from its label): several phases two_phase;
    a truncated backbone truncated; random weights with every block training from_scratch; nothing but the head
    feature_extraction; every block fine_tune_all; the top blocks (a run of them ending at the last)
    fine_tune_top; anything else custom."""
    if len(cfg.phases) > 1:
        return "two_phase"
    plan, blocks = cfg.phases[0].plan, list(block_names(cfg.model.backbone))
    trains = set(plan.trainable)
    if plan.truncate_after is not None:
        return "truncated"
    if plan.last_layers:
        return "custom"
    if trains >= set(blocks):
        return "from_scratch" if cfg.model.weights == "none" else "fine_tune_all"
    if not trains:
        return "feature_extraction"
    top = blocks[len(blocks) - len(trains):]
    return "fine_tune_top" if trains == set(top) else "custom"


def _trains(plan: FreezePlan, blocks: list[str]) -> str:
    if plan.last_layers:
        return f"last {plan.last_layers} layers train"
    kept = blocks[: blocks.index(plan.truncate_after) + 1] if plan.truncate_after in blocks else blocks
    trains = [b for b in kept if b in plan.trainable]
    cut = f", cut after {plan.truncate_after}" if plan.truncate_after else ""
    if not trains:
        return f"head only{cut}"
    if trains == kept:
        return f"all blocks train{cut}"
    if len(trains) > 1 and kept.index(trains[-1]) - kept.index(trains[0]) == len(trains) - 1:
        return f"{trains[0]}–{trains[-1]} train{cut}"
    return f"{', '.join(trains)} train{cut}"


def describe_training(cfg: RunConfig) -> str:
    """What a run trains, in a few words a run's label can carry: "layer3–layer4 train · BN stats · lr 0.003";
    the BatchNorm policy when it is not the default, random weights, each phase of a schedule."""
    blocks = list(block_names(cfg.model.backbone))
    parts = []
    for i, phase in enumerate(cfg.phases):
        words = _trains(phase.plan, blocks)
        if phase.plan.bn != "frozen" and set(phase.plan.trainable) < set(blocks):
            words += f" · BN {phase.plan.bn}"
        lr = phase.lr or cfg.optim.lr
        length = f" for {phase.epochs} epochs" if phase.epochs and i < len(cfg.phases) - 1 else ""
        parts.append(f"{words} · lr {lr:g}{length}")
    text = ", then ".join(parts)
    return f"{text} · random weights" if cfg.model.weights == "none" else text


CURRENT_PLAN = "Current plan"  # the run of the plan set on the Layers page (or by the CLI's plan flags)


def named_by_what_it_trains(configs: list[RunConfig]) -> list[RunConfig]:
    """The comparison with each "Current plan" run labelled by what it trains, so two of them (and a preset
    beside one) are told apart: "Current plan: layer4 train · BN stats · lr 0.001"."""
    return [replace(c, label=f"{CURRENT_PLAN}: {describe_training(c)}") if c.label == CURRENT_PLAN else c
            for c in configs]


# The demo comparison's settings, one definition for the start page, the Train page's defaults and the CLI.
DEMO_COMPARISON = ("feature_extraction", "fine_tune_top", "from_scratch")
DEMO_EPOCHS = 6
DEMO_OPTIM = OptimConfig(lr=1e-3, batch_size=20)  # on DataConfig()'s images: digits 5-9, 20 per class


def with_bn(cfg: RunConfig, bn: str) -> RunConfig:
    """The same run with BatchNorm policy `bn` in the frozen blocks of every phase."""
    return replace(cfg, phases=tuple(replace(p, plan=replace(p.plan, bn=bn)) for p in cfg.phases))


def comparison(recipes: dict[str, Recipe], keys: tuple[str, ...] | list[str], bn: str | None = None,
               **run_fields) -> list[RunConfig]:
    """One RunConfig per recipe key, sharing everything else (data, model, optimiser, budget) and, given `bn`,
    one BatchNorm policy (the one set on the Layers page) instead of each recipe's default."""
    unknown = [k for k in keys if k not in recipes]
    if unknown:
        raise ValueError(f"Unknown presets {unknown}; choose from {', '.join(recipes)}.")
    configs = [RunConfig.from_recipe(recipes[k], **run_fields) for k in keys]
    return [with_bn(c, bn) for c in configs] if bn else configs


def demo_comparison(epochs: int = DEMO_EPOCHS) -> list[RunConfig]:
    """Feature extraction, fine-tuning the top two blocks, and from scratch, on the offline digits 5-9
    with 20 images per class: the comparison a class can watch grow in under a minute on a CPU."""
    return comparison(freezing.presets(block_names("demo")), DEMO_COMPARISON, data=DataConfig(), optim=DEMO_OPTIM,
                      epochs=epochs)



def bn_comparison(data: DataConfig, model: ModelConfig, blocks: tuple[str, ...] | list[str], epochs: int,
                  optim: OptimConfig, seed: int = 0) -> list[RunConfig]:
    """The top block trains; the frozen blocks' BatchNorm follows each policy in turn. Everything else
    (data, weights, learning rate, budget, seed) is held equal, so the policies are the only difference."""
    return [RunConfig(data, model, (Phase(FreezePlan.freeze_to(blocks, -1, bn=policy)),), optim, epochs, seed,
                      label=f"BatchNorm {policy}: {blocks[-1]} trains") for policy in freezing.BN_POLICIES]
