"""Layers: pick the backbone, its weights and head, and which blocks are frozen; the audit proves it."""

import streamlit as st

from core import freezing
from core.data.datasets import DataUnavailable
from core.freezing import BN_POLICIES, FreezePlan, Phase, matching_preset, recipes_for
from core.insight import charts
from core.models import weights, zoo
from core.models.backbones import HeadConfig, ModelConfig, block_names, get_spec, list_backbones
from core.models.network import count_params
from core.runtime import shares
from core.training import feature_cache, rules
from core.training.config import RunConfig
from core.training.rules import ConfigInvalid
from ui import resources, session

st.title("🧱 Layers")
data_cfg, model, plan = session.data_config(), session.model_config(), session.freeze_plan()
frozen_means = st.empty()  # said once the plan below is known: what frozen means depends on its BatchNorm policy
n_classes = resources.num_classes(data_cfg)
if n_classes < 2:
    st.warning("Choose data with at least two classes on the Data page first.")
    st.stop()

# --- backbone, weights, head ---------------------------------------------------
left, right = st.columns([1, 2])
registered = list_backbones()
more = left.toggle("Any torchvision or timm model", value=model.backbone not in registered, key="layers.more",
                   help="Every classification model torchvision names, and timm's when it is installed; their blocks "
                        "are found automatically (where the resolution falls; timm's stages). Type to search.")
names = [*registered, *(resources.any_model_names() if more else [])]
if model.backbone not in names:
    names.append(model.backbone)
backbone = left.selectbox("Backbone", names, index=names.index(model.backbone), key="layers.backbone",
                          format_func=lambda n: f"{n} · {get_spec(n).family}" if n in registered else n)
try:
    with st.spinner(f"Finding the blocks of {backbone}"):  # a named model is built once to find them
        session.refuse_unshared(model=ModelConfig(backbone))  # before it is built: the operator's size limit
        spec, _ = get_spec(backbone), block_names(backbone)
except ValueError as err:  # no such model, one too large, or one whose blocks the rules cannot find: said
    st.error(str(err))
    st.stop()
if data_cfg.image_size < spec.min_size:
    st.warning(f"{backbone} needs images of at least {spec.min_size} pixels a side; the Data page's "
               f"{data_cfg.image_size} px would be refused when a run starts: raise it there.")
entries = zoo.list_entries()
zoo_entries = [f"zoo:{e['name']}" for e in entries
               if e.get("backbone") == backbone and f"zoo:{e['name']}" != spec.weights_from]
for entry in entries:
    if "unreadable" in entry:
        right.caption(f"⚠️ Zoo entry {entry['name']} is left out: {entry['unreadable']}.")
options = ["pretrained", "none", *zoo_entries, "file"]
chosen = model.weights if model.backbone == backbone else "pretrained"
default = "file" if chosen.startswith("file:") else chosen
choice = right.radio("Weights", options, horizontal=True, key=f"layers.weights.{backbone}",
                     index=options.index(default) if default in options else 0,
                     format_func=lambda o: {"pretrained": f"pretrained ({spec.pretrained})",
                                            "none": "none (from scratch)", "file": "a file…"}.get(o, o))
weights_source = choice


def keep_uploaded_weights() -> None:
    """An uploaded weights file, read and fitted to the backbone before it is kept, becomes the path below (a
    callback: before the path's box is drawn)."""
    upload = st.session_state.get("layers.weights_upload")
    if upload is None:
        return

    def fits(source: str) -> None:
        resources.check_weights(ModelConfig(backbone, source), n_classes)

    try:
        kept = weights.keep_upload(upload.getvalue(), upload.name, fits)
    except (weights.WeightsMismatch, weights.WeightsUnavailable) as err:
        st.session_state["layers.upload_problem"] = str(err)
        return
    st.session_state.pop("layers.upload_problem", None)
    st.session_state["layers.weights_file"] = str(kept)


if choice == "file":
    right.file_uploader("Upload a weights file (a state dict, at most 200 MB)", type=["pt", "pth", "bin"],
                        key="layers.weights_upload", on_change=keep_uploaded_weights,
                        help="Read with weights_only=True (tensors only, never code) and fitted to the backbone "
                             "before it is kept on the server.")
    if problem := st.session_state.get("layers.upload_problem"):
        right.error(problem)
    path = right.text_input("Weights file (a state dict; read with weights_only=True)", key="layers.weights_file",
                            value=chosen[5:] if chosen.startswith("file:") else "").strip()
    weights_source = f"file:{path}"
    if not path:  # before any other word on it: nothing typed is nothing refused
        right.error("Give the path of a weights file (a PyTorch state dict), or upload one.")
        st.stop()
    try:
        session.refuse_unshared(model=ModelConfig(backbone, weights_source))  # first: an unshared file is not read
        rules.weights_here(weights_source)
    except shares.NotShared as err:
        right.error(str(err))
        st.stop()
    except ConfigInvalid as err:
        right.error(f"{err} Runs with these weights would fail.")
if choice == "pretrained" and spec.weights_from == "torchvision":
    url, file = weights.torchvision_checkpoint(spec.source_name)
    right.caption(f"✅ ImageNet weights cached at {file}" if file.exists() else
                  f"⬇️ ImageNet weights are not on this machine yet: the first run downloads {url} to {file}.")

with st.expander("Head", expanded=False):
    h1, h2, h3 = st.columns(3)
    pool = h1.radio("Pooling", ["avg", "flatten"], index=["avg", "flatten"].index(model.head.pool), key="layers.pool",
                    format_func={"avg": "global average", "flatten": "flatten (Keras' Flatten)"}.get)
    hidden_text = h2.text_input("Hidden layers (widths, comma-separated)", key="layers.hidden",
                                value=", ".join(map(str, model.head.hidden)), placeholder="e.g. 128")
    dropout = h3.slider("Dropout", 0.0, 0.8, model.head.dropout, 0.05, key="layers.dropout")
try:
    hidden = rules.head_widths(hidden_text)
except ConfigInvalid as err:
    st.error(str(err))
    st.stop()
model = ModelConfig(backbone, weights_source, HeadConfig(pool, hidden, dropout))

# --- the plan ------------------------------------------------------------------
blocks = list(block_names(backbone))
recipes = recipes_for(blocks)
toggle_key = {b: f"layers.train.{backbone}.{b}" for b in blocks}
if model.backbone != session.model_config().backbone or any(b not in blocks for b in plan.trainable):
    plan = FreezePlan.freeze()  # another backbone: start from feature extraction
for b in blocks:
    st.session_state.setdefault(toggle_key[b], b in plan.trainable)
for key, default in (("layers.bn", plan.bn), ("layers.truncate", plan.truncate_after or "none"),
                     ("layers.last", plan.last_layers or 0)):
    st.session_state.setdefault(key, default)


def apply_preset() -> None:
    """Chosen, a preset applies at once: its first phase's blocks, truncation and no last-N-layers."""
    if st.session_state["layers.preset"] == CUSTOM:
        return
    recipe = recipes[st.session_state["layers.preset"]]
    first = recipe.phases[0].plan
    for b in blocks:
        st.session_state[toggle_key[b]] = b in first.trainable
    st.session_state["layers.truncate"] = first.truncate_after or "none"
    st.session_state["layers.last"] = 0


st.subheader("Which blocks train")
CUSTOM = "custom"
ticked = FreezePlan(trainable=tuple(b for b in blocks if st.session_state[toggle_key[b]]),
                    truncate_after=None if st.session_state["layers.truncate"] == "none"
                    else st.session_state["layers.truncate"], last_layers=int(st.session_state["layers.last"]) or None)
st.session_state["layers.preset"] = matching_preset(ticked, recipes) or CUSTOM  # the box says what is ticked
st.selectbox("Preset (applies when chosen)", [CUSTOM, *recipes], key="layers.preset", on_change=apply_preset,
             format_func=lambda k: "custom: the blocks ticked below" if k == CUSTOM
             else f"{recipes[k].title} — {recipes[k].summary}")
cols = st.columns(len(blocks))
for col, b in zip(cols, blocks, strict=True):
    col.checkbox(b, key=toggle_key[b])

with st.expander("BatchNorm, truncation, learning rates, last N layers"):
    a1, a2 = st.columns(2)
    bn = a1.radio("BatchNorm in frozen blocks", list(BN_POLICIES), key="layers.bn",
                  format_func=lambda p: f"{p}: {BN_POLICIES[p]}")
    truncate = a2.selectbox("Truncate the backbone after", ["none", *blocks[:-1]], key="layers.truncate")
    last = a2.number_input("Instead of whole blocks: train only the last N layers (0: off)", 0, 500,
                           key="layers.last")
    st.caption("Learning-rate multiplier per block (× the run's learning rate)")
    mult_cols = st.columns(len(blocks))
    mults = tuple((b, float(c.number_input(b, 0.0, 100.0, 1.0, 0.1, key=f"layers.lr.{backbone}.{b}")))
                  for c, b in zip(mult_cols, blocks, strict=True))

plan = FreezePlan(
    trainable=tuple(b for b in blocks if st.session_state[toggle_key[b]]),
    bn=bn,
    lr_mult=tuple((b, m) for b, m in mults if m != 1.0),
    truncate_after=None if truncate == "none" else truncate,
    last_layers=int(last) or None,
)

# --- what the plan does ---------------------------------------------------------
try:
    net, table, full_params = resources.planned(model, plan, n_classes, data_cfg.image_size)
except ValueError as err:
    st.error(str(err))
    st.stop()
session.set_model_config(model)
session.set_freeze_plan(plan)
frozen_means.caption(f"Frozen means, with BatchNorm policy `{plan.bn}`: {freezing.FROZEN_MEANS[plan.bn]}. The "
                     "audit below shows it for every block.")
if model.weights == "none" and len(plan.trainable) < len(blocks):
    st.warning("These weights are random (no pretrained weights): a frozen block keeps random features for the "
               "whole run. Freezing helps only where the weights learned something first.")

total, trainable = count_params(net), count_params(net, trainable_only=True)
m1, m2, m3 = st.columns(3)
m1.metric("Trainable parameters", f"{trainable:,}", help="The head always trains.")
m2.metric("Share trainable", f"{trainable / total:.1%}", help=f"of {total:,} parameters")
try:
    loaded = resources.data(data_cfg)
except (DataUnavailable, ValueError) as err:
    st.error(str(err))
    st.stop()
run_cfg = RunConfig(data=data_cfg, model=model, phases=(Phase(plan),), feature_cache=session.cache_switch())
cache = feature_cache.decide(net, run_cfg, len(loaded.train_x) + len(loaded.val_x))
m3.metric("Feature cache", f"on · {cache.blocks} of {len(net.block_names)} blocks" if cache.on else "off",
          help="Frozen leading blocks are computed once and later epochs train only the rest "
               f"(for runs made with the Train page's settings). {'On' if cache.on else 'Off'}: {cache.reason}.")
st.caption(f"Feature cache {'on' if cache.on else 'off'}: {cache.reason}.")
st.plotly_chart(charts.block_strip(table, blocks, full_params), width="stretch")
st.html(f"<small>{charts.STRIP_KEY} — widths grow with the square root of each block's parameters</small>")
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"lr": st.column_config.NumberColumn(
                 f"lr (at {table.set_index('block').lr['head']:g}, the head's: the rate suited to this plan)",
                 format="%.2e")})
