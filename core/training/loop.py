"""Training in short, resumable bursts.

    state = start_run(RunConfig(...))
    for event in run_burst(state, steps=50):   # StepEnd, EpochEnd, PhaseSwitch, CacheStatus, BurstEnd
        ...
    for event in run_burst(state, steps=50):   # carries on exactly where the last burst stopped
        ...

Everything a burst needs to carry on — model, optimizer, data order, position in the epoch, RNG
states, early-stopping counters — lives in `RunState`, and `checkpoint`/`restore_run` round-trip it,
so two bursts of 50 steps give the same metrics as one of 100.

The frozen prefix's output is cached while that is exact (core/training/feature_cache.py).

Its configuration lives in core/training/config.py, its events in core/training/events.py.

Sections: pure helpers · run state · the burst loop · checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from core import freezing
from core.data.datasets import ImageData, augment, load_data, to_float
from core.models.backbones import ModelConfig
from core.models.network import FreezeLabNet, build_model, evaluating
from core.runtime import rng
from core.runtime.device import autocast, memory_format, pick_device
from core.runtime.download import Progress
from core.training import block_stats, feature_cache
from core.training.config import OPTIMIZERS, OptimConfig, RunConfig, validate_config
from core.training.events import BlockStats, BurstEnd, CacheStatus, EndReason, EpochEnd, Event, PhaseSwitch, StepEnd
from core.training.feature_cache import FeatureCache, frozen_prefix

# -----------------------------------------------------------------------------
# Pure helpers


def load_optimizer_machinery() -> None:
    """Build one optimizer and drop it: torch.optim's first optimizer imports torch._dynamo (a second of CPU on a
    laptop), which a server does in the background rather than in the first page that shows a plan's rates."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def make_optimizer(model, cfg: OptimConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """An optimizer over the trainable parameters only, one group per block (see freezing.param_groups)."""
    groups = freezing.param_groups(model, cfg.lr if lr is None else lr)
    if not groups:
        raise ValueError("Nothing to train: the plan freezes every parameter.")
    for g in groups:
        g["base_lr"] = g["lr"]
    if cfg.name == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"Optimizer is one of {OPTIMIZERS}, not {cfg.name!r}.")


def lr_factor(step: int, total: int, cosine: bool) -> float:
    """Multiplier on every group's LR at `step` of `total` (steps counted within a phase)."""
    if not cosine or total <= 0:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def forward(model: FreezeLabNet, x: torch.Tensor, start: int = 0, pooled: bool = False) -> torch.Tensor:
    """Training's forward pass: float logits for images `x` (or for cached features of blocks[:start], pooled
    or not). A frozen prefix runs without autograd: no parameter there needs a gradient, so nothing is saved
    for backward."""
    with autocast(model.mean.device):
        if start == 0 and (k := frozen_prefix(model)) > 0:
            with torch.no_grad():
                x, start = model.features(x, 0, k), k
        return model.classify(x, start, pooled).float()


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, start: int = 0,
             pooled: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode. `x` is uint8 images, or cached features of
    blocks[:start] when `start` > 0 (pooled vectors when `pooled`)."""
    device = model.mean.device
    loss_sum, correct = 0.0, 0
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            with autocast(device):
                logits = model.classify(to_float(xb) if start == 0 else xb, start, pooled).float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    return loss_sum / max(len(x), 1), correct / max(len(x), 1)


def phase_at(cfg: RunConfig, epoch: int) -> int:
    """Index of the phase that trains epoch number `epoch` + 1."""
    end = 0
    for i, phase in enumerate(cfg.phases[:-1]):
        end += phase.epochs or 0
        if epoch < end:
            return i
    return len(cfg.phases) - 1


# -----------------------------------------------------------------------------
# Run state


@dataclass
class RunState:
    config: RunConfig
    model: FreezeLabNet
    data: ImageData
    device: torch.device
    optimizer: torch.optim.Optimizer | None = None
    gen: torch.Generator = field(default_factory=torch.Generator)  # data order and augmentation
    rng: torch.Tensor | None = None  # this run's state of torch's global RNG (dropout); see core/runtime/rng.py
    cuda_rng: torch.Tensor | None = None  # the same on CUDA
    step: int = 0
    epoch: int = 0  # completed epochs
    phase: int = 0
    phase_start: int = 0  # step at which the current phase began
    order: torch.Tensor | None = None  # this epoch's shuffled indices
    pos: int = 0  # batches of `order` already trained
    sums: tuple[float, int, int] = (0.0, 0, 0)  # this epoch so far: loss sum, correct, images
    best_val: float = math.inf
    bad_epochs: int = 0
    start_loss: float | None = None  # the first step's loss: divergence is judged against it
    seconds: float = 0.0  # training wall time so far
    done: str = ""  # why the run is over, an EndReason ("" while it can go on)
    message: str = ""
    cache: FeatureCache | None = None
    cache_reason: str = ""
    initial: dict[str, torch.Tensor] | None = None  # the starting weights, which drift is measured from
    gradients: block_stats.GradientMeter | None = None  # this epoch's gradient norms so far

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train_x) / self.config.optim.batch_size)

    @property
    def lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)


def start_run(cfg: RunConfig, data: ImageData | None = None, device: torch.device | None = None,
              progress: Progress | None = None) -> RunState:
    """A fresh run: data, model with its weights and a seeded head, the first phase's plan."""
    validate_config(cfg)
    data = _data_for(cfg, data, progress)
    return _new_state(cfg, data, device, cfg.model, progress)


def _data_for(cfg: RunConfig, data: ImageData | None, progress: Progress | None = None) -> ImageData:
    if data is None:
        return load_data(cfg.data, progress)
    if data.config != cfg.data:  # augmentation and the cache follow cfg.data: the images must match it
        raise ValueError(f"The images were loaded for {data.config}, but the run asks for {cfg.data}.")
    return data


def _new_state(cfg: RunConfig, data: ImageData, device: torch.device | None, model_cfg: ModelConfig,
               progress: Progress | None) -> RunState:
    device = device or pick_device()
    model = build_model(model_cfg, data.num_classes, data.config.image_size, progress, seed=cfg.seed)
    model.to(device, memory_format=memory_format(device))
    cuda_rng = None
    if device.type == "cuda":
        cuda_rng = torch.Generator(device).manual_seed(cfg.seed + 1).get_state()
    # Dropout's stream starts from the run's seed too, offset so that it does not repeat the data order's.
    state = RunState(cfg, model, data, device, gen=torch.Generator().manual_seed(cfg.seed),
                     rng=torch.Generator().manual_seed(cfg.seed + 1).get_state(), cuda_rng=cuda_rng)
    enter_phase(state, phase_at(cfg, 0))
    state.initial = block_stats.snapshot(state.model)  # after the first plan: a truncation has happened
    return state


def enter_phase(state: RunState, index: int) -> None:
    """Apply phase `index`'s plan and give it a fresh optimizer (as Keras recompiles after unfreezing)."""
    phase = state.config.phases[index]
    freezing.apply(state.model, phase.plan)
    state.model.train()
    state.optimizer = make_optimizer(state.model, state.config.optim, phase.lr)
    state.phase, state.phase_start = index, state.step
    state.gradients = block_stats.GradientMeter(state.model)


def refresh_cache(state: RunState) -> CacheStatus | None:
    """Build, keep or drop the feature cache for the current plan (feature_cache.decide says how); a CacheStatus
    when anything changed, else None."""
    model, data = state.model, state.data
    if state.cache is not None and state.cache.plan == model.plan:
        return None
    t0 = time.perf_counter()
    decision = feature_cache.decide(model, state.config, len(data.train_x) + len(data.val_x))
    was_on = state.cache is not None
    state.cache = None
    if decision.on:
        k, pooled, on_disk = decision.blocks, decision.pooled, decision.on_disk
        state.cache = FeatureCache(k, model.plan, feature_cache.features(model, data.train_x, k, pooled, on_disk),
                                   feature_cache.features(model, data.val_x, k, pooled, on_disk), pooled, on_disk)
        # Building it is part of what the run costs: a frozen run's cheap epochs come after this one pass, and
        # a comparison at equal training time counts it.
        state.seconds += time.perf_counter() - t0
    if not decision.on and not was_on and state.cache_reason == decision.reason:
        return None
    state.cache_reason = decision.reason
    return CacheStatus(state.step, decision.on, decision.blocks, decision.reason)


# -----------------------------------------------------------------------------
# The burst loop


@dataclass(frozen=True)
class BurstTarget:
    """Where a burst ends: at step `step` or at the end of epoch `epoch`, whichever comes first; it
    trains at most `steps` steps. The job manager trains one burst as several slices towards it."""
    step: int | None
    epoch: int | None
    steps: int

    @classmethod
    def of(cls, state: RunState, steps: int | None = None, epochs: int | None = None) -> BurstTarget:
        if steps is None and epochs is None:
            raise ValueError("Give a burst steps or epochs.")
        most = [n for n in (steps, None if epochs is None else epochs * state.steps_per_epoch - state.pos)
                if n is not None]
        return cls(None if steps is None else state.step + steps, None if epochs is None else state.epoch + epochs,
                   max(min(most), 0))

    def reached(self, state: RunState) -> bool:
        return state.step == self.step or state.epoch == self.epoch

    def slice(self, state: RunState, steps: int) -> dict[str, int | None]:
        """run_burst's arguments for at most `steps` more steps towards this target."""
        n = steps if self.step is None else min(steps, self.step - state.step)
        return {"steps": max(n, 0), "epochs": None if self.epoch is None else self.epoch - state.epoch}


def _phase_steps(state: RunState) -> int:
    cfg = state.config
    first = sum(p.epochs or 0 for p in cfg.phases[: state.phase])
    length = cfg.phases[state.phase].epochs if state.phase < len(cfg.phases) - 1 else cfg.epochs - first
    return max(length, 1) * state.steps_per_epoch


def _train_step(state: RunState, idx: torch.Tensor) -> tuple[float, int]:
    """One optimizer step on the images `idx`; returns (loss, correct). The frozen prefix runs without
    gradients, or is read from the cache."""
    model, data, cfg, device = state.model, state.data, state.config, state.device
    y = data.train_y[idx].to(device)
    cache = state.cache
    if cache is not None:
        x, start = cache.train[idx.to(cache.train.device)].to(device), cache.blocks
    else:  # uint8 to the device (a quarter of the bytes floats take), augmented there
        xb = augment(data.train_x[idx].to(device), state.gen, cfg.data.flip, cfg.data.crop_pad)
        x, start = to_float(xb), 0
    factor = lr_factor(state.step - state.phase_start, _phase_steps(state), cfg.optim.cosine)
    for g in state.optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
    cuda = device.type == "cuda"
    with rng.LOCK:  # this run's own stream of the global RNG, for dropout and stochastic depth
        torch.set_rng_state(state.rng)
        if cuda:
            torch.cuda.set_rng_state(state.cuda_rng, device)
        logits = forward(model, x, start, cache is not None and cache.pooled)
        state.rng = torch.get_rng_state()
        if cuda:
            state.cuda_rng = torch.cuda.get_rng_state(device)
    loss = F.cross_entropy(logits, y)
    if not torch.isfinite(loss):
        return float("nan"), 0
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.gradients.add()
    state.optimizer.step()
    return loss.item(), int((logits.argmax(1) == y).sum())


DIVERGENCE_FACTOR = 100  # a loss this many times above where the run started (or chance) has diverged


def _diverged(state: RunState, loss: float) -> str | None:
    """Why the run has diverged, or None: the loss is not a number, or far above its start. Cross-entropy
    starts near chance level, ln(classes), and training never multiplies it a hundredfold."""
    if math.isnan(loss):
        return "the loss stopped being a finite number"
    if state.start_loss is None:
        state.start_loss = loss
    bound = DIVERGENCE_FACTOR * max(state.start_loss, math.log(state.data.num_classes))
    if loss > bound:
        return f"the loss rose to {loss:.3g}, over {DIVERGENCE_FACTOR} times its start ({state.start_loss:.3g})"
    return None


def _block_stats(state: RunState) -> BlockStats:
    """This epoch's per-block figures; the gradient meter starts the next epoch from zero."""
    moved = block_stats.drift(state.model, state.initial) if state.initial is not None else {}
    grads = state.gradients.means()
    state.gradients = block_stats.GradientMeter(state.model)
    blocks = tuple(grads)
    return BlockStats(state.step, state.epoch, blocks, tuple(moved.get(b, (None, None))[0] for b in blocks),
                      tuple(moved.get(b, (None, None))[1] for b in blocks), tuple(grads[b] for b in blocks))


def _end_epoch(state: RunState, images_per_sec: float) -> Iterator[Event]:
    cfg, data = state.config, state.data
    state.epoch += 1
    loss_sum, correct, seen = state.sums
    if state.cache is not None:
        val_loss, val_acc = evaluate(state.model, state.cache.val, data.val_y, start=state.cache.blocks,
                                     pooled=state.cache.pooled)
    else:
        val_loss, val_acc = evaluate(state.model, data.val_x, data.val_y)
    yield EpochEnd(state.step, state.epoch, loss_sum / max(seen, 1), correct / max(seen, 1), val_loss, val_acc,
                   state.lr, images_per_sec, state.seconds)
    yield _block_stats(state)
    state.order, state.pos, state.sums = None, 0, (0.0, 0, 0)
    if val_loss < state.best_val - 1e-6:
        state.best_val, state.bad_epochs = val_loss, 0
    else:
        state.bad_epochs += 1
    if state.epoch >= cfg.epochs:
        state.done = EndReason.FINISHED
    elif cfg.patience is not None and state.bad_epochs >= cfg.patience:
        state.done = EndReason.EARLY_STOPPED
        state.message = f"no better validation loss for {cfg.patience} epochs"
    elif (next_phase := phase_at(cfg, state.epoch)) != state.phase:
        enter_phase(state, next_phase)
        yield PhaseSwitch(state.step, state.epoch, next_phase, state.model.plan.trainable, state.lr)
        if (status := refresh_cache(state)) is not None:
            yield status


def run_burst(state: RunState, steps: int | None = None, epochs: int | None = None,
              should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
    """Train `steps` optimizer steps or `epochs` epochs (whichever ends first when both are given),
    yielding events; always ends with a BurstEnd. `should_stop` is checked before every step and leaves
    a state that resumes."""
    target = BurstTarget.of(state, steps, epochs)
    if state.done:
        yield BurstEnd(state.step, state.epoch, state.done, state.message)
        return
    cuda = state.device.type == "cuda"
    if (status := refresh_cache(state)) is not None:
        yield status
    bs, n = state.config.optim.batch_size, len(state.data.train_x)
    reason = EndReason.BUDGET
    epoch_images, epoch_time = 0, 0.0
    while not state.done:
        if target.reached(state):
            break
        if should_stop is not None and should_stop():
            reason = EndReason.STOPPED
            break
        if state.order is None:
            state.order = torch.randperm(n, generator=state.gen)
        idx = state.order[state.pos * bs : (state.pos + 1) * bs]
        t0 = time.perf_counter()
        loss, correct = _train_step(state, idx)
        if cuda:
            torch.cuda.synchronize(state.device)
        dt = time.perf_counter() - t0
        if (why := _diverged(state, loss)) is not None:
            state.done = EndReason.DIVERGED
            state.message = f"{why} at step {state.step + 1} (learning rate {state.lr:g}); try a lower learning rate"
            break
        state.step, state.pos, state.seconds = state.step + 1, state.pos + 1, state.seconds + dt
        loss_sum, right, seen = state.sums
        state.sums = (loss_sum + loss * len(idx), right + correct, seen + len(idx))
        epoch_images, epoch_time = epoch_images + len(idx), epoch_time + dt
        yield StepEnd(state.step, state.epoch + min(state.pos * bs, n) / n, loss, state.lr, len(idx) / max(dt, 1e-9),
                      state.seconds)
        if state.pos * bs >= n:
            yield from _end_epoch(state, epoch_images / max(epoch_time, 1e-9))
            epoch_images, epoch_time = 0, 0.0
    yield BurstEnd(state.step, state.epoch, state.done or reason, state.message)


# -----------------------------------------------------------------------------
# Checkpoints: everything a run needs to carry on, as tensors and plain values


def checkpoint(state: RunState) -> dict:
    """A `weights_only`-loadable snapshot of the run (the cache is not saved: it is rebuilt)."""
    return {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "gen": state.gen.get_state(),
        "rng": state.rng,
        "cuda_rng": state.cuda_rng,  # None off CUDA
        # `done` as a plain str, not an EndReason: weights_only loads builtin types only
        "counters": {k: getattr(state, k) for k in ("step", "epoch", "phase", "phase_start", "pos", "best_val",
                                                   "bad_epochs", "start_loss", "seconds", "message")}
        | {"done": str(state.done)},
        "sums": list(state.sums),
        "order": state.order,
        "initial": state.initial,
        "gradients": state.gradients.state(),
        "plan": dataclasses.asdict(state.model.plan),  # the plan it was trained under, for the audit
    }


def model_from_state(cfg: RunConfig, weights: dict, num_classes: int, image_size: int,
                     device: torch.device | None = None) -> FreezeLabNet:
    """The run's model (truncated as its plan says) holding `weights`, in eval mode: for analysis."""
    model = build_model(replace(cfg.model, weights="none"), num_classes, image_size, seed=cfg.seed)
    cut = next((p.plan.truncate_after for p in cfg.phases if p.plan.truncate_after), None)
    if cut:
        model.truncate(cut)
    model.load_state_dict(weights)
    return model.to(device or torch.device("cpu")).eval()


def restore_run(cfg: RunConfig, saved: dict, data: ImageData | None = None,
                device: torch.device | None = None) -> RunState:
    """Rebuild a run from `checkpoint(state)`; training goes on exactly as if it had never stopped."""
    validate_config(cfg)
    data = _data_for(cfg, data)
    # The checkpoint holds every weight: build the bare architecture, nothing is downloaded.
    state = _new_state(cfg, data, device, replace(cfg.model, weights="none"), None)
    counters = saved["counters"]
    if counters["phase"] != state.phase:
        enter_phase(state, counters["phase"])
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    for k, v in counters.items():
        setattr(state, k, v)
    if state.done == EndReason.FINISHED and state.epoch < cfg.epochs:
        state.done = ""  # its budget has grown since (RunStore.lengthen): it carries on
    state.gen.set_state(saved["gen"])
    state.rng = saved["rng"]
    if saved.get("cuda_rng") is not None and state.device.type == "cuda":
        state.cuda_rng = saved["cuda_rng"]
    state.sums = tuple(saved["sums"])
    state.order = saved["order"]
    initial = saved.get("initial")  # None in checkpoints from before drift was recorded: no drift then
    state.initial = None if initial is None else {k: v.to(state.device) for k, v in initial.items()}
    state.gradients.load(saved.get("gradients"))
    return state
