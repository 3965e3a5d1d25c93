"""Sweeps on Ray Tune: each RunConfig becomes a trial, on a local Ray this function starts or on an existing
cluster. Ray is an optional install (the ray extra); without it `run_sweep` raises RayUnavailable.

    run_ids = run_sweep(store, depth_sweep(...), group="sweep-1")            # local Ray
    run_ids = run_sweep(store, configs, group, address="ray://head:10001")   # a cluster

A trial is `FreezeLabTrial`, a `tune.Trainable` around the same functions the job manager calls:
`setup` → `start_run`, `step` → one epoch of `run_burst`, `save_checkpoint`/`load_checkpoint` →
`checkpoint`/`restore_run` (so Tune can pause, move and restore trials). A trial returns its events and
weights in its results; only the driver (this process) writes the run store, so trials on other machines
need no access to it. The curves are the job manager's bit for bit on the same device: both run the same
burst loop from the same seeds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from core import paths
from core.download import Progress
from core.jobs import FINAL_STATUS, HEARTBEAT_S
from core.runs import RunStore, config_from_json, config_to_json
from core.training import BurstEnd, EpochEnd, RunConfig, checkpoint, restore_run, run_burst, start_run

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
    _, tune = _ray()

    class FreezeLabTrial(tune.Trainable):
        """One run as a Tune trial; config: {"run": {"run_id": ..., "config": RunConfig as JSON}}."""

        def setup(self, config: dict) -> None:
            self.run_id = config["run"]["run_id"]
            self.cfg: RunConfig = config_from_json(config["run"]["config"])
            self.state = start_run(self.cfg)
            self.initial = {k: v.detach().cpu().clone() for k, v in self.state.model.state_dict().items()}

        def step(self) -> dict:
            events = list(run_burst(self.state, epochs=1))  # the last is the BurstEnd
            result = {"events": events, "epoch": self.state.epoch, "done": bool(self.state.done),
                      "weights": _cpu(self.state.model.state_dict())}
            if self.initial is not None:  # the first result carries where every change is measured from
                result["initial"], self.initial = self.initial, None
            if self.state.done:  # the run is over: its final checkpoint goes to the driver
                result["checkpoint"] = _cpu(checkpoint(self.state))
            return result

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            torch.save(checkpoint(self.state), Path(checkpoint_dir) / CHECKPOINT_FILE)

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            saved = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, weights_only=True)
            self.state = restore_run(self.cfg, saved)

    return FreezeLabTrial


def _cpu(tree):
    """A checkpoint or state dict with every tensor on the CPU (results travel between machines)."""
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
    """A Tune callback, run in the driver, that writes every trial's results into the run store."""
    _, tune = _ray()

    class StoreWriter(tune.Callback):
        def __init__(self) -> None:
            self.epochs = 0

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            run_id = trial.config["run"]["run_id"]
            if "initial" in result:
                store.keep_weights(run_id, 0, result["initial"])
            events = result["events"]
            store.record(run_id, events)
            for event in events:
                if isinstance(event, EpochEnd):
                    store.keep_weights(run_id, event.step, result["weights"])
                    self.epochs += 1
                    if progress:
                        progress(self.epochs, total, f"{store.label(run_id)}: epoch {event.epoch}, "
                                                     f"val_acc {event.val_acc:.3f}")
            if "checkpoint" in result:
                end: BurstEnd = events[-1]
                store.save_checkpoint(run_id, result["checkpoint"])
                store.set_status(run_id, FINAL_STATUS[end.reason], end.message)
                store.release(run_id, owner)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            run_id = trial.config["run"]["run_id"]
            store.set_status(run_id, "failed", f"the Ray trial failed: {trial.error_file or 'see the Ray logs'}")
            store.release(run_id, owner)

    return StoreWriter()


def run_sweep(store: RunStore, configs: list[RunConfig], group: str, address: str | None = None,
              cpus: int | None = None, cpus_per_trial: float = 1.0,
              progress: Callable[[int, int, str], None] | None = None, session: str = "") -> list[str]:
    """Create one stored run per config in `group` (belonging to `session`) and train each as a Tune trial
    until its budget ends; returns the run ids. `address`: an existing cluster (default: a local Ray with
    `cpus` CPUs, shut down afterwards)."""
    ray, tune = _ray()
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # results hold weights: no CSV/JSON copies
    # ...so Tune's own result table finds no files and warns about each trial: the run store has it all.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    run_ids = [store.create(cfg, group, session) for cfg in configs]
    owner = f"{socket.gethostname()}:{os.getpid()}:ray-{uuid.uuid4().hex[:6]}"
    store.heartbeat(owner)
    for run_id in run_ids:
        store.claim(run_id, owner)
    beating = threading.Event()

    def beat() -> None:
        while not beating.wait(HEARTBEAT_S):
            store.heartbeat(owner)

    threading.Thread(target=beat, daemon=True, name="freezelab-ray-heartbeat").start()
    started = not ray.is_initialized()
    try:
        if started:
            try:
                ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise RayUnavailable(f"Ray could not start or reach {address or 'a local cluster'} ({err}).") from err
        tuner = tune.Tuner(
            tune.with_resources(trainable_class(), {"cpu": cpus_per_trial}),
            param_space={"run": tune.grid_search([{"run_id": r, "config": config_to_json(c)}
                                                  for r, c in zip(run_ids, configs, strict=True)])},
            tune_config=tune.TuneConfig(trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=group, storage_path=str((paths.home() / "ray").resolve()), verbose=0,
                                      callbacks=[_store_writer(store, owner, sum(c.epochs for c in configs),
                                                               progress)]),
        )
        tuner.fit()
    finally:
        beating.set()
        for run_id in run_ids:  # a trial that never reported (the cluster went away) is not left 'running'
            if store.status(run_id)[0] == "running":
                store.set_status(run_id, "interrupted", "its Ray trial ended without finishing")
            store.release(run_id, owner)
        if started and ray.is_initialized():
            ray.shutdown()
    return run_ids
