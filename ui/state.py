"""The user's current setup, kept in namespaced `st.session_state` keys, and cached heavy objects."""

from __future__ import annotations

import streamlit as st

from core.backbones import ModelConfig
from core.data import DataConfig, ImageData, load_data
from core.freezing import FreezePlan

DATA_KEY = "setup.data"  # DataConfig
MODEL_KEY = "setup.model"  # ModelConfig
PLAN_KEY = "setup.plan"  # FreezePlan


def data_config() -> DataConfig:
    return st.session_state.setdefault(DATA_KEY, DataConfig())


def set_data_config(cfg: DataConfig) -> None:
    st.session_state[DATA_KEY] = cfg


def model_config() -> ModelConfig:
    return st.session_state.setdefault(MODEL_KEY, ModelConfig())


def freeze_plan() -> FreezePlan:
    return st.session_state.setdefault(PLAN_KEY, FreezePlan.freeze())


@st.cache_data(show_spinner=False, max_entries=8)
def cached_data(cfg: DataConfig) -> ImageData:
    """Decoded images, shared by reruns and sessions (read-only: training copies batches)."""
    bar = st.progress(0.0, text="Loading images")

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / total, 1.0) if total else 0.0, text=what)

    try:
        return load_data(cfg, progress)
    finally:
        bar.empty()
