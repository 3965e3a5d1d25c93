"""Inside the network: what freezing changed, read from what training recorded or computed on demand over a
run's kept weights. The Inside page draws what these return.

- `block_matrix`: a recorded per-block figure (drift, BatchNorm drift, gradient norm) as blocks × epochs.
- `linear_probes`: held-out accuracy of a logistic-regression probe on each block's pooled output
  (Alain and Bengio, 2016, "Understanding intermediate layers using linear classifier probes").
- `feature_pca`: a 2-D PCA of the features the head sees.
- `source_task` and `source_accuracy`: how well the backbone still does the task it was pretrained on,
  with the head it was pretrained with (forgetting).
- `freeze_cost`: time per step, bytes saved for backward and trainable parameters for k = 0..K frozen
  leading blocks.
- `audit_flags`: the silent freezing mistakes, each with its fix.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import freezing
from core.data.datasets import DataConfig, ImageData, load_data, to_float
from core.freezing import FreezePlan
from core.models import weights, zoo
from core.models.backbones import HeadConfig, ModelConfig, get_spec
from core.models.network import FreezeLabNet, build_model, count_params, evaluating
from core.runtime import rng
from core.runtime.device import autocast, module_device, pick_device
from core.runtime.download import Progress
from core.training.block_stats import drift, parts
from core.training.config import ConfigInvalid, OptimConfig, RunConfig, from_plain
from core.training.loop import forward, make_optimizer

# -----------------------------------------------------------------------------
# Recorded figures as matrices

FIGURES = {
    "drift": "weight drift ‖w − w₀‖ / ‖w₀‖",
    "bn_drift": "BatchNorm statistics drift",
    "grad_norm": "mean gradient norm",
}


def block_matrix(stats: pd.DataFrame, run_id: str, figure: str) -> pd.DataFrame:
    """One run's `figure` (a key of FIGURES) from Metrics.block_stats: rows are blocks in forward order,
    columns epochs; NaN where there is nothing to measure (no BatchNorm, no gradient)."""
    if figure not in FIGURES:
        raise ValueError(f"Figure is one of {list(FIGURES)}, not {figure!r}.")
    rows = stats[stats.run_id == run_id]
    order = list(dict.fromkeys(rows.block))
    return rows.pivot_table(index="block", columns="epoch", values=figure, dropna=False).reindex(order)


# -----------------------------------------------------------------------------
# Linear probes and feature space


@torch.no_grad()
def pooled_features(model: FreezeLabNet, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Each block's output for uint8 images `x`, averaged over space: (N, channels) per block, in eval mode."""
    device, out = module_device(model), {name: [] for name in model.block_names}
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            h = to_float(x[i : i + batch_size].to(device))
            for k, name in enumerate(model.block_names):
                with autocast(device):
                    h = model.features(h, k, k + 1)  # from block 0, the input is normalised first
                out[name].append(h.float().mean(dim=(2, 3)).cpu())
    return {name: torch.cat(chunks) for name, chunks in out.items()}


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                   num_classes: int, l2: float = 1e-3, iterations: int = 100) -> float:
    """Held-out accuracy of multinomial logistic regression on standardised features (L-BFGS, seeded by
    nothing: the problem is convex and starts from zero)."""
    mu, sd = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (train_x - mu) / sd, (val_x - mu) / sd
    w = torch.zeros(a.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, train_y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias).argmax(1) == val_y).float().mean())


def linear_probes(model: FreezeLabNet, data: ImageData, max_images: int = 500) -> pd.DataFrame:
    """block, accuracy: a linear probe on each block's pooled output, trained on (at most `max_images`)
    training images and scored on validation images. Rising accuracy with depth means the features get
    more useful for this task; where it stops rising, features become specific to another one."""
    tx, ty = data.train_x[:max_images], data.train_y[:max_images]
    vx, vy = data.val_x[:max_images], data.val_y[:max_images]
    train, val = pooled_features(model, tx), pooled_features(model, vx)
    return pd.DataFrame([{"block": b, "accuracy": probe_accuracy(train[b], ty, val[b], vy, data.num_classes)}
                         for b in model.block_names])


@torch.no_grad()
def penultimate(model: FreezeLabNet, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """What the head's last layer sees for uint8 images `x`: (N, features), in eval mode."""
    device, out = module_device(model), []
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            out.append(model.head[:-1](model.features(to_float(x[i : i + batch_size].to(device)))).float()
                       .flatten(1).cpu())
    return torch.cat(out)


def feature_pca(model: FreezeLabNet, x: torch.Tensor, seed: int = 0) -> np.ndarray:
    """The penultimate features of images `x` projected on their first two principal components (N, 2),
    signs fixed so that two runs' pictures are comparable (each component's largest entry positive)."""
    feats = penultimate(model, x)
    with rng.seeded(seed):  # pca_lowrank draws a random projection from the global RNG
        u, s, _ = torch.pca_lowrank(feats, q=min(2, *feats.shape), center=True)
    coords = (u[:, :2] * s[:2]).numpy()
    signs = np.sign(coords[np.abs(coords).argmax(0), range(coords.shape[1])])
    return coords * np.where(signs == 0, 1, signs)


# -----------------------------------------------------------------------------
# Forgetting: the source task, with the source head


@dataclass(frozen=True)
class SourceTask:
    entry: str  # the zoo entry the backbone came from
    data: DataConfig  # the data it was pretrained on; its validation split is held out
    classes: tuple[str, ...]
    head: dict  # the source head's weights ("head.*" keys)


def source_task(cfg: RunConfig) -> SourceTask | None:
    """The task the run's backbone was pretrained on, when its weights came from a zoo entry that kept its
    head and its data (the bundled demo net: digits 0-4); else None."""
    source = cfg.model.weights
    if source == "pretrained":
        source = get_spec(cfg.model.backbone).weights_from
    if not source.startswith("zoo:") or any(p.plan.truncate_after for p in cfg.phases):
        return None
    name = source[len("zoo:"):]
    folder = zoo.entry_dir(name)
    if folder is None:
        return None
    versions = tuple((folder / f).stat().st_mtime_ns if (folder / f).is_file() else 0
                     for f in (zoo.CHECKPOINT, zoo.MANIFEST))
    return _zoo_task(name, folder, versions)


@functools.lru_cache(maxsize=8)
def _zoo_task(name: str, folder: Path, versions: tuple[int, int]) -> SourceTask | None:
    """A zoo entry's source task, read once per version of its files (the page asks on every rerun)."""
    manifest = zoo.read_manifest(name)  # {"unreadable": why} for one of the wrong shape: no source task then
    if "data" not in manifest or "classes" not in manifest or "unreadable" in manifest:
        return None
    fields = {k: v for k, v in manifest["data"].items() if k in {f.name for f in dataclasses.fields(DataConfig)}}
    try:  # written by save_to_zoo, yet a file anyone may edit: checked as a run's data config is
        data = from_plain(DataConfig, fields, "the manifest's data")
    except ConfigInvalid:
        return None
    state = weights.read_file(folder / zoo.CHECKPOINT)
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    return SourceTask(name, data, tuple(manifest["classes"]), head) if head else None


def source_accuracy(task: SourceTask, cfg: RunConfig, run_weights: dict, data: ImageData | None = None
                    ) -> tuple[float, np.ndarray]:
    """(accuracy, predictions) on the source task's held-out images of the run's backbone as `run_weights`
    hold it, under the source head."""
    data = data or load_data(task.data)
    model = build_model(ModelConfig(cfg.model.backbone, "none", HeadConfig()), len(task.classes),
                        task.data.image_size)
    backbone = {k: v for k, v in run_weights.items() if not k.startswith("head.")}
    model.load_state_dict({**backbone, **task.head})
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(to_float(data.val_x[i : i + 256])).argmax(1)
                               for i in range(0, len(data.val_x), 256)])
    return float((predicted == data.val_y).float().mean()), predicted.numpy()


def forgetting(task: SourceTask, cfg: RunConfig, weights_by_step: dict[int, dict]) -> pd.DataFrame:
    """step, accuracy, unchanged: the source task's held-out accuracy at each kept step, and the share of
    its predictions identical to those at the first step given (the run's start)."""
    data, rows, first = load_data(task.data), [], None
    for step in sorted(weights_by_step):
        accuracy, predicted = source_accuracy(task, cfg, weights_by_step[step], data)
        first = predicted if first is None else first
        rows.append({"step": step, "accuracy": accuracy, "unchanged": float((predicted == first).mean())})
    return pd.DataFrame(rows)


# -----------------------------------------------------------------------------
# What each setting costs


def _clock(cuda: bool, device: torch.device) -> float:
    if cuda:  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class _SavedBytes:
    """Counts what autograd saves for backward, once per tensor, apart from the parameters themselves."""
    skip: set[int]
    where: str = "backbone"
    seen: set = dataclasses.field(default_factory=set)
    bytes: dict = dataclasses.field(default_factory=lambda: {"backbone": 0, "head": 0})

    def pack(self, t: torch.Tensor):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if t.data_ptr() not in self.skip and key not in self.seen:
            self.seen.add(key)
            self.bytes[self.where] += t.numel() * t.element_size()
        return t


def frozen_blocks_in_words(policies: dict[str, str], measure: str) -> str:
    """What the drift ("drift") or gradient ("gradient") heat maps show in frozen blocks, true of every run shown:
    `policies` maps each run's name to the BatchNorm policy of its frozen blocks. Under `affine` a frozen block's
    γ and β train, so it moves and gets a gradient; under `stats` its running statistics move but no weight."""
    affine = [name for name, policy in policies.items() if policy == "affine"]
    stats = [name for name, policy in policies.items() if policy == "stats"]
    if measure == "drift":
        said = ("**Frozen blocks read exactly 0**: freezing means those numbers never change"
                + (f", except in {', '.join(affine)} (BatchNorm `affine`): there a frozen block's γ and β train, "
                   "so its cells are small but not 0" if affine else "") + ".")
        if stats:
            said += (f" In {', '.join(stats)} (BatchNorm `stats`) frozen blocks' running statistics move (see "
                     "What BatchNorm did), which this weight drift leaves out.")
        return said
    return ("A frozen block gets **no gradient at all** (“frozen”): backpropagation stops at the first frozen "
            "block from the top, which is also why frozen training is cheaper"
            + (f", except in {', '.join(affine)} (BatchNorm `affine`): there γ and β of every frozen block train, "
               "so gradients reach them, all the way down" if affine else "") + ".")


WARMUP_STEPS = 2  # steps timed for nothing first: the first runs allocate and pick kernels


def freeze_cost(model_cfg: ModelConfig, data: ImageData, batch_size: int = 32, repeats: int = 3,
                progress: Progress | None = None, device: torch.device | None = None) -> pd.DataFrame:
    """For k = 0..K frozen leading blocks (fine-tune everything .. feature extraction): trainable
    parameters, the median seconds of forward, backward and optimizer step on one batch over `repeats` steps
    after WARMUP_STEPS, the spread of the whole step's time (its interquartile range, `step_spread_s`), and the
    bytes autograd saves for backward (in the backbone, in the head); on CUDA also peak allocated memory.
    Architecture only: the weights do not change the cost. The table's attrs name the device."""
    device = device or pick_device()

    def build() -> FreezeLabNet:
        return build_model(replace(model_cfg, weights="none"), data.num_classes, data.config.image_size).to(device)

    blocks = build().block_names
    x = to_float(data.train_x[:batch_size].to(device))
    y = data.train_y[:batch_size].to(device)
    cuda = device.type == "cuda"
    rows = []
    for k in range(len(blocks) + 1):
        model = build()
        freezing.apply(model, FreezePlan.freeze_to(blocks, k))
        model.train()
        opt = make_optimizer(model, OptimConfig())
        timings = {"forward": [], "backward": [], "step": []}
        saved = None
        for rep in range(repeats + WARMUP_STEPS):  # the warm-up's first step is where the bytes are counted
            counter = _SavedBytes({p.data_ptr() for p in model.parameters()})
            hook = model.head.register_forward_pre_hook(lambda *_, c=counter: setattr(c, "where", "head"))
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
                loss = F.cross_entropy(forward(model, x), y)
            t1 = _clock(cuda, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = _clock(cuda, device)
            opt.step()
            t3 = _clock(cuda, device)
            hook.remove()
            if rep == 0:
                saved = counter.bytes
                peak = torch.cuda.max_memory_allocated(device) if cuda else None
            elif rep >= WARMUP_STEPS:
                for key, value in zip(timings, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    timings[key].append(value)
        row = {"frozen_blocks": k, "frozen": ", ".join(blocks[:k]) or "none",
               "trainable_params": count_params(model, trainable_only=True),
               **{f"{key}_s": statistics.median(v) for key, v in timings.items()},
               "saved_backbone_bytes": saved["backbone"], "saved_head_bytes": saved["head"],
               "cuda_peak_bytes": peak}
        row["step_s"] = row["forward_s"] + row["backward_s"] + row["step_s"]
        totals = [sum(parts) for parts in zip(*timings.values(), strict=True)]
        quartiles = statistics.quantiles(totals, n=4) if len(totals) > 1 else [totals[0]] * 3
        row["step_spread_s"] = quartiles[2] - quartiles[0]
        row["saved_bytes"] = saved["backbone"] + saved["head"]
        rows.append(row)
        if progress:
            progress(k + 1, len(blocks) + 1, f"{k} frozen blocks measured")
    table = pd.DataFrame(rows)
    table.attrs["device"] = str(device)
    return table


def cost_in_words(table: pd.DataFrame) -> str:
    """What a freeze_cost table shows, in words that hold for its numbers: memory saved for backward is exact;
    a time difference against fine-tuning everything counts only where it is larger than both measurements'
    spread, else it is said to be within the noise."""
    base = table.iloc[0]
    most = table.iloc[-1]
    said = [f"Freezing every block keeps {most.saved_bytes / 2**20:,.1f} MB for backward instead of "
            f"{base.saved_bytes / 2**20:,.1f} MB (counted exactly)."]
    faster, slower, noise = [], [], []
    for row in table.iloc[1:].itertuples():
        gap = row.step_s - base.step_s
        if abs(gap) <= row.step_spread_s + base.step_spread_s:
            noise.append(row.frozen_blocks)
        else:
            (faster if gap < 0 else slower).append(row.frozen_blocks)
    if faster:
        said.append(f"A step is measurably faster than with none frozen at k = {', '.join(map(str, faster))}.")
    if slower:
        said.append(f"It was measured slower at k = {', '.join(map(str, slower))} (on a CPU shared with this app a "
                    "measurement can move; measure again).")
    if noise:
        said.append(f"At k = {', '.join(map(str, noise))} the difference in time is within the measurement's "
                    "spread: this measurement cannot tell them apart.")
    return " ".join(said)


# -----------------------------------------------------------------------------
# The audit's flags: silent freezing mistakes


@dataclass(frozen=True)
class Flag:
    block: str
    problem: str
    fix: str


def audit_flags(model: FreezeLabNet, optimizer: torch.optim.Optimizer | None = None,
                initial: dict[str, torch.Tensor] | None = None, stats: pd.DataFrame | None = None,
                saved_plan: FreezePlan | None = None) -> list[Flag]:
    """The mistakes users of other frameworks report, found on a model, its optimizer, its starting
    weights (`initial`), its recorded block statistics and the plan a checkpoint was saved with."""
    flags = []
    plan = model.plan
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]} if optimizer is not None else None
    moved = drift(model, initial) if initial is not None else {}
    for name, module in parts(model):
        params = list(module.parameters())
        trainable = [p for p in params if p.requires_grad]
        frozen_block = name != "head" and not any(p.requires_grad for p in params
                                                 if p.dim() > 1)  # its convolutions and linear layers
        if in_optimizer is not None:
            if any(id(p) not in in_optimizer for p in trainable):
                flags.append(Flag(name, "trainable parameters are missing from the optimizer, so they never "
                                        "change", "build the optimizer after applying the plan "
                                        "(core.training.make_optimizer)"))
            if any(id(p) in in_optimizer for p in params if not p.requires_grad):
                flags.append(Flag(name, "frozen parameters are inside the optimizer: weight decay and momentum "
                                        "still move them", "give the optimizer only parameters with "
                                        "requires_grad (core.freezing.param_groups)"))
        bn_moved = moved.get(name, (None, None))[1]
        if frozen_block and bn_moved and (plan is None or plan.bn != "stats"):
            flags.append(Flag(name, f"BatchNorm statistics of this frozen block changed (drift {bn_moved:.2g}): "
                                    "model.train() put its BatchNorm layers back in training mode",
                              "keep BatchNorm in frozen blocks in eval mode (policy 'frozen'), or choose "
                              "'stats' on purpose"))
    if stats is not None and not stats.empty:
        for name, rows in stats.groupby("block", sort=False):
            grads = rows.grad_norm.dropna()
            if len(grads) and (grads == 0).all():
                flags.append(Flag(name, "this block trains but its gradient was zero in every epoch, so it "
                                        "never learns", "check that its output reaches the loss (a truncation "
                                        "or a detach in between)"))
    if saved_plan is not None and plan is not None and saved_plan != plan:
        changed = [f.name for f in dataclasses.fields(FreezePlan)
                   if getattr(saved_plan, f.name) != getattr(plan, f.name)]
        flags.append(Flag("model", f"this run was resumed under another plan than the one it was saved with "
                                   f"({', '.join(changed)} differ)", "resume with the plan the checkpoint "
                                   "was saved with, or start a new run"))
    return flags


def run_flags(state, saved: dict, stats: pd.DataFrame | None = None) -> list[Flag]:
    """The audit's flags for a run restored from its checkpoint `saved` (core.training.restore_run)."""
    return audit_flags(state.model, state.optimizer, state.initial, stats, plan_from_checkpoint(saved))


def plan_from_checkpoint(saved: dict) -> FreezePlan | None:
    """The plan a checkpoint was saved under (None for checkpoints from before plans were kept)."""
    return None if saved.get("plan") is None else from_plain(FreezePlan, saved["plan"])

