"""The user's current setup in namespaced `st.session_state` keys, and the cached heavy objects.

`st.cache_resource` holds what every browser session shares: the job manager (one per
$FREEZELAB_HOME), decoded datasets, and bare model templates. Data are read-only everywhere (training
copies batches), so sharing them without copying is safe; templates are deep-copied before a plan is
applied to them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import threading
import time
import uuid

import streamlit as st

from core import analysis, freezing, inside, paths, trainer
from core import setup as setups
from core.backbones import FreezeLabNet, ModelConfig, build_model, count_params
from core.data import DataConfig, DataUnavailable, ImageData, list_classes, load_data
from core.device import all_cores_but_one
from core.freezing import FreezePlan
from core.jobs import JobManager
from core.runs import RESUMABLE, ConfigUnreadable, RunStore, StoreDamaged
from core.trainer import TrainerClient
from core.training import OptimConfig, demo_comparison, make_optimizer

DATA_KEY = "setup.data"  # DataConfig
MODEL_KEY = "setup.model"  # ModelConfig
PLAN_KEY = "setup.plan"  # FreezePlan
GROUP_KEY = "train.group"  # the comparison shown on the Train page
CACHE_KEY = "setup.cache"  # bool: the feature-cache switch of the last runs created; the Layers preview follows it
LINK_KEY = "setup.link_read"  # set once the URL's setup has been applied to this session
SESSION_KEY = "runs.session"  # str: whose runs these are, when the browser gives no stable identity
SHOW_ALL_KEY = "runs.show_all"  # bool: list every session's runs, not only this browser's


def data_config() -> DataConfig:
    return st.session_state.setdefault(DATA_KEY, DataConfig())


def set_data_config(cfg: DataConfig) -> None:
    st.session_state[DATA_KEY] = cfg


def model_config() -> ModelConfig:
    return st.session_state.setdefault(MODEL_KEY, ModelConfig())


def set_model_config(cfg: ModelConfig) -> None:
    st.session_state[MODEL_KEY] = cfg


def freeze_plan() -> FreezePlan:
    return st.session_state.setdefault(PLAN_KEY, FreezePlan.freeze())


def set_freeze_plan(plan: FreezePlan) -> None:
    st.session_state[PLAN_KEY] = plan


def setup() -> setups.Setup:
    return setups.Setup(data_config(), model_config(), freeze_plan())


def set_setup(value: setups.Setup) -> None:
    set_data_config(value.data)
    set_model_config(value.model)
    set_freeze_plan(value.plan)


def open_shared_link() -> None:
    """On a session's first run, take the setup its URL's query parameters encode (a link a teacher shared);
    what cannot be used is said once, the rest applies."""
    if st.session_state.get(LINK_KEY):
        return
    st.session_state[LINK_KEY] = True
    params = {k: st.query_params[k] for k in setups.QUERY_KEYS if k in st.query_params}
    if params:
        opened, problems = setups.from_query(params)
        set_setup(opened)
        for problem in problems:
            st.toast(problem, icon="⚠️")


def share_setup() -> None:
    """Write the current setup into the URL (only what differs from a fresh start), leaving other keys."""
    wanted = setups.to_query(setup())
    for key in setups.QUERY_KEYS:
        if key not in wanted and key in st.query_params:
            del st.query_params[key]
    changed = {k: v for k, v in wanted.items() if st.query_params.get(k) != v}
    if changed:
        st.query_params.update(changed)


def session_id() -> str:
    """Who this browser is, for the runs it makes: a hash of the token in its XSRF cookie (stable across
    reloads and server restarts, and telling nothing of the token), else a random id for this session."""
    if SESSION_KEY not in st.session_state:
        st.session_state[SESSION_KEY] = _browser_id() or uuid.uuid4().hex[:12]
    return st.session_state[SESSION_KEY]


def _browser_id() -> str | None:
    """Tornado's version-2 XSRF cookie is "2|mask|masked token|time": the token (mask XOR masked) is fixed for
    the browser, the mask changes whenever the cookie is written."""
    try:
        version, mask, masked, _ = st.context.cookies.get("_streamlit_xsrf", "").split("|")
        token = bytes(a ^ b for a, b in zip(bytes.fromhex(masked), itertools.cycle(bytes.fromhex(mask))))
    except (ValueError, AttributeError):
        return None
    return hashlib.sha256(b"freezelab-session:" + token).hexdigest()[:12] if version == "2" and token else None


def show_all() -> bool:
    return bool(st.session_state.get(SHOW_ALL_KEY, False))


def whose_runs() -> str | None:
    """The session whose runs the pages list; None: everyone's (the sidebar's switch)."""
    return None if show_all() else session_id()


def runs():
    """The run table (RunStore.runs) of the runs this session may see."""
    return manager().store.runs(session=whose_runs())


def own_runs(table) -> set[str]:
    """Ids in a run table (RunStore.runs) that this session may delete: its own and everyone's."""
    return set(table.id[table.session.isin(["", session_id()])])


def newest_group(prefix: str) -> list[str]:
    """Run ids of the newest group whose name starts with `prefix`, among the runs this session may see."""
    return manager().store.group(prefix=prefix, session=whose_runs())


def cache_switch() -> bool:
    """Whether new runs may cache frozen features (the Train page's switch; on until changed)."""
    return st.session_state.setdefault(CACHE_KEY, True)


def set_cache_switch(on: bool) -> None:
    st.session_state[CACHE_KEY] = on


def num_classes(cfg: DataConfig) -> int:
    """Classes the current data will have, without loading it; 0 when its folder cannot serve."""
    if cfg.classes:
        return len(cfg.classes)
    try:
        return len(list_classes(cfg))
    except DataUnavailable:
        return 0


def training_threads() -> int:
    """The torch threads the app's workers train with: every core but one, for the server and the browser."""
    return all_cores_but_one()


@st.cache_resource(show_spinner=False)
def _manager(home: str) -> TrainerClient | JobManager:
    store = RunStore(paths.home())
    if trainer.in_own_process():  # the default: training shares neither the interpreter nor the server's life
        return TrainerClient(store, threads=training_threads())
    return JobManager(store, threads=training_threads())


def manager() -> TrainerClient | JobManager:
    """The job manager for this $FREEZELAB_HOME: a client of the trainer process (core/trainer.py), or, with
    FREEZELAB_TRAINER=thread, a manager that trains in this process. A damaged run store stops the page with a
    message naming it and a button that sets it aside (unchanged) for a fresh one."""
    try:
        return _manager(str(paths.home()))
    except StoreDamaged as err:
        st.error(str(err))
        if st.button("Start a fresh run store", key="store.fresh", type="primary"):
            aside = RunStore.set_aside()
            st.success(f"The damaged store is kept as {aside}; a fresh one starts now.")
            st.rerun()
        st.stop()


@st.cache_resource(show_spinner=False, max_entries=4)
def _data(cfg: DataConfig) -> ImageData:
    bar = st.progress(0.0, text="Loading images")

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / total, 1.0) if total else 0.0, text=f"{what} ({done:,} of {total:,})")

    try:
        return load_data(cfg, progress)
    finally:
        bar.empty()


def data(cfg: DataConfig) -> ImageData:
    """Decoded images, shared by reruns, sessions and the training workers."""
    loaded = _data(cfg)
    manager().add_data(loaded)
    return loaded


@st.cache_resource(show_spinner=False, max_entries=8)
def _template(backbone: str, head, n_classes: int, image_size: int) -> FreezeLabNet:
    return build_model(ModelConfig(backbone, "none", head), n_classes, image_size)


def structure(cfg: ModelConfig, n_classes: int, image_size: int) -> FreezeLabNet:
    """A private copy of the architecture (random weights: structure and counts do not depend on them)."""
    return copy.deepcopy(_template(cfg.backbone, cfg.head, n_classes, image_size))


def planned(cfg: ModelConfig, plan: FreezePlan, n_classes: int, image_size: int):
    """(net, audit table, each block's parameters before truncation) of the architecture with `plan`
    applied, in training mode; ValueError, in words, for a plan that does not fit."""
    net = structure(cfg, n_classes, image_size)
    full_params = {name: count_params(block) for name, block in net.blocks.items()}
    freezing.apply(net, plan)
    net.train()
    return net, freezing.audit(net, make_optimizer(net, OptimConfig(lr=1e-3))), full_params


def group_name(prefix: str) -> str:
    """A new group's name: the prefix (what kind of experiment), the time, and a few random letters."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def new_comparison(configs: list, prefix: str) -> list[str]:
    """Create one run per config, grouped, and show that group on the Train page; returns the run ids."""
    group = group_name(prefix)
    run_ids = [manager().create_run(cfg, group, session_id()) for cfg in configs]
    st.session_state[GROUP_KEY] = group
    return run_ids


def current_group() -> list[str]:
    """Run ids of the comparison on show: this session's, else the newest one it may see (after a reload)."""
    store = manager().store
    ids = store.group(st.session_state.get(GROUP_KEY)) if st.session_state.get(GROUP_KEY) else []
    return ids or store.group(None, session=whose_runs())


@st.cache_data(show_spinner=False, max_entries=8)
def _live_curves(run_ids: tuple[str, ...], version: tuple, home: str):
    store = manager().store
    return store.curves(list(run_ids)), store.curves(list(run_ids), kind="step")


def live_curves(run_ids: list[str]):
    """(epoch curves, step curves) of runs, read again only when what is stored moved (`curves_version`):
    polling a run that waits costs one small query."""
    return _live_curves(tuple(run_ids), manager().store.curves_version(run_ids), str(paths.home()))


@st.cache_resource(show_spinner=False)
def _warm(home: str) -> threading.Thread:
    m = manager()
    if isinstance(m, TrainerClient):
        trainer.spawn(paths.home(), m.threads)  # it imports torch meanwhile (seconds), unless started already

    def warm() -> None:
        m.prepare_ahead(demo_comparison())  # in the trainer: it builds them there, and this returns at once
        m.add_data(load_data(DataConfig()))  # the pages' copy (in this process the same one, loaded already)

    thread = threading.Thread(target=warm, daemon=True, name="freezelab-warm-up")
    thread.start()
    return thread


def trainer_ready() -> bool:
    """Whether a click would train at once: the warm-up has asked the trainer for the demo's runs and the
    trainer has built them (always, when training runs in this process)."""
    m = manager()
    return not isinstance(m, TrainerClient) or (not _warm(str(paths.home())).is_alive() and m.ready())


def warm_up() -> None:
    """Once per server, in the background: start the trainer, decode the demo's digits and build the demo
    comparison's three runs (models, weights, feature caches), so the first click trains at once."""
    _warm(str(paths.home()))


def configs(run_ids: list[str]) -> dict:
    """Each run's RunConfig (runs whose config cannot be read are left out)."""
    out = {}
    for run_id in run_ids:
        with contextlib.suppress(ConfigUnreadable, KeyError):
            out[run_id] = manager().store.config(run_id)
    return out


def lr_range_test(cfg):
    """(table, suggested rate) of the range test for a run config, with a progress bar."""
    from core import lr_find

    bar = st.progress(0.0, text="Range test")
    try:
        table = lr_find.lr_range_test(cfg, data(cfg.data), progress=lambda d, t, w: bar.progress(d / t, text=w))
    finally:
        bar.empty()
    return table, lr_find.suggest(table)


def start_burst(run_ids: list[str], **budget) -> list[str]:
    """Start a burst for the runs that can still train; returns those started."""
    m = manager()
    ready = [r for r in run_ids if m.snapshot(r).status in RESUMABLE]
    for run_id in ready if isinstance(m, JobManager) else []:  # the trainer decodes its own, saying how far
        with contextlib.suppress(ConfigUnreadable):  # the worker fails such a run alone, saying why
            data(m.store.config(run_id).data)  # decode here, with progress, once for every session and worker
    if ready:
        m.start(ready, **budget)
    return ready


@st.cache_resource(show_spinner=False)
def _ray_sweeps(home: str) -> dict[str, tuple[threading.Thread, threading.Event]]:
    """The Ray sweeps this server started, by group: the thread that runs each and its stop request. Shared by
    every session, as the sweeps' runs are."""
    return {}


def start_ray_sweep(configs: list, group: str) -> threading.Thread:
    """Train a sweep as Ray Tune trials in a background thread (never in the script thread); its runs
    appear in the store under `group` as the thread creates them."""
    from core import ray_engine

    store, session, stop = manager().store, session_id(), threading.Event()

    def sweep() -> None:
        try:
            ray_engine.run_sweep(store, configs, group, session=session, stop=stop)
        except Exception as err:  # shown on the page through the runs' statuses and the server log
            for run_id in store.group(group):
                store.set_status(run_id, "failed", f"{type(err).__name__}: {err}")
            raise

    thread = threading.Thread(target=sweep, daemon=True, name=f"freezelab-ray-{group}")
    sweeps = _ray_sweeps(str(paths.home()))
    for ended in [g for g, (t, _) in sweeps.items() if not t.is_alive()]:
        del sweeps[ended]
    sweeps[group] = thread, stop
    thread.start()
    return thread


def _ray_stops(run_ids: list[str]) -> list[threading.Event]:
    """The stop requests of the Ray sweeps, still training, that train any of these runs."""
    sweeps, store = _ray_sweeps(str(paths.home())), manager().store
    return [stop for group, (thread, stop) in list(sweeps.items())
            if thread.is_alive() and set(store.group(group)) & set(run_ids)]


def is_training(run_ids: list[str]) -> bool:
    """Whether any of these runs trains: on the job manager, or in a Ray sweep this server started (until its
    running trials have stopped, once asked to)."""
    return any(manager().is_busy(r) for r in run_ids) or bool(_ray_stops(run_ids))


def stop_training(run_ids: list[str]) -> None:
    """Stop these runs, each resumable: on the job manager each stops after its step; a Ray sweep that trains
    any of them begins no more trials and stops each running one after its epoch (checkpoint stored)."""
    for stop in _ray_stops(run_ids):
        stop.set()
    manager().stop(run_ids)


@st.cache_resource(show_spinner="Loading the run's model", max_entries=16)
def _model(run_id: str, step: int | None, version: int, home: str):
    return manager().model_at(run_id, step)


def _checkpoint_version(run_id: str) -> int | None:
    """Changes whenever the run's checkpoint is rewritten: the key that retires cached results."""
    path = manager().store.checkpoint_path(run_id)
    return path.stat().st_mtime_ns if path.is_file() else None


def run_model(run_id: str, step: int | None = None):
    """(model, data) of a run's latest checkpoint (or a kept step); None before it has one. Shared and
    read-only: attribution methods work on their own copies."""
    version = _checkpoint_version(run_id)
    return None if version is None else _model(run_id, step, version, str(paths.home()))


@st.cache_data(show_spinner="Predicting the validation set", max_entries=32)
def _val_probabilities(run_id: str, version: int, home: str):
    model, data = run_model(run_id)
    return analysis.predict(model, data.val_x).numpy()


def val_probabilities(run_id: str):
    """Class probabilities (N, C) of a run's latest checkpoint on its validation images."""
    return _val_probabilities(run_id, _checkpoint_version(run_id), str(paths.home()))


def confusion(run_id: str):
    """(matrix, classes) of a run's last checkpoint on its validation set, or None before it has one."""
    loaded = run_model(run_id)
    if loaded is None:
        return None
    data = loaded[1]
    predicted = val_probabilities(run_id).argmax(1)
    return analysis.confusion_matrix(data.val_y.numpy(), predicted, data.num_classes), data.classes


# --- inside the network: computed on demand, cached by checkpoint version ---------------------------

def _kept(run_id: str, step: int) -> bool:
    return step in manager().store.checkpoint_steps(run_id)


@st.cache_data(show_spinner="Probing each block", max_entries=16)
def _probes(run_id: str, version: int, home: str):
    (start, data), (trained, _) = run_model(run_id, 0), run_model(run_id)
    return inside.linear_probes(start, data), inside.linear_probes(trained, data)


def probes(run_id: str):
    """(before, after) linear-probe tables of a run: its starting weights and its latest checkpoint; None
    when either is missing."""
    version = _checkpoint_version(run_id)
    return None if version is None or not _kept(run_id, 0) else _probes(run_id, version, str(paths.home()))


@st.cache_data(show_spinner="Projecting features", max_entries=16)
def _pca(run_id: str, version: int, home: str):
    (start, data), (trained, _) = run_model(run_id, 0), run_model(run_id)
    return {"starting weights": inside.feature_pca(start, data.val_x),
            "after training": inside.feature_pca(trained, data.val_x)}, data.val_y.numpy(), data.classes


def pca(run_id: str):
    """({state: (N, 2) coordinates}, labels, classes) of a run's validation features, or None."""
    version = _checkpoint_version(run_id)
    return None if version is None or not _kept(run_id, 0) else _pca(run_id, version, str(paths.home()))


@st.cache_data(show_spinner="Scoring the source task at each kept step", max_entries=16)
def _forgetting(run_id: str, version: int, home: str):
    store = manager().store
    cfg = store.config(run_id)
    task = inside.source_task(cfg)
    return inside.forgetting(task, cfg, {s: store.weights_at(run_id, s) for s in store.checkpoint_steps(run_id)})


def forgetting(run_id: str):
    """The run's source-task accuracy over its kept steps, or None (no checkpoint, or no source task)."""
    version = _checkpoint_version(run_id)
    if version is None or inside.source_task(manager().store.config(run_id)) is None:
        return None
    return _forgetting(run_id, version, str(paths.home()))


@st.cache_data(show_spinner="Auditing", max_entries=32)
def _flags(run_id: str, version: int, home: str):
    state, saved = manager().restored(run_id)
    return inside.run_flags(state, saved, manager().store.block_stats([run_id]))


def flags(run_id: str):
    """The audit's flags for a run's latest checkpoint, or None before it has one."""
    version = _checkpoint_version(run_id)
    return None if version is None else _flags(run_id, version, str(paths.home()))


@st.cache_data(show_spinner=False, max_entries=8)
def _freeze_cost(model_cfg, data_cfg, batch_size: int):
    bar = st.progress(0.0, text="Measuring each depth")
    try:
        return inside.freeze_cost(model_cfg, data(data_cfg), batch_size, repeats=5,
                                  progress=lambda d, t, what: bar.progress(d / t, text=what))
    finally:
        bar.empty()


def freeze_cost(model_cfg, data_cfg, batch_size: int):
    """Cost against depth for a setup (measured once per setup and batch size in this process)."""
    return _freeze_cost(model_cfg, data_cfg, batch_size)
