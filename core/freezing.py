"""What is frozen: a `FreezePlan`, the recipes built from plans, `apply`, and the `audit` that proves it.

Vocabulary follows fastai: `FreezePlan.freeze()` trains the head only, `FreezePlan.freeze_to(blocks, n)`
trains blocks[n:] (n may be negative: -2 trains the top two), `FreezePlan.unfreeze(blocks)` trains all.
The head always trains. "Frozen" here means three things, all checked by `audit`:
parameters have requires_grad False, they are left out of the optimizer, and BatchNorm layers in
frozen blocks stay in eval mode (running statistics untouched) unless the plan's `bn` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.runtime.words import listed, quoted

if TYPE_CHECKING:  # plans are plain data; torch and pandas are imported where a model is touched
    import pandas as pd
    import torch

BN_POLICIES = {
    "frozen": "eval mode: running statistics and affine parameters untouched (as Keras does)",
    "stats": "running statistics follow the new data; affine parameters stay fixed",
    "affine": "affine parameters (gamma, beta) train; running statistics untouched",
}
# What "frozen" means for a block's BatchNorm under each policy, in words for the page that shows the audit.
FROZEN_MEANS = {
    "frozen": "requires_grad off, left out of the optimizer, BatchNorm in eval mode (its running statistics and "
              "γ, β untouched)",
    "stats": "requires_grad off and left out of the optimizer, but BatchNorm in train mode: its running statistics "
             "follow the new data (γ, β fixed), so a frozen block's output still changes",
    "affine": "requires_grad off and left out of the optimizer except BatchNorm's γ and β, which train (running "
              "statistics untouched), so a frozen block reads 'partial' and still changes",
}


@dataclass(frozen=True)
class FreezePlan:
    trainable: tuple[str, ...] = ()  # backbone blocks that train (the head always does)
    bn: str = "frozen"  # BatchNorm policy in frozen blocks, one of BN_POLICIES
    lr_mult: tuple[tuple[str, float], ...] = ()  # (block, factor) pairs scaling the base LR; others 1
    truncate_after: str | None = None  # drop every block after this one; the head is rebuilt to fit
    last_layers: int | None = None  # finer form: only the last N parametrised backbone layers train

    # fastai's verbs, as plans -------------------------------------------------
    @classmethod
    def freeze(cls, **kw) -> FreezePlan:
        """Feature extraction: the whole backbone frozen, only the head trains."""
        return cls(trainable=(), **kw)

    @classmethod
    def freeze_to(cls, blocks: Sequence[str], n: int, **kw) -> FreezePlan:
        """Train blocks[n:]; blocks[:n] stay frozen."""
        return cls(trainable=tuple(blocks[n:]), **kw)

    @classmethod
    def unfreeze(cls, blocks: Sequence[str], **kw) -> FreezePlan:
        """Fine-tune everything."""
        return cls(trainable=tuple(blocks), **kw)

    def lr_factor(self, block: str) -> float:
        return dict(self.lr_mult).get(block, 1.0)


@dataclass(frozen=True)
class Phase:
    plan: FreezePlan
    epochs: int | None = None  # how long the phase lasts; None: the rest of the budget
    lr: float | None = None  # the phase's base learning rate; None: the run's own


@dataclass(frozen=True)
class Recipe:
    key: str
    title: str
    summary: str
    phases: tuple[Phase, ...]
    weights: str | None = None  # overrides the run's weights ("none" for from scratch); None keeps them


# Each recipe's learning rate (Adam), suited to what it trains: a fresh head alone takes a high rate,
# pretrained blocks a lower one. Chosen on the demo (digits 5-9, 20 per class, 6 epochs) over the grid
# 1e-4 .. 1e-2, each recipe within 3 points of its best there (tests/test_fairness.py); a learning-rate
# range test (core/training/lr_find.py) finds one for other setups. The reports' second phase keeps its 1e-5.
RECIPE_LR = {
    "feature_extraction": 1e-2,
    "fine_tune_top": 3e-3,
    "fine_tune_all": 1e-3,
    "from_scratch": 1e-2,
    "two_phase": 1e-2,  # the frozen warm-up; the unfrozen phase trains at phase2_lr
    "truncated": 3e-3,
}


def suited_lr(plan: FreezePlan, blocks: Sequence[str], from_scratch: bool = False) -> float:
    """The learning rate (RECIPE_LR) suited to what `plan` trains: the head alone, some pretrained blocks,
    all of them, or random weights. Experiments that vary the plan give each setting this rate."""
    if from_scratch:
        return RECIPE_LR["from_scratch"]
    if plan.truncate_after is not None and not plan.trainable:
        return RECIPE_LR["truncated"]
    trains = set(plan.trainable)
    if not trains and not plan.last_layers:
        return RECIPE_LR["feature_extraction"]
    if trains >= set(blocks):
        return RECIPE_LR["fine_tune_all"]
    return RECIPE_LR["fine_tune_top"]


def recipes_for(blocks: Sequence[str], top_n: int = 2, keep_blocks: int = 3, warmup_epochs: int = 3,
            phase2_lr: float = 1e-5) -> dict[str, Recipe]:
    """The recipes from the transfer-learning reports FreezeLab grew from, for a backbone's blocks, each at
    its own learning rate (RECIPE_LR)."""
    blocks = list(blocks)
    keep_blocks = max(1, min(keep_blocks, len(blocks)))
    lr = RECIPE_LR
    recipes = [
        Recipe("feature_extraction", "Feature extraction",
               "Backbone frozen; only the new head trains.",
               (Phase(FreezePlan.freeze(), lr=lr["feature_extraction"]),)),
        Recipe("fine_tune_top", f"Fine-tune the top {top_n} blocks",
               f"Blocks {', '.join(blocks[-top_n:])} and the head train; the rest stays frozen.",
               (Phase(FreezePlan.freeze_to(blocks, -top_n), lr=lr["fine_tune_top"]),)),
        Recipe("fine_tune_all", "Fine-tune everything, low LR",
               f"Every block trains, at learning rate {lr['fine_tune_all']:g} (from scratch takes "
               f"{lr['from_scratch']:g}).",
               (Phase(FreezePlan.unfreeze(blocks), lr=lr["fine_tune_all"]),)),
        Recipe("from_scratch", "From scratch",
               "Same architecture, random weights, everything trains.",
               (Phase(FreezePlan.unfreeze(blocks), lr=lr["from_scratch"]),), weights="none"),
        Recipe("two_phase", "Two-phase",
               f"{warmup_epochs} epochs with the backbone frozen, then everything unfrozen at LR {phase2_lr:g}.",
               (Phase(FreezePlan.freeze(), epochs=warmup_epochs, lr=lr["two_phase"]),
                Phase(FreezePlan.unfreeze(blocks), lr=phase2_lr))),
        Recipe("truncated", f"Truncated after {blocks[keep_blocks - 1]}",
               f"Only the first {keep_blocks} blocks, frozen, with a head on their output.",
               (Phase(FreezePlan.freeze(truncate_after=blocks[keep_blocks - 1]), lr=lr["truncated"]),)),
    ]
    return {r.key: r for r in recipes}


PRESET_KEYS = tuple(recipes_for(("first", "last")))  # the same for every backbone (the command line's choices)


def matching_preset(plan: FreezePlan, recipes: dict[str, Recipe]) -> str | None:
    """The first recipe whose (first) plan trains the same blocks, truncates at the same block and trains the
    same last layers as `plan`; None when none does (a custom plan). BatchNorm and learning-rate settings are
    chosen apart from the preset, so they do not count."""
    shape = (set(plan.trainable), plan.truncate_after, plan.last_layers)
    return next((key for key, r in recipes.items()
                 if (set(r.phases[0].plan.trainable), r.phases[0].plan.truncate_after,
                     r.phases[0].plan.last_layers) == shape), None)


# -----------------------------------------------------------------------------
# Applying a plan


def backbone_layers(model) -> list[str]:
    """Names of the backbone's parametrised leaf layers, in forward order (Keras' `base_model.layers`)."""
    return [
        name for name, m in model.blocks.named_modules(prefix="blocks")
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
    ]


def bn_policy(text: str) -> str:
    """The BatchNorm policy `text` names (one of BN_POLICIES); ValueError, in one sentence, for anything else. The
    one check of a policy: plans, configs, links, the command line and the pages all come here."""
    if text not in BN_POLICIES:
        raise ValueError(f"The BatchNorm policy is one of {', '.join(BN_POLICIES)}, not {quoted(text)}.")
    return text


def check_plan(plan: FreezePlan, blocks: Sequence[str] | None = None) -> None:
    """ValueError, in one sentence, for a plan no model can follow (a BatchNorm policy there is none of, a
    negative or infinite multiplier, a negative layer count) or, given the backbone's `blocks`, one that names a
    block it lacks (after any truncation)."""
    bn_policy(plan.bn)
    if plan.last_layers is not None and plan.last_layers < 0:
        raise ValueError(f"last_layers must be 0 or more, not {plan.last_layers}.")
    if not all(0 <= f < float("inf") for _, f in plan.lr_mult):  # NaN fails both comparisons
        raise ValueError("Learning-rate multipliers must be 0 or more (and finite).")
    if blocks is None:
        return
    names = list(blocks)
    if plan.truncate_after is not None:
        if plan.truncate_after not in names:
            raise ValueError(f"Cannot truncate after {quoted(plan.truncate_after)}; blocks are {', '.join(names)}.")
        names = names[: names.index(plan.truncate_after) + 1]
    unknown = [b for b in (*plan.trainable, *dict(plan.lr_mult)) if b not in names]
    if unknown:
        raise ValueError(f"Blocks {listed(unknown)} are not in this (possibly truncated) backbone; it has "
                         f"{', '.join(names)}.")


def validate(model, plan: FreezePlan) -> None:
    """Raise ValueError, in words, for a plan that does not fit the model."""
    check_plan(plan, model.block_names)


def trainable_layers(model, plan: FreezePlan) -> set[str]:
    """Qualified names of the backbone modules the plan trains (leaf layers, or whole blocks)."""
    if plan.last_layers is not None:
        layers = backbone_layers(model)
        return set(layers[len(layers) - plan.last_layers:]) if plan.last_layers else set()
    return {f"blocks.{b}" for b in plan.trainable if b in model.blocks}


def _is_batchnorm(module) -> bool:
    from torch import nn

    return isinstance(module, nn.modules.batchnorm._BatchNorm)  # 1d, 2d, 3d and SyncBatchNorm


def _is_under(name: str, roots: set[str]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def apply(model, plan: FreezePlan):
    """Set requires_grad and BatchNorm modes as `plan` says (truncating first if asked). Returns the model."""
    validate(model, plan)
    if plan.truncate_after:
        model.truncate(plan.truncate_after)
    train_roots = trainable_layers(model, plan) | {"head"}
    keep_eval = set()
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        trains = _is_under(name, train_roots)
        if _is_batchnorm(module) and not trains:
            if plan.bn != "stats":
                keep_eval.add(name)
            trains = plan.bn == "affine"
        for p in own:
            p.requires_grad_(trains)
    model.set_plan(plan, frozenset(keep_eval))
    return model


def param_groups(model, base_lr: float) -> list[dict]:
    """One optimizer group per block that has trainable parameters, at base_lr times its multiplier (1 for
    every block of a model no plan was applied to)."""
    plan: FreezePlan | None = model.plan
    groups = []
    for name, module in [*model.blocks.items(), ("head", model.head)]:
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            factor = 1.0 if plan is None else plan.lr_factor(name)
            groups.append({"params": params, "lr": base_lr * factor, "name": name})
    return groups


# -----------------------------------------------------------------------------
# The audit: what is actually frozen


def _all_none_partial(flags: list[bool]) -> str:
    if not flags:
        return "—"
    return "all" if all(flags) else "none" if not any(flags) else "partial"


def audit(model, optimizer: torch.optim.Optimizer | None = None) -> pd.DataFrame:
    """One row per block and the head: parameters, trainable share, requires_grad, BatchNorm mode,
    whether the optimizer holds the parameters, and at what learning rate."""
    import pandas as pd

    lr_of: dict[int, float] = {}
    if optimizer is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                lr_of[id(p)] = group["lr"]
    rows = []
    for name, module in [*model.blocks.items(), ("head", model.head)]:
        params = list(module.parameters())
        bns = [m for m in module.modules() if _is_batchnorm(m)]
        bn_modes = {"train" if m.training else "eval" for m in bns}
        lrs = sorted({lr_of[id(p)] for p in params if id(p) in lr_of})
        rows.append({
            "block": name,
            "params": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "requires_grad": _all_none_partial([p.requires_grad for p in params]),
            "bn_mode": "—" if not bns else bn_modes.pop() if len(bn_modes) == 1 else "mixed",
            "in_optimizer": "—" if optimizer is None else _all_none_partial([id(p) in lr_of for p in params]),
            "lr": lrs[0] if len(lrs) == 1 else ", ".join(f"{v:g}" for v in lrs) if lrs else float("nan"),
        })
    return pd.DataFrame(rows)
