"""The feature cache: the frozen prefix's output, computed once.

While the leading frozen blocks give the same output every time (no augmentation before them, BatchNorm
statistics not updating, no dropout or stochastic depth inside them), their output for each image is a
constant. `decide` says how many blocks can be cached for a run and why not more; `refresh` builds, keeps
or drops the cache of a live run as its plan changes. Cached and uncached training give the same curve.

`decide` is the one decision: training follows it, and the Layers page previews it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torchvision
from torch import nn

from core.backbones import FreezeLabNet
from core.data import to_float
from core.device import autocast
from core.freezing import FreezePlan

if TYPE_CHECKING:  # training imports this module; the types are only named here
    from core.training import RunConfig, RunState

_RANDOM_IN_TRAINING = (nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, torchvision.ops.StochasticDepth)


def frozen_prefix(model: FreezeLabNet) -> int:
    """How many leading blocks have no trainable parameter (they never need gradients)."""
    k = 0
    for block in model.blocks.values():
        if any(p.requires_grad for p in block.parameters()):
            break
        k += 1
    return k


def cacheable_prefix(model: FreezeLabNet) -> tuple[int, str]:
    """(k, why not more): leading blocks that are frozen *and* give the same output every time."""
    k = 0
    for name, block in model.blocks.items():
        if any(p.requires_grad for p in block.parameters()):
            return k, f"block {name} trains"
        if any(m.training for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            return k, f"BatchNorm statistics in {name} update while training (policy 'stats')"
        if any(m.training for m in block.modules() if isinstance(m, _RANDOM_IN_TRAINING)):
            return k, f"{name} has dropout or stochastic depth, which is random while training"
        k += 1
    return k, "the whole backbone is frozen"


def size_mb(n_images: int, shape: tuple[int, ...]) -> float:
    """Memory of float32 features of `shape` for `n_images` images."""
    return n_images * math.prod(shape) * 4 / 2**20


@dataclass(frozen=True)
class CacheDecision:
    blocks: int  # leading blocks whose output is cached; 0: the cache is off
    reason: str  # why it is on, or why it is off
    mb: float = 0.0  # what the cache takes (or would take, when over the bound)

    @property
    def on(self) -> bool:
        return self.blocks > 0


def decide(model: FreezeLabNet, cfg: RunConfig, n_images: int) -> CacheDecision:
    """Whether a run with config `cfg` caches, for `model` as its current plan left it (in training mode)
    and `n_images` images (training plus validation)."""
    if not cfg.feature_cache:
        return CacheDecision(0, "switched off for this run")
    if cfg.data.augments:
        return CacheDecision(0, "augmentation changes the input every epoch")
    k, why_not_more = cacheable_prefix(model)
    if k == 0:
        return CacheDecision(0, f"no frozen prefix: {why_not_more}")
    mb = size_mb(n_images, model.feature_shape(k))
    if mb > cfg.cache_mb:
        return CacheDecision(0, f"the cache would take {mb:.0f} MB, over the {cfg.cache_mb} MB bound", mb)
    names = ", ".join(model.block_names[:k])
    return CacheDecision(k, f"{names} frozen: their output is computed once ({mb:.1f} MB)", mb)


@dataclass
class FeatureCache:
    blocks: int  # leading blocks the cache replaces
    plan: FreezePlan  # the plan it was computed under; another plan invalidates it
    train: torch.Tensor
    val: torch.Tensor


@torch.no_grad()  # not inference_mode: the first trainable block must be able to save its input for backward
def features(model: FreezeLabNet, x: torch.Tensor, stop: int, batch_size: int = 256) -> torch.Tensor:
    """blocks[:stop] applied to uint8 images `x`, in batches, at the precision training uses."""
    device = model.mean.device
    with autocast(device):  # the same precision as the uncached path, so both give the same curve
        out = [model.features(to_float(x[i : i + batch_size].to(device)), 0, stop)
               for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def refresh(state: RunState):
    """Build, keep or drop the cache for the run's current plan. Returns the decision when anything
    changed (the caller reports it), else None."""
    model, data = state.model, state.data
    if state.cache is not None and state.cache.plan == model.plan:
        return None
    decision = decide(model, state.config, len(data.train_x) + len(data.val_x))
    was_on = state.cache is not None
    state.cache = None
    if decision.on:
        k = decision.blocks
        state.cache = FeatureCache(k, model.plan, features(model, data.train_x, k), features(model, data.val_x, k))
    if not decision.on and not was_on and state.cache_reason == decision.reason:
        return None
    state.cache_reason = decision.reason
    return decision
