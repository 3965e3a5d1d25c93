"""A run's live progress as the pages show it: what every implementation of the training interface returns
from `snapshot`, a plain copy that crosses threads and the trainer's line."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.store.status import RunProblem, RunStatus


@dataclass
class Snapshot:
    """What the UI shows for one run; a copy, safe to read from any thread."""
    run_id: str
    label: str = ""
    status: str = RunStatus.CREATED
    message: str = ""
    problem: RunProblem = RunProblem.NONE  # what stopped it, where something can be done about it (a restart)
    step: int = 0
    epoch: float = 0.0
    burst_done: int = 0  # steps trained in the current burst
    burst_total: int = 0  # steps the current burst will train at most
    images_per_sec: float = 0.0
    cache_on: bool = False
    cache_reason: str = ""
    phase: int = 0
    last_epoch: dict = field(default_factory=dict)  # the latest EpochEnd, as a dict
    preparing: str = ""  # before the first step: what is happening ("downloading resnet18-f37072fd.pth")
    prepare_done: int = 0  # ...how far it is (bytes or images), of
    prepare_total: int = 0  # ...this many (0: not known)

    @property
    def progress(self) -> float:
        return min(self.burst_done / self.burst_total, 1.0) if self.burst_total else 0.0

    @property
    def preparation(self) -> tuple[float, str] | None:
        """(fraction done, in words) while the run prepares (downloads weights or data, decodes images);
        None once it trains."""
        if not self.preparing:
            return None
        done, total = self.prepare_done, self.prepare_total
        if self.preparing.startswith("downloading"):
            amount = f"{done / 1e6:,.1f} of {total / 1e6:,.1f} MB" if total else f"{done / 1e6:,.1f} MB"
        else:
            amount = f"{done:,} of {total:,}" if total else f"{done:,}"
        return (min(done / total, 1.0) if total else 0.0), f"{self.preparing}: {amount}"
