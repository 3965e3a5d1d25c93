"""What a run is: its configuration (data, model, phases, optimiser, budget) and the comparisons built from it.

    cfg = RunConfig(data=DataConfig(), model=ModelConfig("resnet18"), phases=(Phase(FreezePlan.freeze()),))
    configs = demo_comparison()            # feature extraction, fine-tuning the top two blocks, from scratch
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from core import freezing
from core.data.datasets import DataConfig
from core.freezing import FreezePlan, Phase, Recipe
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
