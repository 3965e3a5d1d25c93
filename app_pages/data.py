"""Data: choose the images, see what they look like and how many there are per class."""

import dataclasses

import streamlit as st

from core.data import archives
from core.data.datasets import DataConfig, DataUnavailable, list_classes, task_words
from core.insight import charts
from core.links import PER_CLASS_CHOICES, image_sizes
from core.runtime import shares
from ui import resources, session

st.title("🗂️ Data")
st.caption("Pick the images the runs will train on. Images are decoded once and kept in memory.")

SOURCES = {"demo": "Offline demo (MNIST digits)", "cifar10": "CIFAR-10 (downloads once, 163 MB)",
           "folder": "A folder on this machine", "zip": "Upload a zip of class folders"}
current = session.data_config()

# --- source -------------------------------------------------------------------
source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="data.source",
                  index=list(SOURCES).index(current.source) if current.source in SOURCES else 0)
path, task = current.path, current.task
if source == "demo":
    task = st.radio("Task", ["target", "source"], horizontal=True, key="data.task",
                    index=["target", "source"].index(current.task),
                    format_func=lambda t: f"{task_words(t)} " + ("(what the demo net was pretrained on)"
                                                                 if t == "source" else "(new classes: transfer)"))
elif source == "folder":
    path = st.text_input("Folder with one sub-folder per class (a train/ and val/ or test/ split is kept)",
                         value=current.path, key="data.path", placeholder="/home/me/images").strip()
    st.caption("Folders this server shares with this browser: " + ", ".join(
        f"`{f}`" for f in shares.readable_folders(session.caller())) + ".")
elif source == "zip":
    upload = st.file_uploader("Zip of class folders", type=["zip"], key="data.zip")
    if upload is not None:
        uploads = shares.uploads_folder(session.caller())  # this browser's own: no other browser may read it
        try:
            path = str(archives.extract_upload(upload.getvalue(), uploads))
            st.caption(f"Extracted to {path}")
        except archives.ArchiveRefused as err:
            st.error(f"This zip was not extracted: {err}")
            st.stop()
        except OSError as err:  # the uploads folder itself: no space, no permission
            st.error(f"This zip could not be extracted into {uploads}: {err.strerror or err}.")
            st.stop()
    elif current.source != "folder" or not current.path:
        st.info("Upload a zip holding one folder per class.")
        st.stop()

kind = "folder" if source == "zip" else source
try:
    session.refuse_unshared(DataConfig(source=kind, path=path))  # before a folder is walked
    candidates = list_classes(DataConfig(source=kind, path=path, task=task))
except (DataUnavailable, shares.NotShared) as err:
    st.error(str(err))
    st.stop()

# --- subset, size, augmentation -------------------------------------------------
with st.form("data.form"):
    classes = st.multiselect("Classes (empty: all)", candidates, key="data.classes",
                             default=[c for c in current.classes if c in candidates])
    c1, c2, c3 = st.columns(3)
    # The offered values, and the current one if it is another (set elsewhere, e.g. by the command line).
    counts = sorted({*PER_CLASS_CHOICES, *([current.per_class] if current.per_class else [])})
    per_class = c1.select_slider("Training images per class", [*counts, "all"],
                                 value=current.per_class or "all", key="data.per_class")
    sizes = sorted({*image_sizes(session.model_config().backbone), current.image_size})
    image_size = c2.select_slider("Image size (pixels)", sizes,
                                  value=current.image_size, key="data.image_size")
    seed = c3.number_input("Seed (split and subsets)", 0, 10_000, current.seed, key="data.seed")
    a1, a2 = st.columns(2)
    flip = a1.checkbox("Augment: random horizontal flips", current.flip, key="data.flip")
    crop = a2.checkbox("Augment: pad 4 pixels, random-crop back", current.crop_pad > 0, key="data.crop")
    if st.form_submit_button("Load data", type="primary", key="data.load"):
        session.set_data_config(dataclasses.replace(
            current, source=kind, path=path, task=task, classes=tuple(classes), image_size=int(image_size),
            seed=int(seed), per_class=None if per_class == "all" else int(per_class), flip=flip,
            crop_pad=4 if crop else 0,
        ))

# --- what was loaded ------------------------------------------------------------
cfg = session.data_config()
try:
    data = resources.data(cfg)
except (DataUnavailable, ValueError) as err:
    st.error(str(err))
    st.stop()

held_mb = (data.train_x.nbytes + data.val_x.nbytes) / 2**20
held = "" if data.stored_size == cfg.image_size else (
    f" (held at their own {data.stored_size}×{data.stored_size}, {held_mb:.1f} MB; the model resizes each batch)")
st.success(f"{len(data.train_x)} training and {len(data.val_x)} validation images, "
           f"{data.num_classes} classes, {cfg.image_size}×{cfg.image_size} pixels{held}.")
if cfg.augments:
    st.caption("Augmentation is on: every epoch sees new variants, so frozen features cannot be cached.")
if data.skipped:
    with st.expander(f"{len(data.skipped)} files could not be read and were skipped"):
        st.code("\n".join(data.skipped[:50]))

st.plotly_chart(charts.class_counts(data.class_counts()), width="stretch")

st.subheader("Samples")
for i, name in enumerate(data.classes):
    picks = (data.train_y == i).nonzero().flatten()[:10]
    st.image([data.train_x[j].permute(1, 2, 0).numpy() for j in picks], caption=[name] * len(picks), width=64)
