"""FreezeLab's entry page: what it shows, the current setup, and the device it trains on."""

import contextlib

import streamlit as st

from core.backbones import get_spec
from core.device import describe_device
from core.training import demo_comparison
from ui import charts, state

st.set_page_config(page_title="FreezeLab", page_icon="🧊", layout="wide")

st.title("🧊 FreezeLab")
st.markdown(
    "See what **freezing layers** does in transfer learning. Pick a pretrained backbone and a dataset, "
    "switch backbone blocks between frozen and trainable, train short bursts, and compare "
    "feature extraction, fine-tuning and training from scratch side by side."
)
st.caption(f"Training device — {describe_device()}")
state.manager()  # opens and checks the run store: a damaged one is said here, before anything is clicked
state.warm_up()

data, model, plan = state.data_config(), state.model_config(), state.freeze_plan()
st.subheader("Current setup")
left, right = st.columns(2)
with left:
    source = "offline demo (MNIST digits)" if data.source == "demo" else data.source
    task = {"source": "digits 0-4", "target": "digits 5-9"}.get(data.task, data.task) if data.source == "demo" else ""
    st.markdown(
        f"**Data** — {source} {task}  \n"
        f"{data.per_class or 'all'} training images per class, {data.image_size}×{data.image_size} pixels"
    )
with right:
    trainable = ", ".join(plan.trainable) or "none (feature extraction)"
    st.markdown(
        f"**Backbone** — {model.backbone}, weights: {model.weights} "
        f"({get_spec(model.backbone).pretrained})  \n"
        f"Trainable blocks: {trainable}; BatchNorm in frozen blocks: {plan.bn}"
    )
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
if st.button("▶ Run the demo comparison", type="primary", key="start.demo"):
    configs = demo_comparison()
    state.start_burst(state.new_comparison(configs, "demo"), epochs=configs[0].epochs)
    st.switch_page("pages/3_Train.py")
st.page_link("pages/1_Data.py", label="Or set up your own: start with the data", icon="🗂️")
