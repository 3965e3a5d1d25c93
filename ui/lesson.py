"""The lesson as this browser takes it (core/lesson.py holds the steps and writes the reveals): the step on show,
the predictions taken, the runs each set trained, and each step's reveal from those runs' numbers."""

from __future__ import annotations

import time

import streamlit as st

from core import lesson
from core.data.datasets import DataConfig
from core.models.backbones import ModelConfig
from core.runtime import shares
from core.store.runs import ENDED_BADLY, RunStatus
from ui import readings, resources, session, training

STEP_KEY = "lesson.step"  # int: the step on show


STEP_LINK_KEY = "step"  # the query parameter that opens a step: /lesson?step=3


def step_index() -> int:
    """The step on show (0-based); on a session's first visit, the one its link names (`?step=3`)."""
    if STEP_KEY not in st.session_state:
        st.session_state[STEP_KEY] = 0
        asked = st.query_params.get(STEP_LINK_KEY)
        if asked is not None:
            if asked.isdigit() and 1 <= int(asked) <= len(lesson.STEPS):
                st.session_state[STEP_KEY] = int(asked) - 1
            else:
                st.toast(f"The link's step={asked[:20]!r} was not used: the lesson's steps are 1 to "
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
    training.store().record_prediction(session.session_id(), step.key, choice)


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
        training.store().add_teacher(session.session_id())
    return st.session_state[TEACHER_KEY]


def tally(step: lesson.Step) -> dict[str, int]:
    """How many browsers predicted each of the step's choices (every choice listed, 0 included)."""
    counted = training.store().prediction_tally(step.key)
    return {choice: counted.get(choice, 0) for choice in step.choices}


def class_race():
    """The class's race results: each recipe's final accuracy over every browser's lesson race (runs, mean,
    lowest, highest)."""
    runs = training.store().runs()
    race = runs[runs.group.str.startswith("lesson-race") & runs.val_acc.notna()]
    return race.groupby("label").val_acc.agg(runs="size", mean="mean", lowest="min", highest="max").reset_index()


def prediction(step: lesson.Step) -> str | None:
    """What this browser predicted for the step, once it has said (before the run)."""
    return st.session_state.get(f"lesson.predicted.{step.key}")


def _runs_key(runs: str) -> str:
    return f"lesson.runs.{runs}"


def runs_of(runs: str) -> list[str]:
    """This browser's runs of a lesson set (those still stored)."""
    return list(training.configs(st.session_state.get(_runs_key(runs), [])))


OWN_SETUP_KEY = "lesson.own_setup"  # bool: the steps train on this browser's setup, not the offline demo


def own_setup_offered() -> bool:
    """Whether this browser's setup (Data and Layers pages) differs from the offline demo's data and backbone."""
    return (session.data_config(), session.model_config()) != (DataConfig(), ModelConfig())


def on_own_setup() -> bool:
    return own_setup_offered() and bool(st.session_state.get(OWN_SETUP_KEY))


def _setup() -> tuple[DataConfig | None, ModelConfig | None]:
    return (session.data_config(), session.model_config()) if on_own_setup() else (None, None)


def start(runs: str) -> None:
    """Train a set of the lesson's runs (a click's callback: they start before the page runs again)."""
    configs = lesson.lesson_configs(runs, *_setup())
    st.session_state[f"lesson.started.{runs}"] = time.monotonic()
    st.session_state[_runs_key(runs)] = training.new_comparison(configs, f"lesson-{runs}")
    if runs == "depth":  # "go deeper" opens the Experiments page on this sweep (the other pages follow the group)
        st.session_state[training.SWEEP_GROUP_KEY] = st.session_state[training.GROUP_KEY]
    training.start_burst(st.session_state[_runs_key(runs)], epochs=max(c.epochs for c in configs))


def state(runs: str) -> str:
    """"none" (not trained in this browser), "training", "stopped" (some run stopped before its budget ended),
    "failed" (some run failed or diverged: `failures` says why) or "done" (every run finished)."""
    ids = runs_of(runs)
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


def failures(runs: str) -> list[str]:
    """Why a set's runs failed, one sentence each."""
    store = training.store()
    return [f"{store.label(r)}: {store.status(r)[1]}" for r in runs_of(runs) if store.status(r)[0] in ENDED_BADLY]


def curves(runs: str):
    return training.live_curves(runs_of(runs))[0]


def _labelled(ids: list[str]) -> dict[str, str]:
    store = training.store()
    return {store.label(r): r for r in ids}


def race_ids() -> dict[str, str]:
    """The race's run ids by label."""
    return _labelled(runs_of("race"))


def reveal(step: lesson.Step) -> lesson.Reveal | None:
    """The step's reveal from its runs' numbers, once they are there (None before)."""
    store = training.store()
    if step.runs and state(step.runs) != "done":
        return None
    if step.key == "race":
        return lesson.race_reveal(lesson.final_accuracies(store, runs_of("race")))
    if step.key == "boundary":
        run_id = race_ids()[lesson.RACE_CHOICES[1]]
        return lesson.boundary_reveal(boundary_drift(), store.config(run_id).phases[0].plan.trainable)
    if step.key == "batchnorm":
        return lesson.batchnorm_reveal(*lesson.bn_policy_numbers(store, runs_of("batchnorm")))
    if step.key == "depth":
        return lesson.depth_reveal(*lesson.depth_numbers(store, runs_of("depth")))
    if step.key == "forgetting":
        tables = forgetting_tables()
        if len(tables) < 2:
            return None
        return lesson.forgetting_reveal({k: float(t.accuracy.iloc[0]) for k, t in tables.items()},
                                        {k: float(t.accuracy.iloc[-1]) for k, t in tables.items()})
    if step.key == "maps":
        found = maps()
        return None if found is None else lesson.maps_reveal(found.spearman, found.overlap, found.sanity)
    if step.key == "cost":
        table = cost()
        finals = lesson.final_accuracies(store, runs_of("race")) if state("race") == "done" else {}
        gap = (round(finals[lesson.RACE_CHOICES[1]], 2) - round(finals[lesson.RACE_CHOICES[0]], 2)  # as step 1 says
               if len(finals) == 3 else None)
        first, last = table.iloc[0], table.iloc[-1]
        return lesson.cost_reveal(first.step_s, last.step_s, first.step_spread_s + last.step_spread_s, gap)
    raise KeyError(step.key)


@st.cache_resource(show_spinner="Explaining both runs and checking each map", max_entries=4)
def _maps(frozen: str, tuned: str, versions: tuple) -> lesson.Maps:
    models = {}
    for label, run_id in ((lesson.RACE_CHOICES[0], frozen), (lesson.RACE_CHOICES[1], tuned)):
        model, data = readings.run_model(run_id)
        models[label] = model
    return lesson.maps_of(models, data)


def maps() -> lesson.Maps | None:
    """Grad-CAM of the race's frozen and fine-tuned runs on one image, with their sanity checks (None before the
    race has checkpoints)."""
    ids = race_ids()
    frozen, tuned = ids.get(lesson.RACE_CHOICES[0]), ids.get(lesson.RACE_CHOICES[1])
    if not (frozen and tuned and readings.has_checkpoint(frozen) and readings.has_checkpoint(tuned)):
        return None
    versions = tuple(readings.checkpoint_version(r) for r in (frozen, tuned))
    return _maps(frozen, tuned, versions)


def cost():
    """Cost against depth of the lesson's network on its images (the demo's, or this browser's setup), batch 20
    (measured once per setup in this process)."""
    data, model = _setup()
    return readings.freeze_cost(model or ModelConfig(), data or DataConfig(), 20)


def missing(step: lesson.Step) -> str:
    """Why a step whose runs have ended has no reveal, in words."""
    if step.key == "forgetting" and race_ids() and not forgetting_tables():
        return ("This step needs a race whose pretrained weights kept their source task's head (the offline demo's "
                "do: the demo net learned digits 0-4); these runs' weights did not. Run the race on the offline "
                "demo to see it.")
    return "This step needs the race's checkpoints: run step 1 first."


def boundary_drift() -> dict[str, float]:
    """The race's fine-tuning run: each block's weight drift at its last epoch (the head last)."""
    return lesson.last_drift(training.store(), race_ids()[lesson.RACE_CHOICES[1]])


def depth_runs():
    """The depth sweep's runs, one row each (experiments.sweep_runs)."""
    return lesson.studies.sweep_runs(training.store(), runs_of("depth"))


def forgetting_tables() -> dict:
    """Source-task accuracy over the kept steps of the race's frozen and fine-tuned runs, by label (those with
    checkpoints)."""
    ids, tables = race_ids(), {}
    for label in lesson.RACE_CHOICES[:2]:
        table = readings.forgetting(ids[label]) if label in ids else None
        if table is not None and not table.empty:
            tables[label] = table
    return tables


def show_on_other_pages(runs: str) -> None:
    """Make a set's runs the comparison the other pages open on (Train, Inside, Compare, Explain)."""
    ids = runs_of(runs)
    if ids:
        st.session_state[training.GROUP_KEY] = training.store().group_of(ids[0])


def pace(runs: str) -> tuple[float, str]:
    """(fraction done, in words) of a set's runs: how far they are, when they will end at this pace, and whether
    other browsers train too."""
    ids = runs_of(runs)
    manager, configs = resources.manager(), training.configs(ids)
    done = sum(s.epoch for s in manager.snapshots_of(ids))
    total = sum(c.epochs for c in configs.values())
    training_now = [r for r, s in manager.snapshots().items() if s.status == RunStatus.RUNNING and r not in ids]
    others = len(set(training.store().sessions(training_now).values()) - {session.session_id(), ""})
    elapsed = time.monotonic() - st.session_state.get(f"lesson.started.{runs}", time.monotonic())
    return (min(done / total, 1.0) if total else 0.0), lesson.pace_words(done, total, elapsed, others)
