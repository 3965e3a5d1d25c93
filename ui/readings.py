"""What the pages read from trained runs (Explain, Compare, Inside): models, predictions, probes, projections,
the audit. Computed on demand and cached by the run's checkpoint version, so a new checkpoint retires them."""

from __future__ import annotations

import streamlit as st

from core.insight import analysis, inside
from core.runtime.settings import Settings, settings
from ui import resources


@st.cache_resource(show_spinner="Loading the run's model", max_entries=16)
def _model(run_id: str, step: int | None, version: int, where: Settings):
    return resources.trained_models().model_at(run_id, step)


def checkpoint_version(run_id: str) -> int | None:
    """Changes whenever the run's checkpoint is rewritten: the key that retires what was read from it."""
    return resources.trained_models().checkpoint_version(run_id)


@st.cache_data(show_spinner=False, max_entries=256)
def _checkpoint_problem(run_id: str, version: int, where: Settings) -> str | None:
    return resources.trained_models().checkpoint_problem(run_id)


def checkpoint_problem(run_id: str) -> str | None:
    """Why the run's checkpoint cannot be read, in words (checked once per version of the file); None when it
    can, or when it has none yet."""
    version = checkpoint_version(run_id)
    return None if version is None else _checkpoint_problem(run_id, version, settings())


def has_checkpoint(run_id: str) -> bool:
    """Whether the run has a checkpoint to read and show (once its first burst has ended); a checkpoint that
    cannot be read is none (`unreadable` says why)."""
    return resources.trained_models().has_checkpoint(run_id) and checkpoint_problem(run_id) is None


def unreadable(run_ids: list[str]) -> list[str]:
    """A sentence for each of these runs whose checkpoint cannot be read: the pages leave them out, saying so."""
    store = resources.trained_models().store
    return [f"{store.label(r)} ({r}) is left out: {why}." for r in run_ids if (why := checkpoint_problem(r))]


def run_model(run_id: str, step: int | None = None):
    """(model, data) of a run's latest checkpoint (or a kept step); None before it has one. Shared and
    read-only: attribution methods work on their own copies."""
    version = checkpoint_version(run_id)
    return None if version is None else _model(run_id, step, version, settings())


@st.cache_data(show_spinner="Predicting the validation set", max_entries=32)
def _val_probabilities(run_id: str, version: int, where: Settings):
    model, data = run_model(run_id)
    return analysis.predict(model, data.val_x).numpy()


def val_probabilities(run_id: str):
    """Class probabilities (N, C) of a run's latest checkpoint on its validation images."""
    return _val_probabilities(run_id, checkpoint_version(run_id), settings())


def confusion(run_id: str):
    """(matrix, classes) of a run's last checkpoint on its validation set, or None before it has one."""
    loaded = run_model(run_id)
    if loaded is None:
        return None
    data = loaded[1]
    predicted = val_probabilities(run_id).argmax(1)
    return analysis.confusion_matrix(data.val_y.numpy(), predicted, data.num_classes), data.classes


def _kept(run_id: str, step: int) -> bool:
    return step in resources.trained_models().store.checkpoints.steps(run_id)


@st.cache_data(show_spinner="Probing each block", max_entries=16)
def _probes(run_id: str, version: int, where: Settings):
    (start, data), (trained, _) = run_model(run_id, 0), run_model(run_id)
    return inside.linear_probes(start, data), inside.linear_probes(trained, data)


def probes(run_id: str):
    """(before, after) linear-probe tables of a run: its starting weights and its latest checkpoint; None
    when either is missing."""
    version = checkpoint_version(run_id)
    return None if version is None or not _kept(run_id, 0) else _probes(run_id, version, settings())


@st.cache_data(show_spinner="Projecting features", max_entries=16)
def _pca(run_id: str, version: int, where: Settings):
    (start, data), (trained, _) = run_model(run_id, 0), run_model(run_id)
    return {"starting weights": inside.feature_pca(start, data.val_x),
            "after training": inside.feature_pca(trained, data.val_x)}, data.val_y.numpy(), data.classes


def pca(run_id: str):
    """({state: (N, 2) coordinates}, labels, classes) of a run's validation features, or None."""
    version = checkpoint_version(run_id)
    return None if version is None or not _kept(run_id, 0) else _pca(run_id, version, settings())


@st.cache_data(show_spinner="Scoring the source task at each kept step", max_entries=16)
def _forgetting(run_id: str, version: int, where: Settings):
    store = resources.trained_models().store
    cfg = store.config(run_id)
    task = inside.source_task(cfg)
    steps = store.checkpoints.steps(run_id)
    return inside.forgetting(task, cfg, {s: store.checkpoints.weights_at(run_id, s) for s in steps})


def forgetting(run_id: str):
    """The run's source-task accuracy over its kept steps, or None (no checkpoint, or no source task)."""
    version = checkpoint_version(run_id)
    if version is None or inside.source_task(resources.trained_models().store.config(run_id)) is None:
        return None
    return _forgetting(run_id, version, settings())


@st.cache_data(show_spinner="Auditing", max_entries=32)
def _flags(run_id: str, version: int, where: Settings):
    state, saved = resources.trained_models().restored(run_id)
    return inside.run_flags(state, saved, resources.trained_models().store.metrics.block_stats([run_id]))


def flags(run_id: str):
    """The audit's flags for a run's latest checkpoint, or None before it has one."""
    version = checkpoint_version(run_id)
    return None if version is None else _flags(run_id, version, settings())


COST_REPEATS = 9  # steps timed per setting: enough for a median and its spread


@st.cache_data(show_spinner=False, max_entries=8)
def _freeze_cost(model_cfg, data_cfg, batch_size: int):
    bar = st.progress(0.0, text="Measuring each depth")
    try:
        return inside.freeze_cost(model_cfg, resources.data(data_cfg), batch_size, repeats=COST_REPEATS,
                                  progress=lambda d, t, what: bar.progress(d / t, text=what))
    finally:
        bar.empty()


def freeze_cost(model_cfg, data_cfg, batch_size: int):
    """Cost against depth for a setup (measured once per setup and batch size in this process)."""
    return _freeze_cost(model_cfg, data_cfg, batch_size)
