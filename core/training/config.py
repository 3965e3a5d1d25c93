"""What a run is: its configuration (data, model, phases, optimiser, budget) and the comparisons built from it.

    cfg = RunConfig(data=DataConfig(), model=ModelConfig("resnet18"), phases=(Phase(FreezePlan.freeze()),))
    configs = demo_comparison()            # feature extraction, fine-tuning the top two blocks, from scratch
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, replace

from core import freezing
from core.data.datasets import DataConfig
from core.freezing import FreezePlan, Phase, Recipe
from core.models.backbones import ModelConfig, block_names
from core.runtime.words import listed, quoted
from core.training import rules
from core.training.rules import OPTIMIZERS, ConfigInvalid  # noqa: F401 (the rules' own, read from here too)

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
# Checking a config: one validation for the app, links, the command line and stored configs (the rules of each
# value: core/training/rules.py)


def config_from_plain(value) -> RunConfig:
    """A RunConfig from what `dataclasses.asdict` and JSON made of one (a missing key keeps its default), checked
    whole: types, unknown keys and every value's rule (validate_config); ConfigInvalid, naming the first problem,
    otherwise. A config that is to become a new run is then checked by validate_new_run."""
    cfg = from_plain(RunConfig, value)
    validate_config(cfg)
    return cfg


def from_plain(tp, value, where: str = "config"):
    """Rebuild a (nested, frozen) dataclass of type `tp` from plain values, checking each against its type;
    ConfigInvalid names the first that does not fit."""
    def wrong(what: str) -> ConfigInvalid:
        return ConfigInvalid(f"{where} must be {what}, not {quoted(value, 40)}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong("an object of " + ", ".join(f.name for f in dataclasses.fields(tp)))
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ConfigInvalid(f"{where} has no key {quoted(str(unknown[0]), 40)} (its keys: {', '.join(names)})")
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
        try:
            return float(value)
        except OverflowError:  # a whole number beyond any float's range (JSON has no bound on them)
            raise wrong("a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise wrong("text")
        return value
    return value


def validate_config(cfg: RunConfig, bounded: bool = False) -> None:
    """ConfigInvalid, in one sentence, for a config no run can train with: every value's rule (types are the
    dataclasses'). What every config obeys, a stored one too; `bounded` adds the bounds on what a new run may
    cost here (validate_new_run)."""
    if not cfg.phases:
        raise ConfigInvalid("A run needs at least one phase.")
    rules.epochs(cfg.epochs, bounded=bounded)
    for i, phase in enumerate(cfg.phases):
        what = f"Phase {i + 1}" if len(cfg.phases) > 1 else "The phase"
        if phase.epochs is not None or i < len(cfg.phases) - 1:  # the last may run for the rest of the budget
            if phase.epochs is None:
                raise ConfigInvalid(f"{what} needs a length in epochs: only the last runs for the rest.")
            rules.epochs(phase.epochs, what, bounded)
        if phase.lr is not None:  # None: the optimizer's; 0 would silently mean the same
            rules.learning_rate(phase.lr, f"{what}'s own learning rate")
        rules.plan(phase.plan, what=f"{what}: " if len(cfg.phases) > 1 else "")
    rules.optimizer(cfg.optim.name)
    rules.batch_size(cfg.optim.batch_size, bounded)
    rules.learning_rate(cfg.optim.lr)
    if not 0 <= cfg.optim.weight_decay < float("inf"):
        raise ConfigInvalid(f"optim.weight_decay must be 0 or more, not {quoted(cfg.optim.weight_decay)}.")
    if not 0 <= cfg.optim.momentum < 1:
        raise ConfigInvalid(f"optim.momentum must be from 0 to below 1, not {quoted(cfg.optim.momentum)}.")
    rules.seed(cfg.seed, bounded=bounded)
    if cfg.patience is not None and cfg.patience < 1:
        raise ConfigInvalid(f"patience (early stopping) must be 1 epoch or more, or off, not {quoted(cfg.patience)}.")
    if cfg.cache_mb < 0 or cfg.cache_disk_mb < 0:
        raise ConfigInvalid(f"cache_mb and cache_disk_mb must be 0 or more, not {cfg.cache_mb} and "
                            f"{cfg.cache_disk_mb}.")
    rules.data(cfg.data, bounded)
    rules.backbone_name(cfg.model.backbone)
    rules.weights(cfg.model.weights)
    rules.head(cfg.model.head, bounded)


def validate_new_run(cfg: RunConfig) -> None:
    """ConfigInvalid, in one sentence, for a config no new run may be made of here, checked whole before anything
    is stored: every value's rule with this server's bounds (at most MAX_EPOCHS, images the loader takes), then
    what this machine must have: a backbone it can build (the operator's own ones only where registered), images
    at least its smallest input, the plan's blocks among its blocks, weights and a folder that are here. A
    browser's folder and weights file are checked against the operator's shares first, by its door."""
    validate_config(cfg, bounded=True)
    rules.image_size(cfg.data.image_size, cfg.model.backbone)
    blocks = rules.blocks_of(cfg.model.backbone)
    for i, phase in enumerate(cfg.phases):
        rules.plan(phase.plan, blocks, f"Phase {i + 1}: " if len(cfg.phases) > 1 else "")
    rules.weights_here(cfg.model.weights)
    rules.data_here(cfg.data)


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


CURRENT = "current"  # among a comparison's keys: the user's own plan (the Layers page's, or the CLI's plan flags)
CURRENT_PLAN = "Current plan"  # that run's label, before what it trains is added (named_by_what_it_trains)


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


def comparison(recipes: dict[str, Recipe], keys: tuple[str, ...] | list[str], plan: FreezePlan | None = None,
               bn: str | None = None, same_lr: float | None = None, **run_fields) -> list[RunConfig]:
    """The runs of a comparison, the one way the pages and the command line make one: a run per recipe key, and
    for CURRENT the run of `plan` (the one set on the Layers page, or by the CLI's plan flags) first, labelled by
    what it trains; all sharing everything else (`run_fields`: data, model, optimiser, epochs, seed, ...). Each
    recipe starts at the learning rate suited to what it trains, the current plan at the optimiser's; `same_lr`
    gives every run that one rate instead (unfair, on purpose). `bn` puts the recipes' frozen blocks under that
    BatchNorm policy (the one set on the Layers page) instead of each recipe's default. Every run is checked
    whole (validate_new_run) before any is returned: ConfigInvalid, in one sentence, otherwise."""
    unknown = [k for k in keys if k not in recipes and k != CURRENT]
    if unknown:
        raise ConfigInvalid(f"No preset {listed(unknown)}; choose from {', '.join(recipes)}, or {CURRENT} for "
                            "your own plan.")
    if not keys:
        raise ConfigInvalid(f"A comparison needs at least one run: a preset, or {CURRENT} for your own plan.")
    if CURRENT in keys and plan is None:
        raise ConfigInvalid("The current plan was asked for, and no plan was given.")
    configs = [RunConfig.from_recipe(recipes[k], **run_fields) for k in keys if k != CURRENT]
    if bn:
        configs = [with_bn(c, rules.bn_policy(bn)) for c in configs]
    if CURRENT in keys:
        configs.insert(0, RunConfig(phases=(Phase(plan),), label=CURRENT_PLAN, **run_fields))
    if same_lr is not None:
        configs = [c.with_start_lr(rules.learning_rate(same_lr, "The one learning rate")) for c in configs]
    configs = named_by_what_it_trains(configs)
    for cfg in configs:
        validate_new_run(cfg)
    return configs


def demo_comparison(epochs: int = DEMO_EPOCHS) -> list[RunConfig]:
    """Feature extraction, fine-tuning the top two blocks, and from scratch, on the offline digits 5-9
    with 20 images per class: the comparison a class can watch grow in under a minute on a CPU."""
    return comparison(freezing.recipes_for(block_names("demo")), DEMO_COMPARISON, data=DataConfig(), optim=DEMO_OPTIM,
                      epochs=epochs)


def bn_comparison(data: DataConfig, model: ModelConfig, blocks: tuple[str, ...] | list[str], epochs: int,
                  optim: OptimConfig, seed: int = 0) -> list[RunConfig]:
    """The top block trains; the frozen blocks' BatchNorm follows each policy in turn. Everything else
    (data, weights, learning rate, budget, seed) is held equal, so the policies are the only difference."""
    return [RunConfig(data, model, (Phase(FreezePlan.freeze_to(blocks, -1, bn=policy)),), optim, epochs, seed,
                      label=f"BatchNorm {policy}: {blocks[-1]} trains") for policy in freezing.BN_POLICIES]
