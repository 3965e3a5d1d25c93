"""The one interface to training: what the app, the CLI and the trainer process may ask of whatever trains.

Two classes implement it: `JobManager` (core/execution/jobs.py) trains in threads of the process that holds it;
`TrainerClient` (core/execution/trainer_client.py) forwards each call to a `JobManager` in the trainer process
(core/execution/trainer_server.py). The calls below marked abstract are the training calls: the trainer answers
exactly these (its `CALLS`) and the client's methods are made from them, so adding a call is one method here and
its body in `JobManager`.

Who may do what is decided here, once: the calls that make or change runs (`create_run`, `start`, `stop`,
`lengthen`, `delete`, and `stop_training`) take `by`, who asks (core/runtime/shares.py's `Caller`: a browser
session, or the command line). A browser's runs name only what the operator shares and allows (checked when a
run is made: core/models/bounds.py), and a browser changes only its own runs and everyone's (`NotYours`
otherwise). The `JobManager` checks both, in whichever process it trains, so a run made through the trainer is
checked in the trainer; the app's server makes a browser's `Caller` from the session it serves (ui/session.py),
and nothing a browser sends names it.

Besides the job manager's bursts, a Ray Tune sweep (core/execution/ray_engine.py) trains runs in a thread of
the process that started it; `start_sweep` keeps it here, so `is_training` and `stop_training` cover it too.
Models read back from the store (Explain, Inside, the audit) are not training: core/store/trained_models.py.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from core.runtime.shares import COMMAND_LINE, Caller
from core.store.status import RunStatus
from core.training.events import EndReason

if TYPE_CHECKING:
    from core.data.datasets import ImageData
    from core.execution.snapshot import Snapshot
    from core.store.runs import RunStore
    from core.training.config import RunConfig

# What every engine of training keeps to (the job manager and the Ray engine). Nothing here imports torch: the
# server and the trainer import this before it.
SHUTDOWN_WAIT_S = 30.0  # how long an exiting process waits for its runs to checkpoint
CHECKPOINT_EVERY_S = 60.0  # during long bursts (and Ray trials) a checkpoint at least this often: what a crash loses
HEARTBEAT_S = 3.0  # how often a manager tells the store it is alive (leases.LEASE_S says when it is gone)
# A run's status once a burst has ended, by the burst's end reason.
FINAL_STATUS = {EndReason.FINISHED: RunStatus.FINISHED, EndReason.EARLY_STOPPED: RunStatus.FINISHED,
                EndReason.DIVERGED: RunStatus.DIVERGED, EndReason.STOPPED: RunStatus.STOPPED,
                EndReason.BUDGET: RunStatus.PAUSED}


class NotYours(RuntimeError):
    """A browser session asked to start, stop, continue or delete runs another session made."""


class Training(ABC):
    store: RunStore
    # Whether runs train in this process: then images the caller decodes (with a progress bar) are shared with
    # the workers through `add_data`; a trainer in its own process decodes its own, saying how far it is.
    in_this_process: ClassVar[bool]

    def __init__(self) -> None:
        self._sweeps: dict[str, tuple[threading.Thread, threading.Event]] = {}  # by group: thread, stop request
        self._sweeps_lock = threading.Lock()
        self._warming: threading.Thread | None = None

    # --- the training calls (the trainer answers these, and only these) -------------------------------------
    # `by` in the calls that make or change runs: who asks (the module's docstring says what each may do).
    @abstractmethod
    def create_run(self, cfg: RunConfig, group: str = "", *, by: Caller = COMMAND_LINE) -> str:
        """A new stored run in `group`, belonging to `by`'s session (the command line's: everyone's). A browser's
        config naming what the operator does not share or allow is refused (NotShared, in words), nothing
        stored."""

    @abstractmethod
    def start(self, run_ids: list[str], steps: int | None = None, epochs: int | None = None,
              restart: bool = False, *, by: Caller = COMMAND_LINE) -> object:
        """Train a burst of `steps` or `epochs` for each run, interleaved, in the background. A run another
        live process trains is refused, and so are runs `by` may not change. `restart`: the user's word that runs
        whose checkpoint is missing may start again from step 0, deleting their stored history."""

    @abstractmethod
    def stop(self, run_ids: list[str] | None = None, *, by: Caller = COMMAND_LINE) -> None:
        """Ask the job manager's runs (all when None: all that `by` may change) to stop after their current
        step."""

    @abstractmethod
    def lengthen(self, run_ids: list[str], epochs: int, *, by: Caller = COMMAND_LINE) -> list[str]:
        """Give finished runs `epochs` more in their budget, so a burst carries them on; returns those lengthened
        (a run that trains, failed or diverged is left as it is)."""

    @abstractmethod
    def is_busy(self, run_id: str) -> bool:
        """Whether the job manager trains this run now."""

    @abstractmethod
    def delete(self, run_id: str, *, by: Caller = COMMAND_LINE) -> None:
        """Remove a run everywhere: store, checkpoints, memory. A run that trains is refused."""

    @abstractmethod
    def snapshot(self, run_id: str) -> Snapshot:
        """A copy of the run's live progress (status, step, last epoch, what it prepares)."""

    @abstractmethod
    def snapshots_of(self, run_ids: list[str]) -> list[Snapshot]:
        """`snapshot` of each run, in order, in one call (the live view asks twenty times a second)."""

    @abstractmethod
    def snapshots(self) -> dict[str, Snapshot]:
        """Every run this manager knows, by id."""

    @abstractmethod
    def live_runs(self) -> list[str]:
        """Runs whose training state is held in memory."""

    @abstractmethod
    def prepare_ahead(self, configs: list[RunConfig]) -> None:
        """Build fresh runs for `configs` now (model, weights, feature cache): a run created later with one of
        these configs adopts its state and trains at once, exactly as a fresh start would."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether a click would train at once (nothing started or built ahead is still on its way)."""

    # --- the same for every implementation -------------------------------------------------------------------
    def add_data(self, data: ImageData) -> None:
        """Share images the caller has decoded already with workers in this process (see `in_this_process`);
        a trainer in its own process decodes its own, so by default this keeps nothing."""
        return None

    def warm_up(self, configs: list[RunConfig]) -> None:
        """In the background: get ready to train `configs` at once (`ready` says when)."""
        self._warming = threading.Thread(target=self.prepare_ahead, args=(configs,), daemon=True,
                                         name="freezelab-warm-up")
        self._warming.start()

    def _warming_up(self) -> bool:
        return self._warming is not None and self._warming.is_alive()

    def wait_warmed_up(self, timeout: float) -> bool:
        """Block until a click would train at once (`ready`), for at most `timeout` seconds; whether it would."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def start_sweep(self, group: str, sweep: Callable[[threading.Event], object]) -> threading.Thread:
        """Run `sweep(stop)` (a Ray Tune sweep whose runs are stored under `group`) in a background thread of
        this process; `stop_training` on any of its runs sets `stop`."""
        stop = threading.Event()
        thread = threading.Thread(target=sweep, args=(stop,), daemon=True, name=f"freezelab-sweep-{group}")
        with self._sweeps_lock:
            for ended in [g for g, (t, _) in self._sweeps.items() if not t.is_alive()]:
                del self._sweeps[ended]
            self._sweeps[group] = thread, stop
        thread.start()
        return thread

    def _sweep_stops(self, run_ids: list[str]) -> list[threading.Event]:
        """The stop requests of the sweeps, still training, that train any of these runs."""
        with self._sweeps_lock:
            sweeps = list(self._sweeps.items())
        return [stop for group, (thread, stop) in sweeps
                if thread.is_alive() and set(self.store.group(group)) & set(run_ids)]

    def is_training(self, run_ids: list[str]) -> bool:
        """Whether any of these runs trains: on the job manager, or in a sweep started here (until its running
        trials have stopped, once asked to)."""
        return any(self.is_busy(r) for r in run_ids) or bool(self._sweep_stops(run_ids))

    def stop_training(self, run_ids: list[str], *, by: Caller = COMMAND_LINE) -> None:
        """Stop these runs, each resumable: on the job manager each stops after its step; a sweep that trains
        any of them begins no more trials and stops each running one after its epoch (checkpoint stored)."""
        self._refuse_others(run_ids, by)
        for stop in self._sweep_stops(run_ids):
            stop.set()
        self.stop(run_ids, by=by)

    def _others(self, run_ids: list[str], by: Caller) -> list[str]:
        """Those of these runs `by` may not change (Caller.may_change)."""
        if not by.is_browser:
            return []
        made = self.store.sessions(list(run_ids))
        return [r for r in run_ids if not by.may_change(made[r])]

    def _refuse_others(self, run_ids: list[str], by: Caller) -> None:
        """NotYours, in words, when `by` asks to change runs it may not."""
        theirs = self._others(run_ids, by)
        if theirs:
            raise NotYours(f"Run{'s' if len(theirs) > 1 else ''} {', '.join(theirs[:5])} belong"
                           f"{'' if len(theirs) > 1 else 's'} to another browser: only the browser that made a run "
                           "(or the command line) may start, stop, continue or delete it.")


TRAINING_CALLS = frozenset(Training.__abstractmethods__)  # what the trainer answers, besides "shut_down"
