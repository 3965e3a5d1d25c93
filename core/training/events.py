"""What a training burst reports, as plain data (core/training/loop.py yields them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# -----------------------------------------------------------------------------
# Events: what a burst reports, as plain data


@dataclass(frozen=True)
class StepEnd:
    step: int
    epoch: float  # fractional: 2.5 is half-way through the third epoch
    loss: float
    lr: float
    images_per_sec: float
    seconds: float  # training time of the run so far


@dataclass(frozen=True)
class EpochEnd:
    step: int
    epoch: int
    train_loss: float  # mean over the epoch's batches, as they were trained (augmented, dropout on)
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    images_per_sec: float
    seconds: float


@dataclass(frozen=True)
class PhaseSwitch:
    step: int
    epoch: int
    phase: int  # index of the phase now starting
    trainable: tuple[str, ...]
    lr: float


@dataclass(frozen=True)
class CacheStatus:
    step: int
    on: bool
    blocks: int  # leading blocks whose output is cached
    reason: str  # why it is on, or why it is off


@dataclass(frozen=True)
class BlockStats:
    """Per block (backbone blocks, then the head) at an epoch's end; see core/training/block_stats.py."""
    step: int
    epoch: int
    blocks: tuple[str, ...]
    drift: tuple[float | None, ...]  # ‖w − w₀‖ / ‖w₀‖ over the block's parameters
    bn_drift: tuple[float | None, ...]  # the same over BatchNorm running statistics; None without BatchNorm
    grad_norm: tuple[float | None, ...]  # mean over the epoch's steps; None for a block with no gradient


class EndReason(StrEnum):
    """Why a burst ended (the values are stored in the run store's events)."""
    BUDGET = "budget"  # it trained the steps or epochs it was given; the run can go on
    STOPPED = "stopped"  # asked to stop
    FINISHED = "finished"  # the run's whole length is trained
    EARLY_STOPPED = "early_stopped"  # its validation loss stopped improving for `patience` epochs
    DIVERGED = "diverged"  # its loss stopped being a finite number, or exploded


@dataclass(frozen=True)
class BurstEnd:
    step: int
    epoch: int
    reason: EndReason
    message: str = ""


Event = StepEnd | EpochEnd | BlockStats | PhaseSwitch | CacheStatus | BurstEnd
