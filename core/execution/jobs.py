"""Background workers that train bursts of several runs, interleaved so their curves grow side by side.

The Streamlit script thread never trains: it asks a `JobManager` to start a burst for some runs and
reads `snapshot()` copies on a timer. A worker trains each burst as slices of a few steps per run in turn
(each slice is one `run_burst` call towards the burst's `BurstTarget`), writes every event to the run
store, keeps the live `RunState` in memory between bursts, and checkpoints each run when its burst ends.
The store's "burst" events mark where bursts ended, not slices. Nothing here calls streamlit.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import socket
import threading
import time
import traceback
import uuid
import weakref
from concurrent.futures import Future

import torch

from core.data.datasets import ImageData, LoadedImages
from core.execution.interface import (
    CHECKPOINT_EVERY_S,
    FINAL_STATUS,
    HEARTBEAT_S,
    SHUTDOWN_WAIT_S,
    Training,
)
from core.execution.snapshot import Snapshot
from core.models import bounds
from core.models.network import count_params
from core.runtime.device import pick_device
from core.runtime.download import Progress
from core.runtime.shares import COMMAND_LINE, Caller
from core.store.checkpoints import CheckpointUnreadable
from core.store.runs import RunStore, config_to_json
from core.store.status import RunProblem, RunStatus
from core.training import rules
from core.training.config import RunConfig, validate_new_run
from core.training.events import BurstEnd, CacheStatus, EndReason, EpochEnd, Event, PhaseSwitch, StepEnd
from core.training.loop import BurstTarget, RunState, checkpoint, restore_run, run_burst, start_run


class Turns:
    """One slice trains at a time in this process: on one CPU or GPU, slices of different workers would only
    compete for it. (Exact replay does not depend on this: each run keeps its own RNG stream, core/runtime/rng.py.)

    When several sessions wait (a class sharing one server), the turn goes to the one served longest ago, so
    a session that started three bursts gets no more turns than one that started one. A plain lock gives no
    such promise: the thread that just released it usually takes it again."""

    def __init__(self):
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: list[tuple[str, int]] = []  # (session, ticket), in arrival order
        self._served: dict[str, int] = {}  # session -> the turn it last had
        self._count = 0

    @contextlib.contextmanager
    def turn(self, session: str = ""):
        with self._cond:
            self._count += 1
            me = (session, self._count)
            self._waiting.append(me)
            while self._busy or self._next() != me:
                self._cond.wait()
            self._waiting.remove(me)
            self._busy = True
            self._served[session] = self._count
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _next(self) -> tuple[str, int]:
        return min(self._waiting, key=lambda w: (self._served.get(w[0], 0), w[1]))


_TURNS = Turns()  # one per process: every manager's workers share the device

MAX_LIVE_RUNS = 8  # run states (model, optimizer, cache) kept in memory between bursts


class CheckpointMissing(RuntimeError):
    """A run with stored history but no readable checkpoint: restarting it would delete that history, so
    it needs the user's word (`start(..., restart=True)`)."""


def _beat(manager_ref: weakref.ref) -> None:
    """Tell the store every HEARTBEAT_S that this manager is alive; ends when the manager is gone."""
    while True:
        time.sleep(HEARTBEAT_S)
        manager = manager_ref()
        if manager is None:
            return
        try:
            manager.store.leases.heartbeat(manager.owner)
        except Exception:  # a busy store: the next beat tries again
            traceback.print_exc()
        del manager


def _shut_down(manager_ref: weakref.ref) -> None:
    """At interpreter exit (a server stopped with Ctrl-C or SIGTERM): stop every run after its current step
    and let its worker write the checkpoint, so a restarted server resumes with nothing lost."""
    manager = manager_ref()
    if manager is not None and any(manager.is_busy(r) for r in manager.snapshots()):
        manager.stop()
        manager.wait(SHUTDOWN_WAIT_S)


class JobManager(Training):
    """Trains in threads of this process (see the module's docstring); the interface's docstrings say what each
    call does."""

    in_this_process = True

    def __init__(self, store: RunStore | None = None, device: torch.device | None = None, slice_steps: int = 5,
                 checkpoint_every_s: float = CHECKPOINT_EVERY_S, threads: int | None = None):
        super().__init__()
        self.store = store or RunStore()
        self.device = device or pick_device()
        self.slice_steps = slice_steps  # steps a run trains before the next run's turn
        self.checkpoint_every_s = checkpoint_every_s  # during long bursts: at most this much work is lost
        self.threads = threads  # torch threads each worker trains with; None: torch's default
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # this process, in the store
        self._lock = threading.Lock()
        self._states: dict[str, RunState] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._stops: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._images = LoadedImages()
        self._ahead: dict[str, Future] = {}  # config JSON -> (fresh RunState, its step-0 events), built before asked
        # Configs built ahead once already: asked again (a trainer warmed up at its start, then by a server), they
        # are not built again, lest a second set compete with the runs that took the first.
        self._built_ahead: set[str] = set()
        self.store.leases.heartbeat(self.owner)
        threading.Thread(target=_beat, args=(weakref.ref(self),), daemon=True, name="freezelab-heartbeat").start()
        atexit.register(_shut_down, weakref.ref(self))
        self.store.leases.mark_interrupted()  # runs a dead process left 'running'; a live one's are left alone

    # --- asking -------------------------------------------------------------
    def create_run(self, cfg: RunConfig, group: str = "", *, by: Caller = COMMAND_LINE) -> str:
        """A new stored run, belonging to `by`'s session; a browser's must name only what the operator shares and
        allows (NotShared otherwise, nothing stored), and the whole config must pass the one check of a new run
        (ConfigInvalid otherwise): the operator's bounds first, so a browser learns nothing of unshared places."""
        bounds.check_choices(by, cfg.data, cfg.model)
        validate_new_run(cfg)
        run_id = self.store.create(cfg, group, by.owner)
        with self._lock:
            self._snapshots[run_id] = Snapshot(run_id, label=cfg.label or run_id)
        return run_id

    def start(self, run_ids: list[str], steps: int | None = None, epochs: int | None = None,
              restart: bool = False, *, by: Caller = COMMAND_LINE) -> threading.Thread:
        """Train a burst of `steps` or `epochs` for each run, interleaved, in a background thread. A run
        another live process trains is refused, and so are runs `by` may not change (NotYours).
        `restart`: the user's word that runs whose checkpoint is missing may start again from step 0, deleting
        their stored history."""
        if (steps is None) == (epochs is None):
            raise ValueError("Give a burst either steps or epochs.")
        self._refuse_others(run_ids, by)
        if self.store.leases.mark_interrupted():  # a process that held some of these may have died since
            with self._lock:
                for run_id in run_ids:
                    if run_id not in self._stops:
                        self._snapshots.pop(run_id, None)  # re-read below
        for run_id in run_ids:
            self.snapshot(run_id)  # runs from before this process get their snapshot from the store
        with self._lock:  # check and mark in one step: two sessions may press the button at once
            busy = [r for r in run_ids if self._is_busy(r)]
            if busy:
                raise RuntimeError(f"Runs {busy} are training already; stop them first.")
            for run_id in run_ids:
                self._stops[run_id] = threading.Event()
                snap = self._snapshots[run_id]
                snap.status, snap.message, snap.burst_done, snap.burst_total = RunStatus.RUNNING, "", 0, 0
                snap.problem = RunProblem.NONE
        before = {run_id: self.store.status(run_id) for run_id in run_ids}  # to undo a partial claim
        claimed, held = [], {}
        for run_id in run_ids:
            holder = self.store.leases.claim(run_id, self.owner)
            if holder is None:
                claimed.append(run_id)
            else:
                held[run_id] = holder
        if held:
            for run_id in claimed:
                self.store.set_status(run_id, *before[run_id])
                self.store.leases.release(run_id, self.owner)
            with self._lock:
                for run_id in run_ids:
                    self._stops.pop(run_id, None)
                    self._snapshots.pop(run_id, None)
            run_id, holder = next(iter(held.items()))
            host, pid, _ = holder.split(":")
            raise RuntimeError(f"Run {run_id} is being trained by another FreezeLab process (pid {pid} on {host}); "
                               "stop it there, or wait for it to end.")
        thread = threading.Thread(target=self._work, args=(list(run_ids), steps, epochs, restart), daemon=True,
                                  name=f"freezelab-burst-{'-'.join(run_ids)[:40]}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def stop(self, run_ids: list[str] | None = None, *, by: Caller = COMMAND_LINE) -> None:
        """Ask runs (all when None: all that `by` may change) to stop after their current step."""
        if run_ids is not None:
            self._refuse_others(run_ids, by)
        with self._lock:
            asked = list(self._stops) if run_ids is None else [r for r in run_ids if r in self._stops]
        theirs = set(self._others(asked, by))
        with self._lock:
            for run_id in asked:
                if run_id not in theirs and run_id in self._stops:
                    self._stops[run_id].set()

    def lengthen(self, run_ids: list[str], epochs: int, *, by: Caller = COMMAND_LINE) -> list[str]:
        rules.epochs(epochs, "A run's extension")
        self._refuse_others(run_ids, by)
        for run_id in run_ids:  # the budget's bound holds for the whole run, checked before any is lengthened
            rules.epochs(self.store.config(run_id).epochs + epochs, f"Run {run_id}, carried on,")
        done = []
        for run_id in run_ids:
            if self.store.status(run_id)[0] != RunStatus.FINISHED or self.is_busy(run_id):
                continue
            longer = self.store.lengthen(run_id, epochs)
            with self._lock:
                state = self._states.get(run_id)
                if state is not None:  # the live state carries on under the longer budget
                    state.config = longer
                    if state.done == EndReason.FINISHED:
                        state.done = ""
                self._snapshots.pop(run_id, None)  # re-read from the store
            done.append(run_id)
        return done

    def is_busy(self, run_id: str) -> bool:
        with self._lock:
            return self._is_busy(run_id)

    def _is_busy(self, run_id: str) -> bool:
        return run_id in self._stops and self._snapshots[run_id].status == RunStatus.RUNNING

    def delete(self, run_id: str, *, by: Caller = COMMAND_LINE) -> None:
        """Remove a run everywhere: store, checkpoints, and this process's memory."""
        self._refuse_others([run_id], by)
        with self._lock:
            if self._is_busy(run_id):
                raise RuntimeError("Stop the run before deleting it.")
            self._states.pop(run_id, None)
            self._snapshots.pop(run_id, None)
            self._stops.pop(run_id, None)
        self.store.delete(run_id)

    def snapshot(self, run_id: str) -> Snapshot:
        with self._lock:
            snap = self._snapshots.get(run_id)
            if snap is not None:
                return dataclasses.replace(snap)
        return self._stored_snapshot(run_id)

    def snapshots_of(self, run_ids: list[str]) -> list[Snapshot]:
        """`snapshot` of each run, in order, in one call (the live view asks twenty times a second)."""
        return [self.snapshot(run_id) for run_id in run_ids]

    def _stored_snapshot(self, run_id: str) -> Snapshot:
        """A run from before this process started, rebuilt from the store."""
        status, message = self.store.status(run_id)
        snap = Snapshot(run_id, label=self.store.label(run_id), status=status, message=message,
                        problem=self.store.problem(run_id))
        steps = self.store.metrics.curves([run_id], kind="step")
        if not steps.empty:
            snap.step, snap.epoch = int(steps.step.iloc[-1]), float(steps.epoch.iloc[-1])
        epochs = self.store.metrics.curves([run_id])
        if not epochs.empty:
            snap.last_epoch = epochs.iloc[-1].to_dict()
        events = self.store.metrics.events(run_id)
        caches = events[events.kind == "cache"].detail.tolist()
        if caches:
            snap.cache_on, snap.cache_reason = caches[-1]["on"], caches[-1]["reason"]
        with self._lock:
            self._snapshots.setdefault(run_id, snap)
        return dataclasses.replace(snap)

    def live_runs(self) -> list[str]:
        """Runs whose training state is held in memory (at most MAX_LIVE_RUNS)."""
        with self._lock:
            return list(self._states)

    def snapshots(self) -> dict[str, Snapshot]:
        with self._lock:
            return {k: dataclasses.replace(v) for k, v in self._snapshots.items()}

    def wait(self, timeout: float | None = None) -> None:
        """Block until every worker has finished (the CLI and tests use this; the app never does)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def ready(self) -> bool:
        """Always: in this process a click adopts runs built ahead, waiting for any still being built."""
        return True

    def add_data(self, data: ImageData) -> None:
        """Share images the caller has loaded already, so workers do not decode them again."""
        self._images.add(data)

    # --- the worker ---------------------------------------------------------
    MAX_AHEAD = 8  # fresh states kept ready at most (the demo comparison needs three)

    def prepare_ahead(self, configs: list[RunConfig]) -> None:
        """Build fresh runs for `configs` now, in the calling thread (model, weights, feature cache): a run
        created later with one of these configs adopts its state and trains at once. The state is what a fresh
        start gives, bit for bit (same seeds, same thread count), so nothing but the wait changes. A config is
        built ahead once per manager."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # the cache's sums depend on it, as the worker's do
        todo = []
        with self._lock:
            for cfg in configs:
                key = config_to_json(cfg)
                if key not in self._built_ahead and len(self._ahead) < self.MAX_AHEAD:
                    self._built_ahead.add(key)
                    self._ahead[key] = Future()
                    todo.append((self._ahead[key], cfg))
        for future, cfg in todo:
            try:
                state = start_run(cfg, self._images.get(cfg.data), self.device)
                future.set_result((state, [e for e in run_burst(state, steps=0) if not isinstance(e, BurstEnd)]))
            except Exception as err:  # the run, when asked for, starts as usual and says why in its own words
                future.set_exception(err)

    def _ready_state(self, cfg: RunConfig) -> tuple[RunState, list[Event]] | None:
        """A state prepared ahead for `cfg` (waiting for it when it is being built), taken; else None."""
        with self._lock:
            future = self._ahead.pop(config_to_json(cfg), None)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:
            return None

    def _preparing(self, run_id: str) -> Progress:
        """A progress callback that shows a run's downloads and decoding in its snapshot."""
        def progress(done: int, total: int, what: str) -> None:
            self._update(run_id, preparing=what, prepare_done=done, prepare_total=total)
        return progress

    def _prepare(self, run_id: str, restart: bool = False) -> RunState:
        """The run's live state: in memory, else from its checkpoint, else a fresh start (which, for a run
        with stored history, needs `restart`)."""
        with self._lock:
            state = self._states.get(run_id)
        if state is not None:
            return state
        cfg = self.store.config(run_id)
        try:
            saved, why = self.store.checkpoints.load(run_id), "there is none"
        except CheckpointUnreadable as err:
            saved, why = None, str(err)
        recorded = self.store.metrics.recorded_steps(run_id)
        if saved is None and recorded and not restart:
            raise CheckpointMissing(f"its checkpoint is missing or unreadable ({why}), though {recorded} steps are "
                                    "stored. Restart it from step 0 (its stored steps are then deleted), or leave it "
                                    "as it is.")
        progress = self._preparing(run_id)
        data = self._images.get(cfg.data, progress)
        if saved is not None:
            state = restore_run(cfg, saved, data, self.device)
            self.store.metrics.forget_after(run_id, state.step)
        elif (ready := self._ready_state(cfg)) is not None and ready[0].data is data:
            state, events = ready
            self.store.metrics.forget_after(run_id, 0)
            for event in events:  # the cache's status, as the first slice would have reported it
                self._publish(run_id, event)
            self.store.metrics.record(run_id, events)
        else:
            state = start_run(cfg, data, self.device, progress)
            self.store.metrics.forget_after(run_id, 0)
            # where every change is measured from
            self.store.checkpoints.keep_weights(run_id, 0, state.model.state_dict())
        self.store.set_params(run_id, count_params(state.model), count_params(state.model, trainable_only=True))
        with self._lock:
            self._states[run_id] = state
            self._forget_idle_states()
        self._update(run_id, preparing="", prepare_done=0, prepare_total=0)
        return state

    def _forget_idle_states(self) -> None:
        """Keep at most MAX_LIVE_RUNS states in memory; the others resume from their checkpoints exactly."""
        idle = [r for r in self._states if not self._is_busy(r)]
        for run_id in idle[: max(0, len(self._states) - MAX_LIVE_RUNS)]:
            del self._states[run_id]

    def _work(self, run_ids: list[str], steps: int | None, epochs: int | None, restart: bool = False) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # per worker thread: OpenMP keeps the setting per thread
        active: dict[str, tuple[RunState, BurstTarget]] = {}
        saved_at: dict[str, float] = {}
        session = self.store.session(run_ids[0])  # a burst is one session's (it started it): turns go by session

        def turn(run_id: str, steps: int) -> None:
            """One slice of the run; it leaves `active` when it fails or its burst ends."""
            state, target = active[run_id]
            try:
                end = self._slice(run_id, state, target, steps, session)
            except Exception as err:
                self._fail(run_id, err)
                del active[run_id]
                return
            if end.reason != EndReason.BUDGET or target.reached(state):
                self._finish(run_id, state, end)
                del active[run_id]
            elif time.monotonic() - saved_at[run_id] >= self.checkpoint_every_s:
                self._save(run_id, state, history=False)  # a long burst: bound what a crash loses
                saved_at[run_id] = time.monotonic()

        for run_id in run_ids:
            try:
                state = self._prepare(run_id, restart)
            except CheckpointMissing as err:  # nothing is deleted without the user's word
                self._end(run_id, RunStatus.STOPPED, str(err), RunProblem.CHECKPOINT_MISSING)
                continue
            except Exception as err:  # a run that cannot start fails alone, in words
                self._fail(run_id, err)
                continue
            saved_at[run_id] = time.monotonic()
            target = BurstTarget.of(state, steps, epochs)
            self._update(run_id, step=state.step, epoch=float(state.epoch), burst_total=target.steps)
            active[run_id] = (state, target)
            # Its first slice is one step, taken before the next run is prepared: its first point shows at once
            # (on a cold start, while the trainer still builds the others).
            turn(run_id, 1)
        while active:
            for run_id in list(active):
                turn(run_id, self.slice_steps)

    def _slice(self, run_id: str, state: RunState, target: BurstTarget, steps: int, session: str = "") -> BurstEnd:
        """Train up to `steps` steps of the run's burst in `session`'s turn; record and publish every event but
        the slice's own end (the burst's end is recorded once, by `_finish`)."""
        stop = self._stops[run_id]
        events: list[Event] = []
        with _TURNS.turn(session):
            for event in run_burst(state, **target.slice(state, steps), should_stop=stop.is_set):
                events.append(event)
                self._publish(run_id, event)
                if isinstance(event, EpochEnd):  # the generator waits here: the model is at the epoch's end
                    self.store.checkpoints.keep_weights(run_id, event.step, state.model.state_dict())
        self.store.metrics.record(run_id, events[:-1])
        return events[-1]

    def _publish(self, run_id: str, event: Event) -> None:
        with self._lock:
            snap = self._snapshots[run_id]
            if isinstance(event, StepEnd):
                snap.step, snap.epoch, snap.images_per_sec = event.step, event.epoch, event.images_per_sec
                snap.burst_done += 1
            elif isinstance(event, EpochEnd):
                snap.last_epoch = dataclasses.asdict(event)
            elif isinstance(event, CacheStatus):
                snap.cache_on, snap.cache_reason = event.on, event.reason
            elif isinstance(event, PhaseSwitch):
                snap.phase = event.phase

    def _save(self, run_id: str, state: RunState, history: bool = True) -> str:
        """Checkpoint the run; returns "" or, when the write failed (disk full), what went wrong. The
        previous checkpoint stays whole either way (atomic write)."""
        try:
            self.store.checkpoints.save(run_id, checkpoint(state), history=history)
        except OSError as err:
            traceback.print_exception(err)
            return (f"its checkpoint could not be written ({err.strerror or err}); the previous one is kept and "
                    "the run can train on")
        return ""

    def _finish(self, run_id: str, state: RunState, end: BurstEnd) -> None:
        status, message = FINAL_STATUS[end.reason], end.message
        self.store.metrics.record(run_id, [end])
        if problem := self._save(run_id, state):  # "stopped": its next burst writes the checkpoint again
            status, message = RunStatus.STOPPED, problem
        self._end(run_id, status, message)

    def _end(self, run_id: str, status: str, message: str, problem: RunProblem = RunProblem.NONE) -> None:
        """The burst is over for this run: say how, and let go of it."""
        self.store.set_status(run_id, status, message, problem)
        self.store.leases.release(run_id, self.owner)
        # A failed download shows no more.
        self._update(run_id, status=status, message=message, problem=problem, preparing="")

    def _fail(self, run_id: str, err: Exception) -> None:
        with self._lock:
            self._states.pop(run_id, None)  # a failed state is not trusted again
        self._end(run_id, RunStatus.FAILED, f"{type(err).__name__}: {err}")
        traceback.print_exception(err)

    def _update(self, run_id: str, **values) -> None:
        with self._lock:
            snap = self._snapshots.setdefault(run_id, Snapshot(run_id))
            for k, v in values.items():
                setattr(snap, k, v)
