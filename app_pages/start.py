"""The start page: what FreezeLab shows, the current setup, the device it trains on, and the demo button."""

import contextlib

import streamlit as st

from core import setup
from core.device import describe_device
from core.training import demo_comparison
from ui import charts, state

st.title("🧊 FreezeLab")
st.markdown(
    "See what **freezing layers** does in transfer learning. Pick a pretrained backbone and a dataset, "
    "switch backbone blocks between frozen and trainable, train short bursts, and compare "
    "feature extraction, fine-tuning and training from scratch side by side."
)
st.caption(f"Training device — {describe_device(threads=state.training_threads())}")
state.manager()  # opens and checks the run store: a damaged one is said here, before anything is clicked
state.warm_up()

data, model, plan = state.data_config(), state.model_config(), state.freeze_plan()
st.subheader("Current setup")
st.markdown("  \n".join(f"**{part}** — {words}" for part, words in setup.describe(state.setup()).items()))
n_classes = state.num_classes(data)
if n_classes >= 2:
    with contextlib.suppress(ValueError):  # a plan that does not fit is explained on the Layers page
        _, table, full_params = state.planned(model, plan, n_classes, data.image_size)
        st.plotly_chart(charts.block_strip(table, list(full_params), full_params), width="stretch",
                        key="start.strip")
        st.html(f"<small>{charts.STRIP_KEY}</small>")
st.divider()
st.markdown("**New here?** Watch feature extraction, fine-tuning and training from scratch race on the offline "
            "digits (the demo net learned 0-4; the task is 5-9, 20 images per class).")


def run_demo() -> None:
    """The click's callback: the runs start training before the page runs again, not after."""
    configs = demo_comparison()
    state.start_burst(state.new_comparison(configs, "demo"), epochs=configs[0].epochs)


if st.button("▶ Run the demo comparison", type="primary", key="start.demo", on_click=run_demo):
    st.switch_page("app_pages/train.py")


@st.fragment(run_every=1.0)
def trainer_starting() -> None:
    """Until the trainer is ready, say so (a click meanwhile waits for it); then redraw the page once without
    this, which stops the polling."""
    if state.trainer_ready():
        st.rerun()
    st.caption("⏳ The trainer is starting (it loads PyTorch, a few seconds on a laptop): a click waits for it.")


if not state.trainer_ready():
    trainer_starting()
st.page_link("app_pages/data.py", label="Or set up your own: start with the data", icon="🗂️")
