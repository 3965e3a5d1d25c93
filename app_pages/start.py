"""The start page: what FreezeLab shows, the device it trains on, the demo comparison (its race shows here), and
the current setup."""

import contextlib

import streamlit as st

from core import links
from core.insight import analysis
from core.runtime.device import describe_device_if_loaded
from core.training.config import demo_comparison
from ui import resources, session, training

st.title("🧊 FreezeLab")
st.markdown(
    "See what **freezing layers** does in transfer learning. Pick a pretrained backbone and a dataset, "
    "switch backbone blocks between frozen and trainable, train short bursts, and compare "
    "feature extraction, fine-tuning and training from scratch side by side."
)
device_line = st.empty()  # filled at the end, once this server has loaded torch: a cold one draws without it
training.warm_up()

# --- the demo comparison ----------------------------------------------------------------------------------
st.markdown("**New here?** Watch feature extraction, fine-tuning and training from scratch race on the offline "
            "digits (the demo net learned 0-4; the task is 5-9, 20 images per class).")

DEMO_RUNS_KEY = "start.demo_runs"  # this session's demo comparison, shown below the button once clicked


def run_demo() -> None:
    """The click's callback: the runs start training before the page runs again, not after."""
    configs = demo_comparison()
    st.session_state[DEMO_RUNS_KEY] = training.new_comparison(configs, "demo")
    training.start_burst(st.session_state[DEMO_RUNS_KEY], epochs=configs[0].epochs)


# The race shows here, below the button, rather than on the Train page: a page switch costs the browser about
# 0.3 s of CPU more, on a laptop taken from the demo's training in its first seconds (docs/benchmarks.md).
demo_runs = list(training.configs(st.session_state.get(DEMO_RUNS_KEY, [])))  # those not deleted since
demo_busy = training.is_training(demo_runs)
st.button("▶ Run the demo comparison", type="primary", key="start.demo", on_click=run_demo, disabled=demo_busy)
results = (training.runs().set_index("id").reindex(demo_runs).reset_index().rename(columns={"id": "run_id"})
           if demo_runs and not demo_busy else None)  # read only when there is a finished race to show
if results is not None and results.val_acc.notna().any():  # the answer first, the race's curves below
    # Imported where a chart is drawn: with pandas, half a second a cold server's first page skips.
    from core.insight import charts

    st.subheader("Result")
    st.markdown(analysis.results_in_words(results))
    st.plotly_chart(charts.results_bars(results.dropna(subset=["val_acc"])), key="start.results")
live_box = st.container()  # the race, drawn last (`live_view.show` says why)
if demo_runs:
    st.page_link("app_pages/train.py", label="Train them on in bursts, stop and resume: the Train page", icon="🏋️")


@st.fragment(run_every=1.0)
def warming_up() -> None:
    """Until the trainer is ready (a click meanwhile waits for it) and this server has loaded torch, say what
    waits; then redraw the page once without this (with the device and the block strip), which stops the
    polling."""
    if training.warmed_up():
        st.rerun()
    if not training.trainer_ready():
        st.caption("⏳ The trainer is starting (it loads PyTorch, a few seconds on a laptop): a click waits for it.")


warm = training.warmed_up()  # until then nothing below loads torch here: the CPU goes to the trainer's start
if not warm and not demo_busy:  # during a race, not: its end redraws the page, and a redraw now would stall it
    warming_up()

# --- the current setup ------------------------------------------------------------------------------------
st.divider()
data, model, plan = session.data_config(), session.model_config(), session.freeze_plan()
st.subheader("Current setup")
st.markdown("  \n".join(f"**{part}** — {words}" for part, words in links.describe(session.current_setup()).items()))
n_classes = resources.num_classes(data)
if n_classes >= 2 and not warm:
    st.caption("The block strip of this setup shows here in a moment, once the app has loaded PyTorch.")
elif n_classes >= 2:
    from core.insight import charts

    with contextlib.suppress(ValueError):  # a plan that does not fit is explained on the Layers page
        _, table, full_params = resources.planned(model, plan, n_classes, data.image_size)
        st.plotly_chart(charts.block_strip(table, list(full_params), full_params), width="stretch",
                        key="start.strip")
        st.html(f"<small>{charts.STRIP_KEY}</small>")
st.page_link("app_pages/data.py", label="Or set up your own: start with the data", icon="🗂️")

if device := describe_device_if_loaded(resources.training_threads()):
    device_line.caption(f"Training device — {device}")
if demo_runs:
    from ui import live_view

    with live_box:
        live_view.show(demo_runs, demo_busy, key="start")
