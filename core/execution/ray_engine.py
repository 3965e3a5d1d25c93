"""Sweeps on Ray Tune: each RunConfig becomes a trial, on a local Ray this function starts or on an existing
cluster. Ray is an optional install (the ray extra); without it `run_sweep` raises RayUnavailable.

    run_ids = run_sweep(store, depth_sweep(...), group="sweep-1")            # local Ray
    run_ids = run_sweep(store, configs, group, address="ray://head:10001")   # a cluster

A trial is `FreezeLabTrial`, a `tune.Trainable` around the same functions the job manager calls:
`setup` → `start_run`, `step` → one epoch of `run_burst`, `save_checkpoint`/`load_checkpoint` →
`checkpoint`/`restore_run` (so Tune can pause, move and restore trials). A trial returns its events and
weights in its results, and its checkpoint at its end and, before that, at the first epoch's end a minute
after the last; only the driver (this process) writes the run store, so trials on other machines need no
access to it. If the driver dies, its runs are 'interrupted' and a burst resumes each from its last stored
checkpoint. The curves are the job manager's bit for bit on the same device: both run the same burst loop
from the same seeds.

A sweep stops early when its `stop` event is set (the Experiments page's Stop, the CLI's first Ctrl-C): no trial
begins after that, each running trial stops at the end of its epoch and Tune saves it (`checkpoint_at_end`), and
the driver stores that checkpoint, so every run is left 'stopped' and a burst on the job manager resumes it
exactly. Sweeps started in one process take turns: a second one waits for the first to end.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from core.execution.interface import CHECKPOINT_EVERY_S, FINAL_STATUS, HEARTBEAT_S, SHUTDOWN_WAIT_S
from core.models import bounds, own
from core.runtime import paths
from core.runtime.download import Progress
from core.runtime.shares import COMMAND_LINE, Caller
from core.store.runs import RunStore, config_from_json, config_to_json
from core.store.status import RunStatus
from core.training.config import RunConfig, validate_new_run
from core.training.events import BurstEnd, EpochEnd

CHECKPOINT_FILE = "run.pt"
AVAILABLE = importlib.util.find_spec("ray") is not None  # an optional install: the UI offers the engine only then


class RayUnavailable(RuntimeError):
    """Ray Tune is not installed, or the cluster cannot be reached; the message says what to do."""


def _ray():
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise RayUnavailable("The Ray engine needs Ray Tune, an optional install: pip install -e "
                             "'.[ray]' (or pip install 'ray[tune]'). Without it, sweeps run on "
                             "the job manager (--engine jobs).") from err
    return ray, tune


def trainable_class() -> type:
    """The Trainable, defined when Ray is there (its base class comes from Ray)."""
    import torch  # here and below, not at the top: the app imports this module to ask whether Ray is there

    from core.training.loop import checkpoint, restore_run, run_burst, start_run

    _, tune = _ray()

    class FreezeLabTrial(tune.Trainable):
        """One run as a Tune trial; config: {"run": {"run_id": ..., "config": RunConfig as JSON, "model_files":
        the operator's networks it trains, as the driver registered them}}."""

        def setup(self, config: dict) -> None:
            # A worker process, maybe on another machine, where neither the driver's registry nor its environment
            # is: the trial carries the references of the operator's networks it trains.
            own.register_all(config["run"]["model_files"])
            self.run_id = config["run"]["run_id"]
            self.cfg: RunConfig = config_from_json(config["run"]["config"])
            self.checkpoint_every_s: float = config["run"]["checkpoint_every_s"]
            self.state = start_run(self.cfg)
            self.initial = {k: v.detach().cpu().clone() for k, v in self.state.model.state_dict().items()}
            self.saved_at = time.monotonic()

        def step(self) -> dict:
            events = list(run_burst(self.state, epochs=1))  # the last is the BurstEnd
            # "done" tells Tune the trial is over; Tune also sets it when its stopper stops the trial, so the
            # driver reads "run_over" to know the run itself ended.
            over = bool(self.state.done)
            result = {"events": events, "epoch": self.state.epoch, "done": over, "run_over": over,
                      "weights": _cpu(self.state.model.state_dict())}
            if self.initial is not None:  # the first result carries where every change is measured from
                result["initial"], self.initial = self.initial, None
            # The run's end, and every so often before it (as the job manager does): the driver stores the
            # checkpoint, so a sweep whose driver dies (the app's server stopped) leaves runs that resume.
            if self.state.done or time.monotonic() - self.saved_at >= self.checkpoint_every_s:
                result["checkpoint"] = _cpu(checkpoint(self.state))
                self.saved_at = time.monotonic()
            return result

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            torch.save(checkpoint(self.state), Path(checkpoint_dir) / CHECKPOINT_FILE)

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            saved = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, weights_only=True)
            self.state = restore_run(self.cfg, saved)

    return FreezeLabTrial


def _cpu(tree):
    """A checkpoint or state dict with every tensor on the CPU (results travel between machines)."""
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _cpu(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_cpu(v) for v in tree)
    return tree


def _trial_name(trial) -> str:
    return trial.config["run"]["run_id"]


def _store_writer(store: RunStore, owner: str, total: int, progress: Progress | None):
    """A Tune callback, run in the driver, that writes every trial's results into the run store, and keeps
    which trials are mid-epoch (`in_flight`: the stopper ends the sweep only once none is)."""
    import torch

    _, tune = _ray()

    class StoreWriter(tune.Callback):
        def __init__(self, progress: Progress | None) -> None:  # an argument: a class's closure is pickled too
            self.epochs = 0
            self.in_flight: set[str] = set()
            self.progress = progress

        def __getstate__(self) -> dict:
            # Tune pickles its callbacks into the tuner's saved state; the caller's progress callback (a bar, a
            # lock, an event) need not pickle, and a restored tuner reports no progress.
            return {**self.__dict__, "progress": None}

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.in_flight.add(trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.in_flight.discard(trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            run_id = trial.config["run"]["run_id"]
            if "initial" in result:
                store.checkpoints.keep_weights(run_id, 0, result["initial"])
            events = result["events"]
            store.metrics.record(run_id, events)
            for event in events:
                if isinstance(event, EpochEnd):
                    store.checkpoints.keep_weights(run_id, event.step, result["weights"])
                    self.epochs += 1
                    if self.progress:
                        self.progress(self.epochs, total, f"{store.label(run_id)}: epoch {event.epoch}, "
                                                          f"val_acc {event.val_acc:.3f}")
            if "checkpoint" in result:  # its weights are kept above already
                store.checkpoints.save(run_id, result["checkpoint"], history=False)
            if result["run_over"]:
                end: BurstEnd = events[-1]
                store.set_status(run_id, FINAL_STATUS[end.reason], end.message)
                store.leases.release(run_id, owner)

        def on_trial_save(self, iteration, trials, trial, **info) -> None:
            """A trial stopped on request was saved at the end of its epoch: its checkpoint goes into the store,
            so the run resumes there. (A finished trial is saved too, after its last result stored it.)"""
            run_id = trial.config["run"]["run_id"]
            if trial.checkpoint is None or store.status(run_id)[0] != RunStatus.RUNNING:
                return
            with trial.checkpoint.as_directory() as folder:
                saved = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
            store.checkpoints.save(run_id, saved, history=False)
            store.set_status(run_id, RunStatus.STOPPED, f"the sweep was stopped; this run after epoch "
                                                f"{saved['counters']['epoch']}, and a burst resumes it")
            store.leases.release(run_id, owner)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.in_flight.discard(trial.trial_id)
            run_id = trial.config["run"]["run_id"]
            store.set_status(run_id, RunStatus.FAILED, _failure_in_words(trial.error_file))
            store.leases.release(run_id, owner)

    return StoreWriter(progress)


class _StopRequest:
    """A sweep's stop request and the trials mid-epoch, as Tune's hooks hold them. Tune pickles its scheduler and
    stopper into the experiment's saved state, and an Event cannot be pickled: a pickled copy holds a fresh one."""

    def __init__(self, event: threading.Event, in_flight: set[str]):
        self.event, self.in_flight = event, in_flight

    def __getstate__(self) -> dict:
        return {"in_flight": set(self.in_flight)}

    def __setstate__(self, state: dict) -> None:
        self.event, self.in_flight = threading.Event(), state["in_flight"]


def _stop_hooks(stop: threading.Event, in_flight: set[str]):
    """(scheduler, stopper) that carry out a stop request: once `stop` is set, the scheduler begins no more
    trials, the stopper stops each running trial after the epoch it is in (Tune then saves it), and it ends
    the sweep, dropping the trials never begun, once no trial is mid-epoch (ending it sooner would kill those
    trials unsaved)."""
    _, tune = _ray()
    from ray.tune.schedulers import FIFOScheduler

    class BeginNoneOnceStopped(FIFOScheduler):
        def __init__(self, request: _StopRequest):
            super().__init__()
            self.request = request

        def choose_trial_to_run(self, tune_controller):
            return None if self.request.event.is_set() else super().choose_trial_to_run(tune_controller)

    class StopOnRequest(tune.Stopper):
        def __init__(self, request: _StopRequest):
            self.request = request

        def __call__(self, trial_id: str, result: dict) -> bool:
            return self.request.event.is_set()

        def stop_all(self) -> bool:
            return self.request.event.is_set() and not self.request.in_flight

    request = _StopRequest(stop, in_flight)
    return BeginNoneOnceStopped(request), StopOnRequest(request)


# One sweep at a time per process: each starts Ray and shuts it down, and Tune runs one experiment per driver. A
# second sweep (another session's, a double click) waits for its turn, its runs saying so.
_TURN = threading.Lock()
QUEUED = "queued: it begins when the Ray sweep before it ends"


def _wait_for_turn(stop: threading.Event, on_queued: Callable[[], None]) -> bool:
    """Take this process's Ray turn, calling `on_queued` once if another sweep holds it; False (and no turn) if
    `stop` is set while it waits."""
    if _TURN.acquire(blocking=False):
        return True
    on_queued()
    while not _TURN.acquire(timeout=0.2):
        if stop.is_set():
            return False
    return True


CONNECT_S = 5.0  # how long a cluster's address has to answer before a sweep gives up on it


def _reachable(address: str) -> None:
    """RayUnavailable, in words, unless something accepts a connection at `address` ("host:port" or
    "ray://host:port") within CONNECT_S; other forms ("auto", "local") are left to Ray."""
    found = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d{1,5})", address.strip())
    if not found:
        return
    host, port = found.group(1), int(found.group(2))
    try:
        socket.create_connection((host, port), timeout=CONNECT_S).close()
    except OSError as err:
        raise RayUnavailable(f"Nothing answers at {address} within {CONNECT_S:.0f} s ({err.strerror or err}): is "
                             "a Ray head running there (ray start --head)? No run was stored.") from err


def _failure_in_words(error_file: str | None) -> str:
    """Why a trial failed: the last line of the traceback Ray kept (the exception and its message), and where
    the whole of it is."""
    try:
        last = [line for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()][-1]
    except (TypeError, OSError, IndexError):  # no file named, or none there
        return f"the Ray trial failed: {f'see {error_file}' if error_file else 'see the Ray logs'}"
    return f"the Ray trial failed: {last.strip()[:300]} (the whole error: {error_file})"


def run_sweep(store: RunStore, configs: list[RunConfig], group: str, address: str | None = None,
              cpus: int | None = None, cpus_per_trial: float = 1.0,
              progress: Callable[[int, int, str], None] | None = None, by: Caller = COMMAND_LINE,
              stop: threading.Event | None = None, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> list[str]:
    """Create one stored run per config in `group` (belonging to `by`'s session; a browser's configs are held to
    the operator's bounds as `Training.create_run` holds them: NotShared before any is stored) and train each as a
    Tune trial until its budget ends; returns the run ids. `address`: an existing cluster (default: a local Ray
    with `cpus` CPUs, shut down afterwards). Setting `stop` stops the sweep early, every run resumable (the
    module's docstring says how). Each trial's checkpoint is also stored at the first epoch's end once
    `checkpoint_every_s` has passed since the last, which bounds what is lost if this process is killed."""
    for cfg in configs:  # runs are made here, not through the job manager: the same checks, before any is stored
        bounds.check_choices(by, cfg.data, cfg.model)
        validate_new_run(cfg)
    stop = stop or threading.Event()
    if address:
        _reachable(address)  # before any run is stored: Ray itself retries an address that is down for minutes
    ray, tune = _ray()
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # results hold weights: no CSV/JSON copies
    # ...so Tune's own result table finds no files and warns about each trial: the run store has it all.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Tune's own Ctrl-C handler ends the sweep with running trials unsaved (and says to resume through Tune): the
    # caller's `stop` is how a sweep ends early here, and a Ctrl-C the caller does not handle interrupts it.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    run_ids = [store.create(cfg, group, by.owner) for cfg in configs]
    owner = f"{socket.gethostname()}:{os.getpid()}:ray-{uuid.uuid4().hex[:6]}"
    store.leases.heartbeat(owner)
    for run_id in run_ids:
        store.leases.claim(run_id, owner)
    beating = threading.Event()

    def beat() -> None:
        while not beating.wait(HEARTBEAT_S):
            store.leases.heartbeat(owner)

    threading.Thread(target=beat, daemon=True, name="freezelab-ray-heartbeat").start()
    ended = threading.Event()
    sweeper = threading.current_thread()

    def stop_before_exit() -> None:
        """This process is exiting while the sweep runs in a thread (the app's server was stopped): stop the
        sweep as Stop does, so every run is saved, rather than let Ray go down with its trials unsaved. Then wait
        for that thread to end whole: the sweep's last objects (Tune's results, tensors among them) freed after
        the interpreter has begun to end would abort the process (a daemon thread that asks for the interpreter
        lock then is ended inside torch's destructor; half of the exits here did)."""
        stop.set()
        ended.wait(SHUTDOWN_WAIT_S)
        if sweeper is not threading.main_thread():
            sweeper.join(SHUTDOWN_WAIT_S)

    # Registered after Ray's own (made when ray is imported), so it runs before Ray shuts down: atexit calls the
    # last registered first.
    atexit.register(stop_before_exit)
    has_turn = started = False
    try:
        has_turn = _wait_for_turn(stop, lambda: [store.set_status(r, RunStatus.RUNNING, QUEUED) for r in run_ids])
        if not has_turn:  # stopped while it waited: none of its runs began
            return run_ids
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise RayUnavailable(f"Ray could not start or reach {address or 'a local cluster'} ({err}).") from err
        writer = _store_writer(store, owner, sum(c.epochs for c in configs), progress)
        scheduler, stopper = _stop_hooks(stop, writer.in_flight)
        storage = (paths.home() / "ray").resolve()
        tuner = tune.Tuner(
            tune.with_resources(trainable_class(), {"cpu": cpus_per_trial}),
            param_space={"run": tune.grid_search([{"run_id": r, "config": config_to_json(c),
                                                   "checkpoint_every_s": checkpoint_every_s,
                                                   "model_files": own.reference_of(c.model.backbone) or ""}
                                                  for r, c in zip(run_ids, configs, strict=True)])},
            tune_config=tune.TuneConfig(trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
                                        scheduler=scheduler),
            run_config=tune.RunConfig(name=group, storage_path=str(storage), verbose=0,
                                      stop=stopper, callbacks=[writer],
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True)),
        )
        tuner.fit()
        # Each trial's checkpoint is in the run store now (from its last result, or from on_trial_save): Tune's
        # copies (a model's weights and optimizer state each) would only fill the disk. Its logs stay.
        for saved in (storage / group).glob("*/checkpoint_*"):
            shutil.rmtree(saved, ignore_errors=True)
    finally:
        atexit.unregister(stop_before_exit)
        beating.set()
        for run_id in run_ids:  # a trial that never reported (the cluster went away) is not left 'running'
            if store.status(run_id)[0] == RunStatus.RUNNING:
                if stop.is_set():
                    store.set_status(run_id, RunStatus.STOPPED,
                                     "the sweep was stopped before this run's trial reported")
                else:
                    store.set_status(run_id, RunStatus.INTERRUPTED, "its Ray trial ended without finishing")
            store.leases.release(run_id, owner)
        if started and ray.is_initialized():
            ray.shutdown()
        if has_turn:
            _TURN.release()
        ended.set()
    return run_ids
