"""What every browser session shares, held by `st.cache_resource`: the job manager, the models read back from
the store and the images they draw on (these three once per settings value, core/runtime/settings.py: one in a
server's life, one per test in the tests), decoded datasets, and bare model templates. Data are read-only everywhere
(training copies batches), so sharing them without copying is safe; templates are deep-copied before a plan is
applied to them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from core import freezing
from core.data.datasets import DataConfig, DataUnavailable, ImageData, LoadedImages, list_classes, load_data
from core.execution import trainer_client
from core.execution.interface import Training
from core.freezing import FreezePlan
from core.models.backbones import ModelConfig
from core.runtime.device import all_cores_but_one
from core.runtime.settings import Settings, settings
from core.store.database import StoreDamaged
from core.store.runs import RunStore
from core.training.config import OptimConfig

# Torch is imported where a model is built or trained in this process, not here: every page imports this module,
# and the Start page draws its button before anything needs torch (a fresh server answers a first browser at
# once; the trainer process loads torch meanwhile).
if TYPE_CHECKING:
    from core.models.network import FreezeLabNet
    from core.store.trained_models import TrainedModels


def training_threads() -> int:
    """The torch threads the app's workers train with: every core but one, for the server and the browser."""
    return all_cores_but_one()


@st.cache_resource(show_spinner=False)
def _manager(held_for: Settings) -> Training:
    store = RunStore(held_for.home)
    if trainer_client.in_own_process():  # the default: training shares neither the interpreter nor the server's life
        return trainer_client.TrainerClient(store, threads=training_threads())
    from core.execution.jobs import JobManager

    return JobManager(store, threads=training_threads())


def training() -> Training:
    """The one interface to training for this $FREEZELAB_HOME: a client of the trainer process
    (core/execution/trainer_client.py), or, with FREEZELAB_TRAINER=thread, a manager that trains in this process. The
    entry point asks first, on every page: a damaged run store stops the page there, with a message naming it
    and a button that sets it aside (unchanged) for a fresh one."""
    try:
        return _manager(settings())
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


@st.cache_resource(show_spinner=False)
def _images(held_for: Settings) -> LoadedImages:
    return LoadedImages()


def images() -> LoadedImages:
    """The images this server holds decoded, which the models read back draw on (torch-free: the warm-up hands
    the demo's digits over through it before the pages have loaded torch)."""
    return _images(settings())


@st.cache_resource(show_spinner=False)
def _trained_models(held_for: Settings) -> TrainedModels:
    from core.store.trained_models import TrainedModels

    return TrainedModels(training().store, images=images())


def trained_models() -> TrainedModels:
    """Models read back from this $FREEZELAB_HOME's run store (Explain, Inside, the audit), in this process."""
    return _trained_models(settings())


def data_takers() -> list[Callable[[ImageData], None]]:
    """Who in this process keeps decoded images (the training workers, the models read back), so none decodes
    them again. Resolved in the script thread: a background thread hands images over through these."""
    return [training().add_data, images().add]


def data(cfg: DataConfig) -> ImageData:
    """Decoded images, shared by reruns, sessions, the models read back and the training workers."""
    loaded = _data(cfg)
    for take in data_takers():
        take(loaded)
    return loaded


@st.cache_resource(show_spinner=False)
def operator_models() -> tuple[list[str], str]:
    """(the backbone names of the operator's own networks, why they could not be offered or ''): registered once
    per server, from $FREEZELAB_MODEL_FILES (freezelab app --model-file)."""
    from core.models import own

    if not settings().model_files:
        return [], ""
    try:
        return own.register_from_environment(), ""
    except own.ModelFileRefused as err:
        return [], str(err)


@st.cache_resource(show_spinner="Listing torchvision's and timm's models")
def any_model_names() -> list[str]:
    """Every model torchvision and timm name, for the backbone picker (timm's import takes seconds: once)."""
    from core.models.backbones import LIBRARIES, any_model_names

    return [n for library in LIBRARIES for n in any_model_names(library)]


@st.cache_resource(show_spinner=False, max_entries=8)
def _template(backbone: str, head, n_classes: int, image_size: int) -> FreezeLabNet:
    from core.models.network import build_model

    return build_model(ModelConfig(backbone, "none", head), n_classes, image_size)


def check_weights(cfg: ModelConfig, n_classes: int) -> None:
    """Build `cfg` once with its weights: WeightsMismatch, naming the layers, when they do not fit it."""
    from core.models.network import build_model

    build_model(cfg, n_classes)


def structure(cfg: ModelConfig, n_classes: int, image_size: int) -> FreezeLabNet:
    """A private copy of the architecture (random weights: structure and counts do not depend on them)."""
    return copy.deepcopy(_template(cfg.backbone, cfg.head, n_classes, image_size))


def planned(cfg: ModelConfig, plan: FreezePlan, n_classes: int, image_size: int):
    """(net, audit table, each block's parameters before truncation) of the architecture with `plan`
    applied, in training mode; ValueError, in words, for a plan that does not fit. The audit's learning rates
    are at the rate suited to what the plan trains (`freezing.suited_lr`), the one its preset trains at."""
    from core.models.network import count_params
    from core.training.loop import make_optimizer

    net = structure(cfg, n_classes, image_size)
    full_params = {name: count_params(block) for name, block in net.blocks.items()}
    freezing.apply(net, plan)
    net.train()
    scratch = cfg.weights == "none" and set(plan.trainable) >= set(full_params)  # the from-scratch preset
    base = freezing.suited_lr(plan, list(full_params), from_scratch=scratch)
    return net, freezing.audit(net, make_optimizer(net, OptimConfig(lr=base))), full_params


def num_classes(cfg: DataConfig) -> int:
    """Classes the current data will have, without loading it; 0 when its folder cannot serve."""
    if cfg.classes:
        return len(cfg.classes)
    try:
        return len(list_classes(cfg))
    except DataUnavailable:
        return 0
