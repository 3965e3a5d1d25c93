"""The lesson: each step's reveal is written from its runs' numbers (tested first with fixed numbers, then on
real runs through the page), says whether the prediction held, and the page walks all seven steps offline."""

import ast
import dataclasses
import inspect
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import lesson
from core.data.datasets import DataConfig
from core.execution.jobs import JobManager
from core.experiments import studies
from core.insight import inside
from core.models.backbones import ModelConfig
from core.store.runs import RunStore
from core.training.config import DEMO_COMPARISON, RunConfig
from tests.test_pages import _run
from ui import readings

# --- reveals from fixed numbers ------------------------------------------------------------------------------


def test_the_race_reveal_ranks_by_the_numbers_and_calls_a_tie_a_tie():
    reveal = lesson.race_reveal({"Feature extraction": 0.71, "Fine-tune the top 2 blocks": 0.80,
                                 "From scratch": 0.734})
    assert reveal.text == ("Fine-tune the top 2 blocks ended highest, at 0.80, From scratch 0.73 (7 points lower), "
                           "Feature extraction 0.71 (9 points lower).")
    assert reveal.answers == ("Fine-tune the top 2 blocks",)
    assert reveal.verdict("Feature extraction") == ("You predicted feature extraction; the runs say fine-tune the "
                                                    "top 2 blocks.")
    tie = lesson.race_reveal({"frozen": 0.781, "stats": 0.779, "affine": 0.70})
    assert tie.answers == ("frozen", "stats") and "ended level, at 0.78" in tie.text
    assert tie.right("stats") and tie.verdict("stats") == "Your prediction — stats — held."


def test_the_boundary_reveal_names_what_moved_and_what_moved_exactly_nothing():
    drift = {"stem": 0.0, "layer1": 0.0, "layer2": 0.0, "layer3": 0.249, "layer4": 0.321, "head": 0.24}
    reveal = lesson.boundary_reveal(drift, ("layer3", "layer4"))
    assert reveal.text == ("Moved from their starting weights: layer3 24.9%, layer4 32.1%, head 24.0%. stem, layer1, "
                           "layer2 moved exactly 0: not a little, nothing.")
    assert reveal.answers == (lesson.BOUNDARY_CHOICES[0],)
    everywhere = lesson.boundary_reveal({"stem": 0.3, "layer1": 0.1, "head": 0.2}, ("layer1",))
    assert everywhere.answers == (lesson.BOUNDARY_CHOICES[1],)
    assert lesson.boundary_reveal({"stem": 0.01, "layer1": 0.05, "head": 0.4}, ()).answers == (
        lesson.BOUNDARY_CHOICES[2],)


@pytest.mark.parametrize(("means", "spread", "answer", "said"), [
    ({0: 0.90, 1: 0.89, 2: 0.89, 3: 0.88, 4: 0.70, 5: 0.60}, 0.01, lesson.DEPTH_CHOICES[1], "accounts for 93%"),
    ({0: 0.90, 1: 0.85, 2: 0.80, 3: 0.75, 4: 0.70, 5: 0.65}, 0.01, lesson.DEPTH_CHOICES[0], "accounts for 40%"),
    ({0: 0.79, 1: 0.73, 2: 0.80, 3: 0.75, 4: 0.75, 5: 0.68}, 0.08, lesson.DEPTH_CHOICES[2], "cannot tell"),
])
def test_the_depth_reveal_weighs_the_drop_against_the_seeds_spread(means, spread, answer, said):
    reveal = lesson.depth_reveal(means, spread, 0.31)
    assert reveal.answers == (answer,) and said in reveal.text
    assert "k=0: " + f"{means[0]:.2f}" in reveal.text and "from scratch 0.31" in reveal.text


def test_the_forgetting_batchnorm_maps_and_cost_reveals_state_their_numbers():
    forgot = lesson.forgetting_reveal({"Feature extraction": 0.99, "Fine-tune the top 2 blocks": 0.99},
                                      {"Feature extraction": 0.99, "Fine-tune the top 2 blocks": 0.53})
    assert "Fine-tune the top 2 blocks 0.99 → 0.53" in forgot.text and forgot.answers == (
        lesson.FORGETTING_CHOICES[0],)
    kept = lesson.forgetting_reveal({"Feature extraction": 0.99, "Fine-tune the top 2 blocks": 0.99},
                                    {"Feature extraction": 0.99, "Fine-tune the top 2 blocks": 0.985})
    assert kept.answers == (lesson.FORGETTING_CHOICES[2],)
    bn = lesson.batchnorm_reveal({"frozen": 0.7, "stats": 0.8, "affine": 0.75}, {"frozen": 0.0, "stats": 0.031,
                                                                                "affine": 0.0})
    assert bn.answers == ("stats",) and "stats: 3.1%" in bn.text and "frozen: 0.0%" in bn.text
    maps = lesson.maps_reveal(0.62, 0.1, {"Feature extraction": "The map changes."})
    assert maps.answers == (lesson.MAPS_CHOICES[1],) and "rank correlation is 0.62" in maps.text
    assert "share 10% of their hottest" in maps.text
    assert lesson.maps_reveal(0.7, 0.55, {}).answers == (lesson.MAPS_CHOICES[0],)
    cost = lesson.cost_reveal(0.0188, 0.0042, 0.001, 0.08)
    assert cost.answers == (lesson.COST_CHOICES[2],) and "18.8 ms" in cost.text and "4.5× faster" in cost.text
    assert "8 points below" in cost.text
    noisy = lesson.cost_reveal(0.010, 0.008, 0.003, None)
    assert noisy.answers == (lesson.COST_CHOICES[0],) and "within the measurements' spread" in noisy.text


def test_numbers_too_close_to_call_grade_no_prediction():
    """A reveal whose numbers support no choice says so and grades no one: right for no answer, wrong for none."""
    close = lesson.Reveal("Both ended within the spread.", (), {"ratio": 1.1})
    assert not close.graded and not close.right(lesson.COST_CHOICES[0])
    assert {close.verdict(c) for c in lesson.COST_CHOICES} == {lesson.TOO_CLOSE}
    assert close.verdict(None) == ""
    assert lesson.cost_reveal(0.0188, 0.0042, 0.001, None).graded


# --- the protocol: a step is one value ------------------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "lesson.py"


def _charts_the_page_draws() -> set[str]:
    """The chart kinds the lesson page's DRAW table has a drawing for (`lesson.Chart.X` keys), read from its source:
    the page is a script, not a module to import."""
    for node in ast.walk(ast.parse(PAGE.read_text())):
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["DRAW"]:
            return {key.attr for key in node.value.keys}
    raise AssertionError("the lesson page has no DRAW table")


def test_every_step_owns_its_runs_reader_reveal_chart_and_page_to_go_deeper():
    assert len(set(lesson.STEP_KEYS)) == len(lesson.STEPS)
    assert _charts_the_page_draws() == {kind.name for kind in lesson.Chart}  # every kind has its drawing
    for step in lesson.STEPS:
        assert step.choices and isinstance(step.chart, lesson.Chart)
        assert callable(step.read) and callable(step.reveal)
        assert step.deeper.page.isidentifier(), step.deeper.page  # a page's key (its address), never a file path
        for run_set in {step.runs, step.deeper.runs} - {None}:
            configs = run_set.configs()
            parts = [run_set.part(c) for c in configs]
            assert len(set(parts)) == len(configs), parts  # each run plays a part no other run of its set plays
    race = lesson.RACE.configs()
    assert [lesson.RACE.part(c) for c in race] == list(lesson.RACE_CHOICES)
    assert lesson.STEPS[0].button == "▶ Run" and "the race's three runs" in lesson.STEPS[1].button
    assert lesson.step("cost").button == "▶ Measure"


class _Lab:
    """The run store and the runs of each set (lesson.Lab, without the app's caches)."""

    def __init__(self, store: RunStore, runs: dict[str, list[str]]):
        self.store, self._runs = store, runs

    def runs(self, run_set: lesson.RunSet) -> dict[str, str]:
        return run_set.cast(self.store, self._runs.get(run_set.key, []))

    def curves(self, run_ids: list[str]):
        return self.store.metrics.curves(run_ids)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_race_is_read_by_the_part_each_run_plays_whatever_its_label():
    """The race's three runs, trained for an epoch under labels their owner changed (feature extraction called
    "Fine-tune the top 2 blocks", fine-tuning "From scratch"): each is still read as what it trained."""
    store = RunStore()
    manager = JobManager(store, threads=1)
    configs = lesson.RACE.configs()
    labels = [configs[1].label, configs[2].label, "my own name"]  # each run labelled as the next one, or anew
    ids = [manager.create_run(dataclasses.replace(c, epochs=1, label=label)) for c, label in
           zip(configs, labels, strict=True)]
    manager.start(ids, epochs=1)
    manager.wait(240)
    assert [store.label(r) for r in ids] == labels
    lab = _Lab(store, {"race": ids})

    race = lesson.step("race")
    reading = race.read(lab)
    kinds = store.recipe_kinds(ids)
    finals = store.runs().set_index("id").val_acc
    expected = {lesson.RACE_CHOICES[DEMO_COMPARISON.index(kinds[r])]: finals[r] for r in ids}
    assert reading.numbers == {"finals": expected}
    json.dumps(reading.numbers)  # plain numbers: what a reveal is a function of
    inspect.signature(race.reveal).bind(**reading.numbers)
    reveal = race.revealed(reading)
    assert set(reveal.answers) <= set(race.choices) and "my own name" not in reveal.text

    boundary = lesson.step("boundary")  # the fine-tuning run's drift, not the run that carries its label
    reading = boundary.read(lab)
    tuned = next(r for r in ids if kinds[r] == "fine_tune_top")
    assert reading.numbers["drift"] == lesson.last_drift(store, tuned) and store.label(tuned) == "From scratch"
    assert boundary.revealed(reading).answers == (lesson.BOUNDARY_CHOICES[0],)  # only layer3, layer4, head moved
    json.dumps(reading.numbers)


def test_the_pace_is_estimated_from_the_pace_kept_so_far_and_says_when_others_share_the_machine():
    assert lesson.pace_words(3.0, 12, 6.0, 0) == "⏳ Training: 3.0 of 12 epochs, about 18 s left at this pace."
    shared = lesson.pace_words(1.0, 12, 10.0, 9)
    assert "about 110 s left" in shared and "9 other browsers are training too: runs take turns" in shared
    assert lesson.pace_words(0, 12, 0.5, 1).startswith("⏳ Starting… 1 other browser is training too")


# --- the page, every step, on real runs ---------------------------------------------------------------------


def _reveal_text(at: AppTest) -> str | None:
    return next((m.value for m in at.markdown if m.value.startswith("**What happened.**")), None)


def _take(at: AppTest, step: lesson.Step, predicted: str) -> str:
    """Predict, press the step's button if it has one, and wait for the reveal; its text."""
    at.radio(key=f"lesson.predict.{step.key}").set_value(predicted)
    _run("", at)
    run = [b for b in at.button if b.key == f"lesson.run.{step.key}"]
    if run:
        assert not run[0].disabled  # the prediction is in: the button works
        run[0].click()
        _run("", at)
    end = time.monotonic() + 240
    while (text := _reveal_text(at)) is None:
        assert time.monotonic() < end, f"no reveal for {step.key}"
        time.sleep(0.5)
        _run("", at)
    assert f"Your prediction: **{predicted}**" in [m.value for m in at.markdown]  # no radio to change it after
    return text


@pytest.mark.slow
def test_the_lesson_walks_every_step_and_each_reveal_states_the_stored_numbers():
    at = _run("app_pages/lesson.py")
    first = lesson.STEPS[0]
    assert "Step 1 of 7" in at.get("progress")[0].proto.text
    assert at.button(key=f"lesson.run.{first.key}").disabled  # predict first
    store = RunStore()
    revealed = {}
    for i, step in enumerate(lesson.STEPS):
        revealed[step.key] = _take(at, step, step.choices[0])
        assert at.success or at.info  # the verdict
        assert any(m.value.startswith("**Why.**") for m in at.markdown)
        if i < len(lesson.STEPS) - 1:
            at.button(key="lesson.next_step").click()
            _run("", at)
            assert f"Step {i + 2} of 7" in at.get("progress")[0].proto.text

    at.button(key="lesson.deeper.cost").click()  # the page that goes deeper opens on the race's runs
    _run("", at)
    assert at.title[0].value.endswith("Inside")
    runs = store.runs()
    race = runs[runs.group.str.startswith("lesson-race")]
    assert set(at.multiselect(key="inside.runs").value) <= set(race.id)
    curves = store.metrics.curves(list(race.id))
    finals = curves.sort_values("epoch").groupby("label").val_acc.last()
    for label, value in finals.items():
        assert f"{label} {value:.2f}" in revealed["race"] or f"{label} ended highest, at {value:.2f}" in \
            revealed["race"], (label, value, revealed["race"])
    tuned = race[race.label == lesson.RACE_CHOICES[1]].id.iloc[0]
    stats = store.metrics.block_stats([tuned])
    for row in stats[stats.epoch == stats.epoch.max()].itertuples():
        said = "moved exactly 0" if row.drift == 0 else f"{row.block} {row.drift:.1%}"
        assert said in revealed["boundary"], (row.block, revealed["boundary"])
    depth = runs[runs.group.str.startswith("lesson-depth")]
    table = studies.sweep_table(store, list(depth.id))
    for k, mean in enumerate(table.mean_val_acc.iloc[:-1]):  # depth 0 .. K, then the control
        assert f"k={k}: {mean:.2f}" in revealed["depth"]
    assert f"from scratch {table.mean_val_acc.iloc[-1]:.2f}" in revealed["depth"]
    frozen = race[race.label == lesson.RACE_CHOICES[0]].id.iloc[0]
    for label, run_id in ((lesson.RACE_CHOICES[0], frozen), (lesson.RACE_CHOICES[1], tuned)):
        cfg, steps = store.config(run_id), store.checkpoints.steps(run_id)
        weights = {s: store.checkpoints.weights_at(run_id, s) for s in steps}
        kept = inside.forgetting(inside.source_task(cfg), cfg, weights)
        assert f"{label} {kept.accuracy.iloc[0]:.2f} → {kept.accuracy.iloc[-1]:.2f}" in revealed["forgetting"]
    bn = runs[runs.group.str.startswith("lesson-batchnorm")]
    for row in store.metrics.curves(list(bn.id)).sort_values("epoch").groupby("run_id").tail(1).itertuples():
        policy = store.config(row.run_id).phases[0].plan.bn
        assert f"{row.val_acc:.2f}" in revealed["batchnorm"] and policy in revealed["batchnorm"]
    # The maps' agreement, recomputed here from the two checkpoints with Captum's Grad-CAM directly.
    from core.insight import attribution, explain
    models = {r: readings.run_model(r)[0] for r in (frozen, tuned)}
    data = readings.run_model(frozen)[1]
    maps = explain.explain_runs(models, data.val_x[0], attribution.AttributionConfig(), int(data.val_y[0]))
    alike = attribution.similarity(*(m.result.maps[0].numpy() for m in maps.values()))
    assert f"rank correlation is {alike['spearman']:.2f}" in revealed["maps"]
    assert f"share {alike['top_k_overlap']:.0%} of their hottest" in revealed["maps"]
    measured = readings.freeze_cost(ModelConfig(), DataConfig(), 20)  # what the page measured (cached)
    assert (f"{measured.step_s.iloc[0] * 1000:.1f} ms with nothing frozen and {measured.step_s.iloc[-1] * 1000:.1f} "
            "ms with the backbone frozen") in revealed["cost"]


# --- the classroom ------------------------------------------------------------------------------------------


def _tallied(at: AppTest) -> dict[str, int]:
    """The teacher's tally chart as drawn: choice -> count."""
    import json

    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if "browsers that predicted it" in json.dumps(spec["layout"]):
            bar = spec["data"][0]
            return dict(zip(bar["y"], bar["x"], strict=True))
    raise AssertionError("no tally drawn")


def test_the_teacher_sees_the_class_predictions_as_a_tally_and_no_one_else_does(monkeypatch):
    monkeypatch.setenv("FREEZELAB_TEACHER_CODE", "plum-42")
    student = _run("app_pages/lesson.py")
    student.radio(key="lesson.predict.race").set_value("From scratch")
    _run("", student)
    assert not any(e.label.startswith("👩‍🏫") for e in student.expander)  # a student sees no tally
    teacher = _run("app_pages/lesson.py")
    teacher.text_input(key="lesson.teacher_code").input("wrong")
    _run("", teacher)
    assert "not this server's teacher code" in teacher.error[0].value
    teacher.text_input(key="lesson.teacher_code").input("plum-42")
    _run("", teacher)
    assert _tallied(teacher) == {"Feature extraction": 0, "Fine-tune the top 2 blocks": 0, "From scratch": 1}
    teacher.radio(key="lesson.predict.race").set_value("Feature extraction")
    _run("", teacher)
    assert _tallied(teacher)["Feature extraction"] == 1
    _run("", student)  # a prediction is taken once: no radio to change it
    assert not [r for r in student.radio if r.key == "lesson.predict.race"]


def test_a_step_link_opens_that_step_and_a_bad_one_is_said():
    at = _run("app_pages/lesson.py", step="4")
    assert "Step 4 of 7" in at.get("progress")[0].proto.text and at.subheader[0].value == lesson.STEPS[3].title
    for bad in ("99", "²", "٣", "3" * 5000):  # isdigit() takes the superscript and other scripts' digits; int() the
        at = _run("app_pages/lesson.py", step=bad)  # Arabic-Indic three and five thousand digits: none opens a step
        assert not at.exception and "Step 1 of 7" in at.get("progress")[0].proto.text
        (toast,) = [t.proto.body for t in at.get("toast") if "steps are 1 to 7" in t.proto.body]
        assert len(toast) < 200


def _fewest_trainable(lab) -> lesson.Reading:
    """A step's reader as a new step would write one: the lesson's cost measurement, read for another question."""
    table = lab.cost()
    return lesson.Reading({"trainable": dict(zip(map(int, table.frozen_blocks), map(int, table.trainable_params),
                                                 strict=True))}, table)


def _fewest_reveal(trainable: dict[int, int]) -> lesson.Reveal:
    fewest = min(trainable, key=trainable.get)
    answer = "All frozen" if fewest == max(trainable) else "Some frozen"
    return lesson.Reveal(f"{fewest} frozen blocks leave {trainable[fewest]:,} parameters to train.", (answer,),
                         {"fewest": trainable[fewest]})


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_step_added_to_the_list_is_drawn_and_leads_deeper_without_any_page_edit(monkeypatch):
    """A new Step, one value appended to STEPS, is taken like the others (predict, measure, reveal, chart), and its
    "go deeper" opens the page its key names; one such step for each page the lesson's steps lead to."""
    pages = sorted({s.deeper.page for s in lesson.STEPS})
    added = [lesson.Step(f"probe_{page}", f"Fewest parameters ({page})", "Which depth trains fewest parameters?",
                         ("All frozen", "Some frozen"), "Frozen blocks train nothing.", runs=None,
                         read=_fewest_trainable, reveal=_fewest_reveal, chart=lesson.Chart.COST,
                         deeper=lesson.Deeper(page, "where this goes", None)) for page in pages]
    monkeypatch.setattr(lesson, "STEPS", (*lesson.STEPS, *added))
    at = _run("app_pages/lesson.py", step=str(len(lesson.STEPS)))  # the link to the last one: it exists
    assert at.subheader[0].value == added[-1].title
    measured = readings.freeze_cost(ModelConfig(), DataConfig(), lesson.COST_BATCH)  # what the page measured
    least = measured.loc[measured.trainable_params.idxmin()]
    said = (f"**What happened.** {least.frozen_blocks} frozen blocks leave {least.trainable_params:,} parameters "
            "to train.")
    for i, step in enumerate(added):
        at.session_state["lesson.step"] = len(lesson.STEPS) - len(added) + i
        _run("app_pages/lesson.py", at)
        assert at.button(key=f"lesson.run.{step.key}").label == "▶ Measure"
        text = _take(at, step, "All frozen")
        assert text == said
        assert at.success[0].value == "Your prediction — all frozen — held."
        assert [c for c in at.get("plotly_chart") if c.proto.id and f"lesson.chart.{step.key}" in c.proto.id]
        at.button(key=f"lesson.deeper.{step.key}").click()
        _run("", at)
        assert at.title[0].value.endswith(step.deeper.page.capitalize()), (step.deeper.page, at.title[0].value)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_shared_comparison_link_reproduces_the_teachers_runs_exactly():
    from core import links
    from ui import session

    teacher = _run("app_pages/train.py")
    teacher.multiselect(key="train.variants").set_value(["feature_extraction", "fine_tune_top"])
    teacher.number_input(key="train.epochs").set_value(3)
    teacher.button(key="train.create").click()
    _run("", teacher)
    store = RunStore()
    made = list(store.runs().id)
    link = next(c.value for c in teacher.code if f"?{links.COMPARISON_KEY}=" in c.value)
    value = link.split(f"{links.COMPARISON_KEY}=", 1)[1]
    student = _run("app_pages/train.py", **{links.COMPARISON_KEY: value})
    assert "carries a comparison of 2 runs" in student.markdown[1].value or any(
        "carries a comparison of 2 runs" in m.value for m in student.markdown)
    student.button(key="train.shared.run").click()
    _run("", student)
    theirs = [r for r in store.runs().id if r not in made]
    assert len(theirs) == 2
    assert sorted(map(store.config, theirs), key=str) == sorted(map(store.config, made), key=str)
    assert session.SHARED_COMPARISON_KEY not in student.session_state  # offered once


def test_a_student_sees_the_teachers_runs_beside_their_own_and_whose_each_is(monkeypatch):
    monkeypatch.setenv("FREEZELAB_TEACHER_CODE", "plum-42")
    teacher = _run("app_pages/lesson.py")
    teacher.text_input(key="lesson.teacher_code").input("plum-42")
    _run("", teacher)
    _run("app_pages/train.py", teacher)
    teacher.multiselect(key="train.variants").set_value(["feature_extraction"])
    teacher.button(key="train.create").click()
    _run("", teacher)
    other = RunStore().create(RunConfig(label="Feature extraction"), "ui", session="another-student")
    student = _run("app_pages/compare.py")
    shown = student.dataframe[0].value
    assert list(shown.made_by) == ["the teacher"] and list(shown.name) == ["Feature extraction"]
    assert student.multiselect(key="compare.delete").options == []  # seen, not the student's to delete
    student.toggle(key="runs.show_all").set_value(True)
    _run("", student)
    shown = student.dataframe[0].value
    assert set(shown.made_by) == {"the teacher", "another browser"}
    assert len(set(shown.name)) == 2 and f"Feature extraction · {other[-6:]}" in set(shown.name)  # told apart


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_student_may_take_the_steps_on_their_own_setup():
    import dataclasses

    from ui import session

    at = _run("app_pages/lesson.py")
    assert not [t for t in at.toggle if t.key == "lesson.own_setup"]  # on the demo's setup: nothing to offer
    mine = dataclasses.replace(DataConfig(), per_class=10, seed=3)
    at.session_state[session.DATA_KEY] = mine
    _run("", at)
    at.toggle(key="lesson.own_setup").set_value(True)
    _take(at, lesson.STEPS[0], "From scratch")
    store = RunStore()
    configs = [store.config(r) for r in store.runs().id]
    assert len(configs) == 3 and {c.data for c in configs} == {mine}
    assert [c.label for c in lesson.lesson_configs("race", mine, ModelConfig())] == list(lesson.RACE_CHOICES)


def test_an_own_setup_the_lesson_runs_cannot_take_is_said_and_nothing_is_stored():
    """VGG needs 32 px; the demo's digits are 28: the Run click gives the rule's sentence on the page, not an
    exception, and stores no run."""
    from ui import session

    at = _run("app_pages/lesson.py")
    at.session_state[session.MODEL_KEY] = ModelConfig("vgg11", "none")
    _run("", at)
    at.toggle(key="lesson.own_setup").set_value(True)
    at.radio(key=f"lesson.predict.{lesson.STEPS[0].key}").set_value("From scratch")
    _run("", at)
    at.button(key=f"lesson.run.{lesson.STEPS[0].key}").click()
    _run("", at)
    assert not at.exception
    assert any("needs images of at least 32 pixels" in e.value for e in at.error)
    assert RunStore().runs().empty
