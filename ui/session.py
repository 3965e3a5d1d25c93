"""This browser session's choices in namespaced `st.session_state` keys: the setup (data, backbone and weights,
freeze plan) and the link that carries it, whose runs the pages list, the feature-cache switch."""

from __future__ import annotations

import hashlib
import itertools
import uuid

import streamlit as st

from core import links
from core.data.datasets import DataConfig
from core.freezing import FreezePlan
from core.models import bounds
from core.models.backbones import ModelConfig
from core.runtime import words
from core.runtime.shares import Caller

DATA_KEY = "setup.data"  # DataConfig
MODEL_KEY = "setup.model"  # ModelConfig
PLAN_KEY = "setup.plan"  # FreezePlan
CACHE_KEY = "setup.cache"  # bool: the feature-cache switch of the last runs created; the Layers preview follows it
LINK_KEY = "setup.link_read"  # set once the URL's setup has been applied to this session
SESSION_KEY = "runs.session"  # str: whose runs these are, when the browser gives no stable identity
SHOW_ALL_KEY = "runs.show_all"  # bool: list every session's runs, not only this browser's
SHARED_COMPARISON_KEY = "setup.shared_comparison"  # [RunConfig]: the comparison a link carried, not yet trained
RUNS_PARAM = "runs"  # ?runs=ID,ID: the runs Compare, Explain and Inside show, so a link opens the same view


# Widgets whose values a user expects to find again after visiting another page (Streamlit forgets a widget's
# value once a page is drawn without it, unless the key is written before then).
KEPT_WIDGETS = ("train.variants", "train.epochs", "train.lr", "train.optimizer", "train.batch", "train.seed",
                "train.patience", "train.same_lr", "train.unit", "train.amount", "train.x")


def keep_widget_values() -> None:
    """Called by the entry point before every page: each kept widget's value is written back to its key, so it
    outlives the pages drawn without that widget."""
    for key in KEPT_WIDGETS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def data_config() -> DataConfig:
    return st.session_state.setdefault(DATA_KEY, DataConfig())


def set_data_config(cfg: DataConfig) -> None:
    refuse_unshared(data=cfg)
    st.session_state[DATA_KEY] = cfg


def model_config() -> ModelConfig:
    return st.session_state.setdefault(MODEL_KEY, ModelConfig())


def set_model_config(cfg: ModelConfig) -> None:
    refuse_unshared(model=cfg)
    st.session_state[MODEL_KEY] = cfg


def refuse_unshared(data: DataConfig | None = None, model: ModelConfig | None = None) -> None:
    """shares.NotShared, in words, when what this browser chose names what the operator does not share or allow
    (core/models/bounds.py): asked early, so a page says it at once; the training calls check it again."""
    bounds.check_choices(caller(), data, model)


def freeze_plan() -> FreezePlan:
    return st.session_state.setdefault(PLAN_KEY, FreezePlan.freeze())


def set_freeze_plan(plan: FreezePlan) -> None:
    st.session_state[PLAN_KEY] = plan


def current_setup() -> links.Setup:
    """The setup this session has chosen (data, backbone and weights, freeze plan)."""
    return links.Setup(data_config(), model_config(), freeze_plan())


def set_setup(value: links.Setup) -> None:
    set_data_config(value.data)
    set_model_config(value.model)
    set_freeze_plan(value.plan)


def open_shared_link() -> None:
    """On a session's first run, take the setup its URL's query parameters encode (a link a teacher shared);
    what cannot be used is said once, the rest applies."""
    if st.session_state.get(LINK_KEY):
        return
    st.session_state[LINK_KEY] = True
    params = {k: st.query_params[k] for k in links.QUERY_KEYS if k in st.query_params}
    problems = []
    if params:
        opened, problems = links.from_query(params)
        set_setup(opened)
    if links.COMPARISON_KEY in st.query_params:  # offered on the Train page, trained only when asked
        configs, refused = links.comparison_from_query(st.query_params[links.COMPARISON_KEY])
        st.session_state[SHARED_COMPARISON_KEY] = configs
        problems += refused
    for problem in problems:
        st.toast(problem, icon="⚠️")


def shared_comparison() -> list:
    """The runs' configs a shared link carried (not yet created), or []."""
    return st.session_state.get(SHARED_COMPARISON_KEY, [])


def drop_shared_comparison() -> None:
    st.session_state.pop(SHARED_COMPARISON_KEY, None)


def comparison_link(configs: list) -> str:
    """A link that opens this app's Train page with `configs` offered there (the address this browser used, and
    the comparison in its query)."""
    return f"{page_url('train')}?{links.COMPARISON_KEY}={links.comparison_to_query(configs)}"


def page_url(page: str) -> str:
    """The address of one of the app's pages as this browser reaches the app (its host, port and base path)."""
    here = (st.context.url or "").split("?")[0]
    return f"{here.rsplit('/', 1)[0]}/{page}" if here else f"/{page}"


def runs_from_link(picker_key: str, offered: list[str], listed: list[str]) -> list[str] | None:
    """The runs a link names (`?runs=ID,ID`) that the picker `picker_key` offers, once per link (None when there is
    no new link): the page opens them as its selection. Those it cannot open are said in a toast: `listed` are
    this browser's runs (a listed run not offered has nothing to show here yet); any other id is unknown here or
    another browser's, which is not told apart."""
    asked = st.query_params.get(RUNS_PARAM)
    seen = f"{picker_key}.link"
    if not asked or st.session_state.get(seen) == asked:
        return None
    st.session_state[seen] = asked
    ids = list(dict.fromkeys(r for r in asked.split(",") if r))
    opened = [r for r in ids if r in offered]
    waiting = [r for r in ids if r not in offered and r in listed]
    unknown = [r for r in ids if r not in listed]
    if waiting:
        st.toast(f"Not shown here yet: run {words.listed(waiting)} (no checkpoint until its first burst ends).",
                 icon="⚠️")
    if unknown:
        st.toast(f"No run {words.listed(unknown)} among this browser's runs: the link opened the rest.", icon="⚠️")
    if opened and picker_key in st.session_state:  # the picker already drawn in this session: its value moves
        st.session_state[picker_key] = opened
    return opened or None


def link_runs(picker_key: str, selected: list[str]) -> None:
    """Write the runs on show into the URL (`?runs=`), so the address is a link to this view."""
    value = ",".join(selected)
    st.session_state[f"{picker_key}.link"] = value
    if not value:
        st.query_params.pop(RUNS_PARAM, None)
    elif st.query_params.get(RUNS_PARAM) != value:
        st.query_params[RUNS_PARAM] = value


def share_setup() -> None:
    """Write the current setup into the URL (only what differs from a fresh start), leaving other keys."""
    wanted = links.to_query(current_setup())
    for key in links.QUERY_KEYS:
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


def caller() -> Caller:
    """Who this browser is to the engine: the one place its `Caller` is made, from the session this server serves
    (nothing the browser sends names it)."""
    return Caller.browser(session_id())


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


def cache_switch() -> bool:
    """Whether new runs may cache frozen features (the Train page's switch; on until changed)."""
    return st.session_state.setdefault(CACHE_KEY, True)


def set_cache_switch(on: bool) -> None:
    st.session_state[CACHE_KEY] = on
