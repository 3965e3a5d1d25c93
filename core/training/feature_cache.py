"""The feature cache: the frozen prefix's output, computed once.

While the leading frozen blocks give the same output every time (no augmentation before them, BatchNorm
statistics not updating, no dropout or stochastic depth inside them), their output for each image is a
constant. `decide` says how many blocks can be cached for a run and why not more; the training loop
(`refresh_cache`) builds, keeps or drops the cache of a live run as its plan changes. Cached and uncached
training give the same curve.

Two forms keep large caches within reach:
- pooled: when the whole backbone is frozen and the head starts with global average pooling, the cache
  holds the pooled vector (512 floats per image for ResNet-18) instead of the map (25,088 at 224 px). The
  pooling is the head's own first layer, deterministic, so this is exact; any other plan keeps the map.
- on disk: a cache over the memory bound (`RunConfig.cache_mb`) goes to a memory-mapped file under
  `$FREEZELAB_HOME/cache` (up to `cache_disk_mb`, and only with room on the disk) instead of being dropped.
  The file is unlinked as soon as it is mapped, so nothing is left behind, even by a killed process.

`decide` is the one decision: training follows it, and the Layers page previews it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from core.data.datasets import to_float
from core.freezing import FreezePlan
from core.models.network import FreezeLabNet
from core.runtime import paths
from core.runtime.device import autocast

if TYPE_CHECKING:
    from core.training.config import RunConfig

_DROPOUT = (nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def _random_in_training() -> tuple[type, ...]:
    """Module types whose output is random while training. torchvision's stochastic depth is among them only
    when torchvision is loaded: a model built without it (the demo net) holds none, and importing it costs a
    second of a cold start."""
    stochastic_depth = getattr(sys.modules.get("torchvision.ops"), "StochasticDepth", None)
    return (*_DROPOUT, stochastic_depth) if stochastic_depth is not None else _DROPOUT


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
        if any(m.training for m in block.modules() if isinstance(m, _random_in_training())):
            return k, f"{name} has dropout or stochastic depth, which is random while training"
        k += 1
    return k, "the whole backbone is frozen"


def size_mb(n_images: int, shape: tuple[int, ...]) -> float:
    """Memory of float32 features of `shape` for `n_images` images."""
    return n_images * math.prod(shape) * 4 / 2**20


def cache_dir() -> Path:
    """Where caches over the memory bound are memory-mapped."""
    return paths.home() / "cache"


DISK_MARGIN_MB = 1024  # a cache on disk leaves at least this much of the disk free


def free_disk_mb(folder: Path) -> float:
    """Free space on the disk that holds `folder` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free / 2**20


@dataclass(frozen=True)
class CacheDecision:
    blocks: int  # leading blocks whose output is cached; 0: the cache is off
    reason: str  # why it is on, or why it is off
    mb: float = 0.0  # what the cache takes (or would take, when over the bounds)
    pooled: bool = False  # one pooled vector per image: the head's global average pooling is cached too
    on_disk: bool = False  # over the memory bound: kept in a memory-mapped file under cache_dir()

    @property
    def on(self) -> bool:
        return self.blocks > 0


def pools_exactly(model: FreezeLabNet, k: int) -> bool:
    """Whether a cache of the first `k` blocks may hold pooled vectors: only when nothing trains between
    them and the head's own global average pooling, i.e. every block is cached and the head pools."""
    return k == len(model.blocks) and model.head_config.pool == "avg"


def decide(model: FreezeLabNet, cfg: RunConfig, n_images: int) -> CacheDecision:
    """Whether a run with config `cfg` caches, for `model` as its current plan left it (in training mode)
    and `n_images` images (training plus validation); in memory or on disk; maps or pooled vectors."""
    if not cfg.feature_cache:
        return CacheDecision(0, "switched off for this run")
    if cfg.data.augments:
        return CacheDecision(0, "augmentation changes the input every epoch")
    k, why_not_more = cacheable_prefix(model)
    if k == 0:
        return CacheDecision(0, f"no frozen prefix: {why_not_more}")
    pooled = pools_exactly(model, k)
    shape = model.feature_shape(k)
    mb = size_mb(n_images, shape[:1] if pooled else shape)
    names = ", ".join(model.block_names[:k])
    what = f"their pooled output ({shape[0]} floats per image)" if pooled else "their output"
    if mb <= cfg.cache_mb:
        return CacheDecision(k, f"{names} frozen: {what} is computed once ({mb:.1f} MB)", mb, pooled)
    over = f"the cache would take {mb:.0f} MB, over the {cfg.cache_mb} MB memory bound"
    if mb > cfg.cache_disk_mb:
        return CacheDecision(0, f"{over} and the {cfg.cache_disk_mb} MB bound on disk", mb, pooled)
    if mb > (free := free_disk_mb(cache_dir())) - DISK_MARGIN_MB:
        return CacheDecision(0, f"{over}, and the disk under {cache_dir()} has only {free:.0f} MB free", mb, pooled)
    return CacheDecision(k, f"{names} frozen: {what} is computed once into a memory-mapped file under "
                            f"{cache_dir()} ({mb:.1f} MB, over the {cfg.cache_mb} MB memory bound)", mb, pooled,
                         on_disk=True)


@dataclass
class FeatureCache:
    blocks: int  # leading blocks the cache replaces
    plan: FreezePlan  # the plan it was computed under; another plan invalidates it
    train: torch.Tensor
    val: torch.Tensor
    pooled: bool = False  # the rows are pooled vectors: the head goes on after its pooling
    on_disk: bool = False  # the rows live in a memory-mapped file (on the CPU)


def _mapped(rows: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 tensor backed by a new file under cache_dir(), unlinked at once: the mapping keeps the space
    until the tensor is freed, and no file outlives the process."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix="features-", suffix=".f32")
    os.close(fd)
    try:
        array = np.memmap(name, np.float32, "w+", shape=(rows, *shape))
    finally:
        with contextlib.suppress(OSError):  # Windows cannot unlink a mapped file: there it stays until removed
            os.unlink(name)
    return torch.from_numpy(array)


@torch.no_grad()  # not inference_mode: the first trainable block must be able to save its input for backward
def features(model: FreezeLabNet, x: torch.Tensor, stop: int, pooled: bool = False, on_disk: bool = False,
             batch_size: int = 256) -> torch.Tensor:
    """blocks[:stop] (then the head's pooling, when `pooled`) applied to uint8 images `x`, in batches, at the
    precision training uses, written into one tensor as they come (no second copy): on the model's device, or
    in a memory-mapped file when `on_disk`."""
    device = model.mean.device
    out = None
    with autocast(device):  # the same precision as the uncached path, so both give the same curve
        for i in range(0, len(x), batch_size):
            rows = model.features(to_float(x[i : i + batch_size].to(device)), 0, stop)
            if pooled:
                rows = model.pool(rows)
            if out is None:
                out = (_mapped(len(x), tuple(rows.shape[1:])) if on_disk else
                       torch.empty((len(x), *rows.shape[1:]), dtype=rows.dtype, device=rows.device))
            out[i : i + len(rows)] = rows.to(out.device)
    return out if out is not None else torch.empty(0)
