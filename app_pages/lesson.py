"""The lesson: seven steps on what freezing does. Each asks a question, takes a prediction, trains or measures
something small, and reveals what happened from the numbers of that run (core/lesson.py writes the words)."""

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
        if step.runs == "race" and not (results := taken.class_race()).empty:
            st.dataframe(results, hide_index=True, key=f"lesson.class.{step.key}")

# --- the run ----------------------------------------------------------------------------------------------
training.warm_up()  # the trainer starts (once per server) while the student reads the question
measured_key = f"lesson.measured.{step.key}"
state = taken.state(step.runs) if step.runs else ("done" if st.session_state.get(measured_key) else "none")
if state in ("none", "stopped"):
    if step.runs and not training.trainer_ready():
        st.caption("⏳ The trainer is starting (it loads PyTorch, a few seconds): a click now waits for it.")
    if step.runs:
        reused = "" if step.runs == step.key else " (the race's three runs: later steps look at them again)"
        st.button(f"▶ Run{reused}", type="primary", disabled=predicted is None, key=f"lesson.run.{step.key}",
                  on_click=taken.start, args=(step.runs,))
    else:
        st.button("▶ Measure", type="primary", disabled=predicted is None, key=f"lesson.run.{step.key}",
                  on_click=st.session_state.__setitem__, args=(measured_key, True))
elif state == "failed":
    for failure in taken.failures(step.runs):
        st.error(failure)
    st.button("▶ Run again", key=f"lesson.rerun.{step.key}", on_click=taken.start, args=(step.runs,))


@st.fragment(run_every=1.0)
def training_now() -> None:
    """The runs as they train; once they are done the whole page draws again, with the reveal."""
    if taken.state(step.runs) != "training":
        st.rerun()
    # A bar and words, no live chart: ten browsers redrawing one each second took the shared CPU from the races
    # (on a 2-core machine, median reveal 56-67 s with a chart, 34-47 s without; README, "Teaching with FreezeLab").
    st.progress(*taken.pace(step.runs))


if state == "training":
    training_now()
    st.stop()
if state != "done" or predicted is None:
    st.stop()

# --- the chart that answers -------------------------------------------------------------------------------
if step.key in ("race", "batchnorm"):
    st.plotly_chart(charts.curves(taken.curves(step.runs)), key=f"lesson.chart.{step.key}")
elif step.key == "boundary":
    st.plotly_chart(charts.bars_by_block({"weight drift": pd.Series(taken.boundary_drift())}, "relative weight drift"),
                    key="lesson.chart.boundary")
elif step.key == "depth":
    st.plotly_chart(charts.depth_sweep(taken.depth_runs()), key="lesson.chart.depth")
elif step.key == "forgetting" and (tables := taken.forgetting_tables()):
    st.plotly_chart(charts.forgetting_lines(tables), key="lesson.chart.forgetting")
elif step.key == "maps":
    found = taken.maps()
    if found is not None:
        st.caption(f"One validation image of a {found.true_class}; each map explains that class.")
        for column, (label, shown) in zip(st.columns(len(found.maps)), found.maps.items(), strict=True):
            column.plotly_chart(charts.overlay(found.image.permute(1, 2, 0).numpy(), shown, label),
                                key=f"lesson.map.{label}")
elif step.key == "cost":
    st.plotly_chart(charts.cost_by_depth(taken.cost()), key="lesson.chart.cost")

# --- the reveal -------------------------------------------------------------------------------------------
reveal = taken.reveal(step)
if reveal is None:
    st.info(taken.missing(step))
    st.stop()
st.markdown(f"**What happened.** {reveal.text}")
(st.success if reveal.right(predicted) else st.info)(reveal.verdict(predicted))
st.markdown(f"**Why.** {step.why}")
if st.button(f"🔎 Go deeper: {step.deeper_what}", key=f"lesson.deeper.{step.key}", type="tertiary"):
    taken.show_on_other_pages(step.runs or "race")  # the page opens on this step's runs
    st.switch_page(step.deeper)
if index < len(STEPS) - 1:
    st.button(f"Next: {STEPS[index + 1].title} →", key="lesson.next_step", on_click=taken.go_to, args=(index + 1,))
