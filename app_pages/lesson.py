"""The lesson: seven steps on what freezing does. Each asks a question, takes a prediction, trains or measures
something small, and reveals what happened from the numbers of that run (core/lesson/ writes the words). The page
draws whatever step it is given: its chart by the step's chart kind."""

import pandas as pd
import streamlit as st

from core import lesson
from core.insight import charts
from ui import lesson as taken
from ui import training

STEPS = lesson.STEPS
st.title("🎓 Lesson: what freezing does")
st.caption("Seven steps, about 30 minutes. Predict first, then run: every reveal is written from the numbers "
           "of your own runs (on the offline digits, unless you choose your own setup).")

with st.sidebar.expander("Teaching this lesson?"):  # drawn first: the steps below may stop the page early
    if not taken.teacher_possible():
        st.caption("Start the server with `freezelab app --teacher-code CODE` to see the class's predictions here.")
    elif taken.is_teacher():
        st.caption("This browser is the teacher: each step shows the class's predictions and results.")
    else:
        code = st.text_input("Teacher code", type="password", key="lesson.teacher_code")
        if code and not taken.unlock_teacher(code):
            st.error("That is not this server's teacher code.")

if taken.own_setup_offered():
    st.toggle("Train the steps on my setup (Data and Layers pages) instead of the offline digits",
              key=taken.OWN_SETUP_KEY, help="The questions speak of digits: read them as your classes. Runs take as "
              "long as your setup takes; the forgetting step needs weights that kept their source task's head.")

# --- where we are -----------------------------------------------------------------------------------------
index = taken.step_index()
nav_prev, nav_pick, nav_next = st.columns([1, 4, 1], vertical_alignment="bottom")
nav_prev.button("← Previous", disabled=index == 0, key="lesson.prev", on_click=taken.go_to, args=(index - 1,),
                width="stretch")
nav_next.button("Next →", disabled=index == len(STEPS) - 1, key="lesson.next", on_click=taken.go_to,
                args=(index + 1,), width="stretch")
picked = nav_pick.selectbox("Step", range(len(STEPS)), index=index, key=f"lesson.pick.{index}",
                            format_func=lambda i: f"{i + 1}. {STEPS[i].title}")
if picked != index:
    taken.go_to(picked)
    st.rerun()
step = STEPS[index]
st.progress((index + 1) / len(STEPS), text=f"Step {index + 1} of {len(STEPS)}")
st.caption(f"Link to this step: `{taken.step_link(index)}`")

# --- question and prediction ------------------------------------------------------------------------------
st.subheader(step.title)
st.markdown(step.question)
predicted = taken.prediction(step)
if predicted is None:
    st.radio("Your prediction", step.choices, index=None, key=taken.widget_key(step), on_change=taken.keep_prediction,
             args=(step,))
    predicted = taken.prediction(step)
if predicted is None:
    st.caption("Predict first: the run button waits for your answer.")
else:  # taken once, before the run: not changed after the fact
    st.markdown(f"Your prediction: **{predicted}**")

# --- the teacher's view: the class's predictions, as a tally ---------------------------------------------------
if taken.is_teacher():
    with st.expander("👩‍🏫 The class on this step", expanded=True):
        st.plotly_chart(charts.tally(taken.tally(step)), key=f"lesson.tally.{step.key}")
        if step.runs and not (results := taken.class_results(step.runs)).empty:
            st.dataframe(results, hide_index=True, key=f"lesson.class.{step.key}")

# --- the run ----------------------------------------------------------------------------------------------
training.warm_up()  # the trainer starts (once per server) while the student reads the question
state = taken.state(step)
if state in ("none", "stopped"):
    if step.runs and not training.trainer_ready():
        st.caption("⏳ The trainer is starting (it loads PyTorch, a few seconds): a click now waits for it.")
    st.button(step.button, type="primary", disabled=predicted is None, key=f"lesson.run.{step.key}",
              on_click=taken.start, args=(step,))
    if why := taken.refused():
        st.error(why)
elif state == "failed":
    for failure in taken.failures(step):
        st.error(failure)
    st.button("▶ Run again", key=f"lesson.rerun.{step.key}", on_click=taken.start, args=(step,))


@st.fragment(run_every=1.0)
def training_now() -> None:
    """The runs as they train; once they are done the whole page draws again, with the reveal."""
    if taken.state(step) != "training":
        st.rerun()
    # A bar and words, no live chart: ten browsers redrawing one each second took the shared CPU from the races
    # (on a 2-core machine, median reveal 56-67 s with a chart, 34-47 s without; docs/benchmarks.md, "The lesson:
    # click to reveal").
    st.progress(*taken.pace(step.runs))


if state == "training":
    training_now()
    st.stop()
if state != "done" or predicted is None:
    st.stop()

# --- the chart that answers, and the reveal -------------------------------------------------------------------


def plot(figure) -> None:
    st.plotly_chart(figure, key=f"lesson.chart.{step.key}")


def draw_maps(found: lesson.Maps) -> None:
    st.caption(f"One validation image of a {found.true_class}; each map explains that class.")
    for column, (part, shown) in zip(st.columns(len(found.maps)), found.maps.items(), strict=True):
        column.plotly_chart(charts.overlay(found.image.permute(1, 2, 0).numpy(), shown, part), key=f"lesson.map.{part}")


DRAW = {  # each kind of chart, drawn from what its Reading shows (lesson.Chart says what that is)
    lesson.Chart.CURVES: lambda shown: plot(charts.curves(shown)),
    lesson.Chart.BLOCK_DRIFT: lambda shown: plot(charts.bars_by_block({"weight drift": pd.Series(shown)},
                                                                      "relative weight drift")),
    lesson.Chart.DEPTH_SWEEP: lambda shown: plot(charts.depth_sweep(shown)),
    lesson.Chart.FORGETTING: lambda shown: plot(charts.forgetting_lines(shown)),
    lesson.Chart.MAPS: draw_maps,
    lesson.Chart.COST: lambda shown: plot(charts.cost_by_depth(shown)),
}

outcome = taken.outcome(step)
if isinstance(outcome, str):  # what the step needs is not there: say what
    st.info(outcome)
    st.stop()
reading, reveal = outcome
DRAW[step.chart](reading.shown)
st.markdown(f"**What happened.** {reveal.text}")
(st.success if reveal.right(predicted) else st.info)(reveal.verdict(predicted))
st.markdown(f"**Why.** {step.why}")
if st.button(f"🔎 Go deeper: {step.deeper.what}", key=f"lesson.deeper.{step.key}", type="tertiary"):
    taken.go_deeper(step)  # the page opens on this step's runs
if index < len(STEPS) - 1:
    st.button(f"Next: {STEPS[index + 1].title} →", key="lesson.next_step", on_click=taken.go_to, args=(index + 1,))
