"""Data: choose the images, see what they look like and how many there are per class."""

import dataclasses

import plotly.express as px
import streamlit as st

from core.data import DataUnavailable
from ui import state

st.set_page_config(page_title="FreezeLab · Data", page_icon="🗂️", layout="wide")
st.title("🗂️ Data")

current = state.data_config()
sources = {"demo": "Offline demo (MNIST digits)", "cifar10": "CIFAR-10 (downloads once)", "folder": "Image folder"}
with st.form("data.form"):
    source = st.selectbox("Source", list(sources), index=list(sources).index(current.source),
                          format_func=sources.get, key="data.source")
    path = st.text_input("Folder (one sub-folder per class; train/ and val/ or test/ keep their split)",
                         value=current.path, key="data.path")
    task = st.radio("Demo task", ["target", "source"], index=["target", "source"].index(current.task),
                    format_func={"source": "digits 0-4 (what the demo net learned)",
                                 "target": "digits 5-9 (new classes)"}.get, horizontal=True, key="data.task")
    c1, c2, c3 = st.columns(3)
    per_class = c1.select_slider("Training images per class", [5, 10, 20, 50, 100, 200, 500, "all"],
                                 value=current.per_class or "all", key="data.per_class")
    image_size = c2.select_slider("Image size (pixels)", [28, 32, 48, 64, 96, 128, 160, 224],
                                  value=current.image_size, key="data.image_size")
    seed = c3.number_input("Seed", 0, 10_000, current.seed, key="data.seed")
    a1, a2 = st.columns(2)
    flip = a1.checkbox("Augment: random horizontal flips", current.flip, key="data.flip")
    crop_pad = a2.checkbox("Augment: pad 4 and random-crop", current.crop_pad > 0, key="data.crop")
    submitted = st.form_submit_button("Load data", type="primary")

if submitted:
    state.set_data_config(dataclasses.replace(
        current, source=source, path=path.strip(), task=task, image_size=int(image_size), seed=int(seed),
        per_class=None if per_class == "all" else int(per_class), flip=flip, crop_pad=4 if crop_pad else 0,
    ))

cfg = state.data_config()
try:
    data = state.cached_data(cfg)
except (DataUnavailable, ValueError) as err:
    st.error(str(err))
    st.stop()

st.success(f"{len(data.train_x)} training and {len(data.val_x)} validation images, "
           f"{data.num_classes} classes, {cfg.image_size}×{cfg.image_size} pixels.")
if data.skipped:
    with st.expander(f"{len(data.skipped)} files could not be read and were skipped"):
        st.code("\n".join(data.skipped[:50]))

counts = data.class_counts()
fig = px.bar(x=list(counts) * 2, y=[t for t, _ in counts.values()] + [v for _, v in counts.values()],
             color=["train"] * len(counts) + ["validation"] * len(counts), barmode="group",
             labels={"x": "class", "y": "images", "color": "split"}, title="Images per class")
st.plotly_chart(fig, use_container_width=True)

st.subheader("Samples")
per_row = 8
for i, name in enumerate(data.classes):
    picks = (data.train_y == i).nonzero().flatten()[:per_row]
    images = [data.train_x[j].permute(1, 2, 0).numpy() for j in picks]
    st.image(images, caption=[name] * len(images), width=72)
