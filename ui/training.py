"""Training as the pages ask for it: comparisons created and shown, bursts and Ray sweeps started and stopped
through the one interface to training (core/execution/interface.py), the warm-up, live curves. Pages reach
training only here, and every call that makes or changes runs says who asks: this browser (`session.caller()`),
never the command line."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import streamlit as st

from core.data.datasets import DataConfig, load_data
from core.execution import ray_engine
from core.runtime.device import torch_loaded
from core.runtime.settings import Settings, settings
from core.store.runs import ConfigUnreadable, run_names
from core.store.status import RESUMABLE, RunStatus
from core.training.config import demo_comparison, validate_new_run
from core.training.rules import ConfigInvalid
from ui import resources, session

GROUP_KEY = "train.group"  # the comparison shown on the Train page
SWEEP_GROUP_KEY = "experiments.sweep.group"  # the sweep shown on the Experiments page
RAY_AVAILABLE = ray_engine.AVAILABLE  # sweeps on Ray Tune are offered only then
WARM_UP_WAIT_S = 60.0  # the pages' digits are decoded after the trainer's warm-up, or after this long regardless


def runs():
    """The run table (RunStore.runs) of the runs this session may see, with who made each ("made_by": you, the
    teacher, another browser, the command line; no other browser is named) and a name no other run in it has."""
    store = resources.training().store
    table = store.runs(session=session.whose_runs())
    mine, teachers = session.session_id(), store.classroom.teachers()
    table["made_by"] = ["you" if s == mine else "the command line" if not s else "the teacher" if s in teachers
                        else "another browser" for s in table.session]
    names = run_names(table.rename(columns={"id": "run_id"}))  # two runs of one label told apart by their ids
    table["name"] = table.id.map(names)
    return table


def newest_group(prefix: str) -> list[str]:
    """Run ids of the newest group whose name starts with `prefix`, among the runs this session may see."""
    return resources.training().store.group(prefix=prefix, session=session.whose_runs())


def group_name(prefix: str) -> str:
    """A new group's name: the prefix (what kind of experiment), the time, and a few random letters."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def new_comparison(configs: list, prefix: str) -> list[str]:
    """Create one run per config, grouped, and show that group on the Train page; returns the run ids."""
    for cfg in configs:  # all asked before any is made (create_run checks each again): none or all are made
        session.refuse_unshared(cfg.data, cfg.model)
    group, by = group_name(prefix), session.caller()
    run_ids = [resources.training().create_run(cfg, group, by=by) for cfg in configs]
    st.session_state[GROUP_KEY] = group
    return run_ids


def current_group() -> list[str]:
    """Run ids of the comparison on show: this session's, else the newest one it may see (after a reload)."""
    store = resources.training().store
    ids = store.group(st.session_state.get(GROUP_KEY)) if st.session_state.get(GROUP_KEY) else []
    return ids or store.group(None, session=session.whose_runs())


@st.cache_data(show_spinner=False, max_entries=8)
def _live_curves(run_ids: tuple[str, ...], version: tuple):  # a version of this store's runs: their ids are unique
    store = resources.training().store
    return store.metrics.curves(list(run_ids)), store.metrics.curves(list(run_ids), kind="step")


def live_curves(run_ids: list[str]):
    """(epoch curves, step curves) of runs, read again only when what is stored moved (`curves_version`):
    polling a run that waits costs one small query."""
    return _live_curves(tuple(run_ids), resources.training().store.metrics.curves_version(run_ids))


@st.cache_resource(show_spinner=False)
def _warm(held_for: Settings) -> threading.Thread:
    """Once per server: the manager gets ready for the demo comparison (the trainer started, its runs built);
    then this server loads torch, the pages' copy of the demo's digits, torch's optimizer machinery and Plotly,
    all in the background. In that order: until the trainer is ready, the server leaves a cold machine's CPU to it
    (the first click waits for the trainer, not for the server), and the trainer has decoded the digits and kept
    them on disk by then, so the server reads them in milliseconds."""
    manager = resources.training()
    manager.warm_up(demo_comparison())
    takers = resources.data_takers()  # st.cache_resource is asked here, in the script thread, not in the thread

    def decode() -> None:
        manager.wait_warmed_up(WARM_UP_WAIT_S)
        from core.training.loop import load_optimizer_machinery  # torch, in this thread

        loaded = load_data(DataConfig())
        for take in takers:
            take(loaded)
        load_optimizer_machinery()
        import core.insight.charts  # noqa: F401 - Plotly and pandas, which the pages' first chart would import

    thread = threading.Thread(target=decode, daemon=True, name="freezelab-warm-up-data")
    thread.start()
    return thread


def trainer_ready() -> bool:
    """Whether a click would train at once (the manager's `ready`: with a trainer process, once it has built
    the demo's runs; in this process, always)."""
    return resources.training().ready()


def warmed_up() -> bool:
    """Whether the trainer is ready and this server has loaded torch (`warm_up`): what needs torch on a page can
    be drawn now without a wait."""
    return torch_loaded() and trainer_ready()


def warm_up() -> None:
    """Once per server, in the background: start the trainer, decode the demo's digits and build the demo
    comparison's three runs (models, weights, feature caches), so the first click trains at once."""
    _warm(settings())


def configs(run_ids: list[str]) -> dict:
    """Each run's RunConfig (runs whose config cannot be read are left out)."""
    out = {}
    for run_id in run_ids:
        with contextlib.suppress(ConfigUnreadable, KeyError):
            out[run_id] = resources.training().store.config(run_id)
    return out


def lr_range_test(cfg):
    """(table, suggested rate) of the range test for a run config, with a progress bar."""
    from core.training import lr_find

    bar = st.progress(0.0, text="Range test")
    try:
        table = lr_find.lr_range_test(cfg, resources.data(cfg.data),
                                      progress=lambda d, t, w: bar.progress(d / t, text=w))
    finally:
        bar.empty()
    return table, lr_find.suggest(table)


def mine(run_ids: list[str]) -> list[str]:
    """Those of these runs this browser may start, stop, continue or delete: its own and everyone's."""
    made, by = resources.training().store.sessions(list(run_ids)), session.caller()
    return [r for r in run_ids if by.may_change(made[r])]


def start_burst(run_ids: list[str], **budget) -> list[str]:
    """Start a burst for the runs that can still train; returns those started. Another browser's runs are
    refused (NotYours)."""
    m = resources.training()
    ready = [r for r in run_ids if m.snapshot(r).status in RESUMABLE]
    for run_id in ready if m.in_this_process else []:  # a trainer process decodes its own, saying how far
        with contextlib.suppress(ConfigUnreadable):  # the worker fails such a run alone, saying why
            resources.data(m.store.config(run_id).data)  # decoded here, with progress, once for all
    if ready:
        m.start(ready, **budget, by=session.caller())
    return ready


def start_ray_sweep(configs: list, group: str) -> threading.Thread:
    """Train a sweep as Ray Tune trials in a background thread of this server (never in the script thread);
    its runs appear in the store under `group` as the thread creates them."""
    m, by = resources.training(), session.caller()
    for cfg in configs:  # asked here to be said on the page: the sweep's thread checks again before storing any
        session.refuse_unshared(cfg.data, cfg.model)
        validate_new_run(cfg)

    def sweep(stop: threading.Event) -> None:
        try:
            ray_engine.run_sweep(m.store, configs, group, by=by, stop=stop)
        except Exception as err:  # shown on the page through the runs' statuses and the server log
            for run_id in m.store.group(group):
                m.store.set_status(run_id, RunStatus.FAILED, f"{type(err).__name__}: {err}")
            raise

    return m.start_sweep(group, sweep)


def lengthen(run_ids: list[str], epochs: int) -> list[str]:
    """Give the finished ones of these runs `epochs` more, so a burst carries them on; returns those (none, with
    the rule's sentence shown, when that would take a run past the longest budget)."""
    try:
        return resources.training().lengthen(run_ids, epochs, by=session.caller())
    except ConfigInvalid as err:
        st.error(str(err))
        return []


def is_training(run_ids: list[str]) -> bool:
    """Whether any of these runs trains, on the job manager or in a Ray sweep (Training.is_training)."""
    return resources.training().is_training(run_ids)


def stop_training(run_ids: list[str]) -> None:
    """Stop these runs, each resumable (Training.stop_training says how)."""
    resources.training().stop_training(run_ids, by=session.caller())


def delete_run(run_id: str) -> None:
    """Delete a run with its metrics and checkpoints (a run that trains is refused)."""
    resources.training().delete(run_id, by=session.caller())


def store():
    """The run store of this $FREEZELAB_HOME."""
    return resources.training().store
