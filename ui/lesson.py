"""The lesson as this browser takes it (core/lesson/ holds the steps and writes the reveals): the step on show,
the predictions taken, the runs each set trained, and each step's reading and reveal, for whatever step it is."""

from __future__ import annotations

import time

import streamlit as st

from core import lesson
from core.data.datasets import DataConfig
from core.models.backbones import ModelConfig
from core.runtime import shares
from core.runtime.words import quoted
from core.store.status import ENDED_BADLY, RunStatus
from core.training import rules
from core.training.rules import ConfigInvalid
from ui import navigation, readings, resources, session, training

STEP_KEY = "lesson.step"  # int: the step on show


STEP_LINK_KEY = "step"  # the query parameter that opens a step: /lesson?step=3


def step_index() -> int:
    """The step on show (0-based); on a session's first visit, the one its link names (`?step=3`)."""
    if STEP_KEY not in st.session_state:
        st.session_state[STEP_KEY] = 0
        asked = st.query_params.get(STEP_LINK_KEY)
        if asked is not None:
            try:  # the one reader of whole numbers: ASCII digits only ("²" and "٣" pass isdigit, int refuses one)
                number = rules.whole_number(asked, "The link's step")
            except ConfigInvalid:
                number = None
            if number is not None and 1 <= number <= len(lesson.STEPS):
                st.session_state[STEP_KEY] = number - 1
            else:
                st.toast(f"The link's step={quoted(asked, 20)} was not used: the lesson's steps are 1 to "
                         f"{len(lesson.STEPS)}.", icon="⚠️")
    return st.session_state[STEP_KEY]


def step_link(index: int) -> str:
    """A link that opens the lesson at step `index` (0-based)."""
    return f"{session.page_url('lesson')}?{STEP_LINK_KEY}={index + 1}"


def go_to(index: int) -> None:
    st.session_state[STEP_KEY] = max(0, min(index, len(lesson.STEPS) - 1))


def widget_key(step: lesson.Step) -> str:
    """The prediction radio's key (Streamlit forgets it on steps that do not draw it: `keep_prediction`)."""
    return f"lesson.predict.{step.key}"


def keep_prediction(step: lesson.Step) -> None:
    """The radio's callback: the prediction is kept for the lesson, not only while its step is on show, and
    counted in the class's tally (anonymously: the teacher sees how many, not who)."""
    choice = st.session_state[widget_key(step)]
    st.session_state[f"lesson.predicted.{step.key}"] = choice
    training.store().classroom.record_prediction(session.session_id(), step.key, choice)


TEACHER_KEY = "lesson.teacher"  # bool: this browser gave the operator's teacher code


def teacher_possible() -> bool:
    """Whether this server has a teacher code (its operator set one)."""
    return shares.teacher_code_set()


def is_teacher() -> bool:
    return bool(st.session_state.get(TEACHER_KEY)) and shares.teacher_code_set()


def unlock_teacher(code: str) -> bool:
    """Make this browser the teacher when `code` is the operator's; whether it is."""
    st.session_state[TEACHER_KEY] = shares.is_teacher_code(code)
    if st.session_state[TEACHER_KEY]:  # the class sees the teacher's runs beside its own
        training.store().classroom.add_teacher(session.session_id())
    return st.session_state[TEACHER_KEY]


def tally(step: lesson.Step) -> dict[str, int]:
    """How many browsers predicted each of the step's choices (every choice listed, 0 included)."""
    counted = training.store().classroom.prediction_tally(step.key)
    return {choice: counted.get(choice, 0) for choice in step.choices}


def class_results(run_set: lesson.RunSet):
    """The class's results on a set: the final accuracy of each part over every browser's runs of it (runs,
    mean, lowest, highest); empty before any has an epoch."""
    store = training.store()
    runs = store.runs()
    ended = runs[runs.group.str.startswith(f"{run_set.group_prefix}-") & runs.val_acc.notna()].copy()
    ended["part"] = [run_set.part(cfg) for cfg in map(store.config, ended.id)]
    return ended.groupby("part").val_acc.agg(runs="size", mean="mean", lowest="min", highest="max").reset_index()


def prediction(step: lesson.Step) -> str | None:
    """What this browser predicted for the step, once it has said (before the run)."""
    return st.session_state.get(f"lesson.predicted.{step.key}")


def _runs_key(run_set: lesson.RunSet) -> str:
    return f"lesson.runs.{run_set.key}"


def runs_of(run_set: lesson.RunSet) -> list[str]:
    """This browser's runs of a lesson set (those still stored)."""
    return list(training.configs(st.session_state.get(_runs_key(run_set), [])))


OWN_SETUP_KEY = "lesson.own_setup"  # bool: the steps train on this browser's setup, not the offline demo


def own_setup_offered() -> bool:
    """Whether this browser's setup (Data and Layers pages) differs from the offline demo's data and backbone."""
    return (session.data_config(), session.model_config()) != (DataConfig(), ModelConfig())


def on_own_setup() -> bool:
    return own_setup_offered() and bool(st.session_state.get(OWN_SETUP_KEY))


def _setup() -> tuple[DataConfig | None, ModelConfig | None]:
    return (session.data_config(), session.model_config()) if on_own_setup() else (None, None)


def _measured_key(step: lesson.Step) -> str:
    return f"lesson.measured.{step.key}"


def start(step: lesson.Step) -> None:
    """The step's button (a click's callback: what it starts starts before the page runs again): train its set of
    runs, or, for a step that measures, let it measure."""
    run_set = step.runs
    if run_set is None:
        st.session_state[_measured_key(step)] = True
        return
    st.session_state.pop(REFUSED_KEY, None)
    try:  # a student's own setup may be one these runs cannot take (the demo's 28 px for VGG, a file gone)
        configs = run_set.configs(*_setup())
        run_ids = training.new_comparison(configs, run_set.group_prefix)
    except (ValueError, OSError) as err:  # ConfigInvalid (a missing folder or file among them), NotShared
        st.session_state[REFUSED_KEY] = str(err)
        return
    st.session_state[f"lesson.started.{run_set.key}"] = time.monotonic()
    st.session_state[_runs_key(run_set)] = run_ids
    if run_set.sweep:  # "go deeper" opens the Experiments page on this sweep (the other pages follow the group)
        st.session_state[training.SWEEP_GROUP_KEY] = st.session_state[training.GROUP_KEY]
    training.start_burst(run_ids, epochs=max(c.epochs for c in configs))


REFUSED_KEY = "lesson.refused"  # why the last click trained nothing, in one sentence (the page shows it)


def refused() -> str | None:
    """Why the last Run click trained nothing (its setup refused), or None."""
    return st.session_state.get(REFUSED_KEY)


def set_state(run_set: lesson.RunSet) -> str:
    """"none" (not trained in this browser), "training", "stopped" (some run stopped before its budget ended),
    "failed" (some run failed or diverged: `failures` says why) or "done" (every run finished)."""
    ids = runs_of(run_set)
    if not ids:
        return "none"
    if training.is_training(ids):
        return "training"
    statuses = {training.store().status(r)[0] for r in ids}
    if statuses & set(ENDED_BADLY):
        return "failed"
    if statuses == {RunStatus.FINISHED}:
        return "done"
    return "training" if RunStatus.CREATED in statuses else "stopped"


def state(step: lesson.Step) -> str:
    """The step's state: its set's (`set_state`), or, for a step that measures, "done" once asked to."""
    if step.runs is None:
        return "done" if st.session_state.get(_measured_key(step)) else "none"
    return set_state(step.runs)


def failures(step: lesson.Step) -> list[str]:
    """Why the step's runs failed, one sentence each."""
    store = training.store()
    ids = runs_of(step.runs) if step.runs else []
    return [f"{store.label(r)}: {store.status(r)[1]}" for r in ids if store.status(r)[0] in ENDED_BADLY]


@st.cache_resource(show_spinner="Explaining both runs and checking each map", max_entries=4)
def _maps(runs: tuple[tuple[str, str], ...], versions: tuple) -> lesson.Maps:
    models, data = {}, None
    for part, run_id in runs:
        models[part], data = readings.run_model(run_id)
    return lesson.maps_of(models, data)


class BrowserLab:
    """What the steps read, as this browser sees it (lesson.Lab): its own runs, and what the app has computed from
    checkpoints or measured, cached as the other pages cache it."""

    def __init__(self) -> None:
        self.store = training.store()

    def runs(self, run_set: lesson.RunSet) -> dict[str, str]:
        return run_set.cast(self.store, runs_of(run_set)) if set_state(run_set) == "done" else {}

    def curves(self, run_ids: list[str]):
        return training.live_curves(run_ids)[0]

    def forgetting(self, run_id: str):
        return readings.forgetting(run_id)

    def maps(self, runs: dict[str, str]) -> lesson.Maps | None:
        if not all(readings.has_checkpoint(r) for r in runs.values()):
            return None
        return _maps(tuple(runs.items()), tuple(readings.checkpoint_version(r) for r in runs.values()))

    def cost(self):
        """Measured once per setup in this process (ui.readings.freeze_cost): the demo's, or this browser's."""
        data, model = _setup()
        return readings.freeze_cost(model or ModelConfig(), data or DataConfig(), lesson.COST_BATCH)


def outcome(step: lesson.Step) -> tuple[lesson.Reading, lesson.Reveal] | str:
    """The step's reading and reveal once its runs have ended; what is missing, in words, when they cannot be
    read."""
    try:
        reading = step.read(BrowserLab())
    except lesson.Missing as missing:
        return str(missing)
    return reading, step.revealed(reading)


def page_of(key: str) -> st.Page:
    """The app's page at address /`key` (ui/navigation.py lists them)."""
    for section in navigation.pages().values():
        for page in section:
            if page.url_path == key:
                return page
    raise KeyError(f"The app has no page {key!r}.")


def go_deeper(step: lesson.Step) -> None:
    """Open the step's "go deeper" page, on the step's runs (the other pages open on the comparison shown: Train,
    Inside, Compare, Explain)."""
    ids = runs_of(step.deeper.runs) if step.deeper.runs else []
    if ids:
        st.session_state[training.GROUP_KEY] = training.store().group_of(ids[0])
    st.switch_page(page_of(step.deeper.page))


def pace(run_set: lesson.RunSet) -> tuple[float, str]:
    """(fraction done, in words) of a set's runs: how far they are, when they will end at this pace, and whether
    other browsers train too."""
    ids = runs_of(run_set)
    manager, configs = resources.training(), training.configs(ids)
    done = sum(s.epoch for s in manager.snapshots_of(ids))
    total = sum(c.epochs for c in configs.values())
    training_now = [r for r, s in manager.snapshots().items() if s.status == RunStatus.RUNNING and r not in ids]
    others = len(set(training.store().sessions(training_now).values()) - {session.session_id(), ""})
    elapsed = time.monotonic() - st.session_state.get(f"lesson.started.{run_set.key}", time.monotonic())
    return (min(done / total, 1.0) if total else 0.0), lesson.pace_words(done, total, elapsed, others)
