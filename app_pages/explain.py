"""Explain: what each run's model looks at for one image, side by side, and whether the maps depend
on the model at all."""

import itertools

import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import UnidentifiedImageError

from core.data.datasets import IMAGE_SUFFIXES, decode_image
from core.insight import analysis, charts
from core.insight import attribution as A
from core.insight import explain as E
from core.store.checkpoints import CheckpointUnreadable
from ui import readings, session, training

st.title("🔍 Explain")
st.caption("Captum attributions of each run's latest checkpoint. A map shows what the prediction is "
           "sensitive to, not a reason; the sanity check below tells whether it depends on the model at all.")

store = training.store()
runs = training.runs()
ready = [r for r in runs[runs.readable].id if readings.has_checkpoint(r)]
for note in readings.unreadable(list(runs.id)):
    st.warning(note)
labels = {r.id: f"{r.label} · {r.id}" for r in runs.itertuples()}
if not ready:
    session.runs_from_link("explain.runs", [], list(labels))  # a link's runs are not here: said, not dropped
    st.info("Explain needs trained runs: train some on the Train page first.")
    st.stop()
default = [r for r in training.current_group() if r in ready][:3] or ready[:2]
default = session.runs_from_link("explain.runs", ready, list(labels)) or default
selected = st.multiselect("Runs (two or more to compare them)", ready, default=default, format_func=labels.get,
                          key="explain.runs")
session.link_runs("explain.runs", selected)
if not selected:
    st.stop()
if len({store.config(r).data for r in selected}) > 1:
    st.error("These runs were trained on different images; pick runs that share their data.")
    st.stop()
models = {r: readings.run_model(r)[0] for r in selected}
data = readings.run_model(selected[0])[1]
predictions = {r: readings.val_probabilities(r).argmax(1) for r in selected}

# --- the image -------------------------------------------------------------------------
st.subheader("Image")
source = st.radio("From", ["validation set", "upload"], horizontal=True, key="explain.source")
true: int | None = None
if source == "validation set":
    f1, f2 = st.columns(2)
    cls = f1.selectbox("Class", ["all", *data.classes], key="explain.class")
    outcome = f2.selectbox("Show", list(analysis.OUTCOMES), format_func=analysis.OUTCOMES.get, key="explain.outcome")
    picks = analysis.pick_images(data.val_y.numpy(), list(predictions.values()),
                                 None if cls == "all" else data.classes.index(cls), outcome)
    if not len(picks):
        st.warning("No validation image matches these filters.")
        st.stop()
    shown = picks[:24].tolist()
    st.image([data.val_x[i].permute(1, 2, 0).numpy() for i in shown], width=56,
             caption=[f"#{i} {data.classes[int(data.val_y[i])]}" for i in shown])
    index = st.selectbox(f"Image to explain ({len(picks)} match)", picks.tolist(), key="explain.index",
                         format_func=lambda i: f"#{i} · {data.classes[int(data.val_y[i])]}")
    image, true = data.val_x[index], int(data.val_y[index])
    image_key = f"val-{index}"
else:
    upload = st.file_uploader("An image", type=[s.lstrip(".") for s in IMAGE_SUFFIXES], key="explain.upload")
    if upload is None:
        st.stop()
    try:
        image = torch.from_numpy(decode_image(upload, data.config.image_size)).permute(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        st.error(f"FreezeLab cannot read this file as an image: {err}")
        st.stop()
    image_key = f"upload-{upload.file_id}"

# --- the method ------------------------------------------------------------------------
st.subheader("Method")
m1, m2, m3 = st.columns(3)
method = m1.selectbox("Method", list(A.METHODS), format_func=lambda k: A.METHODS[k].title, key="explain.method")
# One target for every run by default (the true class), so their maps answer one question and compare.
kinds = ["true", "predicted", "class"] if true is not None else ["predicted", "class"]
kind = m2.radio("Explain the", kinds, horizontal=True, key="explain.target",
                format_func={"predicted": "predicted class", "true": "true class", "class": "class…"}.get)
chosen_class = m3.selectbox("Class", data.classes, key="explain.class_target", disabled=kind != "class")
with st.expander("Settings", expanded=A.METHODS[method].slow):
    s1, s2, s3, s4 = st.columns(4)
    steps = s1.slider("IG steps", 8, 256, 32, key="explain.steps", disabled=method != "integrated_gradients")
    baseline = s1.selectbox("IG baseline", ["black", "blur", "mean"], key="explain.baseline",
                            disabled=method != "integrated_gradients")
    half = max(2, data.config.image_size // 2)
    window = s2.slider("Occlusion window (px)", 2, half, min(8, half), key="explain.window",
                       disabled=method != "occlusion")
    stride = s2.slider("Occlusion stride (px)", 1, 16, 4, key="explain.stride", disabled=method != "occlusion")
    samples = s3.slider("SmoothGrad samples", 4, 64, 16, key="explain.samples", disabled=method != "smoothgrad")
    noise = s3.slider("SmoothGrad noise (σ)", 0.01, 0.5, 0.15, key="explain.noise", disabled=method != "smoothgrad")
    sign = s4.selectbox("Show", A.SIGNS, key="explain.sign")
    outlier = s4.slider("Clip the top % as outliers", 0.0, 10.0, 2.0, 0.5, key="explain.outlier")
cam = method in ("grad_cam", "guided_grad_cam")
sizes = A.block_resolutions(next(iter(models.values()))) if cam else {}
layer = m1.selectbox("Grad-CAM layer", list(sizes), index=len(sizes) - 1, key="explain.layer",
                     format_func=lambda n: f"{n} ({sizes[n][0]}×{sizes[n][1]})") if cam else None
if cam and (too_small := A.small_layer(sizes, layer)):
    st.warning(too_small)
cfg = A.AttributionConfig(method, steps=steps, baseline=baseline, window=window, stride=stride, samples=samples,
                          noise=noise, layer=layer)
target = None if kind == "predicted" else true if kind == "true" else data.classes.index(chosen_class)
baseline_colour = E.baseline_colour(cfg, data.train_x)  # one baseline for the maps, the check and the history
request = (tuple(selected), image_key, cfg, target)


def progress_bar():
    """A progress bar and the callback that moves it."""
    bar = st.progress(0.0)
    return bar, lambda done, total, what: bar.progress(done / total if total else 0.0, text=what)


if st.button("Compute", type="primary", key="explain.compute"):
    bar, progress = progress_bar()
    try:
        results = E.explain_runs(models, image, cfg, target, baseline_colour, progress,
                                 labels={r: store.label(r) for r in selected})
    except ValueError as err:
        st.error(str(err))
        st.stop()
    finally:
        bar.empty()
    st.session_state["explain.results"] = (request, results)

stored = st.session_state.get("explain.results")
if stored and stored[0] == request:
    results = stored[1]
    picture = image.permute(1, 2, 0).numpy()
    truth = "" if true is None else f" · true class **{data.classes[true]}**"
    st.image(picture, width=160)
    st.markdown(f"{A.METHODS[method].title}{truth}")
    for col, run_id in zip(st.columns(len(selected)), selected, strict=True):
        result, probs, predicted = results[run_id].result, results[run_id].probabilities, results[run_id].predicted
        explained = int(result.target[0])
        verdict = "" if true is None else " ✓" if predicted == true else " ✗"
        heat = A.normalize(result.maps[0], sign, outlier)
        with col:
            st.markdown(f"**{store.label(run_id)}**  \npredicts **{data.classes[predicted]}** "
                        f"({probs[predicted]:.0%}){verdict}")
            st.plotly_chart(charts.probabilities(probs, data.classes, predicted), key=f"explain.p.{run_id}")
            st.plotly_chart(charts.heat(heat, f"map for class {data.classes[explained]}", signed=sign == "all"),
                            key=f"explain.h.{run_id}")
            st.plotly_chart(charts.overlay(picture, np.abs(heat), "overlay"), key=f"explain.o.{run_id}")
            extra = "" if result.delta is None else f", convergence delta {float(result.delta[0]):.2g}"
            st.caption(f"{result.seconds:.2f} s{extra}")
    if len(selected) >= 2:
        st.subheader("How the maps differ")
        if E.different_questions(results):
            st.warning("These maps explain different classes (each run's own prediction), so they answer different "
                       "questions: the comparison below is between them, not between two answers to one. Explain "
                       "the true class, or one class for all, to compare like with like.")
        else:
            shared = data.classes[int(results[selected[0]].result.target[0])]
            st.caption(f"Every map explains the same class, **{shared}**{' (the true one)' if kind == 'true' else ''}"
                       ": the runs answer one question.")
        a, b = selected[:2]
        left, right = st.columns([1, 2])
        left.plotly_chart(charts.heat(A.difference(results[a].result.maps[0], results[b].result.maps[0]),
                                      f"{store.label(a)} minus {store.label(b)}", signed=True),
                          key="explain.diff")
        pairs = [{"run": store.label(p), "other run": store.label(q),
                  **A.similarity(results[p].result.maps[0].numpy(), results[q].result.maps[0].numpy())}
                 for p, q in itertools.combinations(selected, 2)]
        right.dataframe(pd.DataFrame(pairs), hide_index=True, width="stretch",
                        column_config={"spearman": st.column_config.NumberColumn("Spearman ρ", format="%.2f"),
                                       "top_k_overlap": st.column_config.NumberColumn("top-10% overlap",
                                                                                       format="%.2f")})
        right.caption("Spearman ρ compares the order of all pixels by attribution; the overlap, the share of "
                      "each map's 10% most attributed pixels that the other shares.")

# --- sanity check and checkpoints ------------------------------------------------------------
st.subheader("Sanity check: does the map depend on the model?")
st.caption("Cascading model-parameter randomisation (Adebayo et al., 2018, Sanity Checks for Saliency Maps): "
           "re-initialise the head, then each block from the top down, and compare each map to the original.")
c1, c2 = st.columns([2, 1])
check_run = c1.selectbox("Run", selected, format_func=labels.get, key="explain.check_run")
if c2.button("Run the sanity check", key="explain.sanity"):
    bar, progress = progress_bar()
    images, targets = E.sanity_images(image, target, kind, data)
    check = A.sanity_check(models[check_run], images, cfg, targets, progress=progress, mean_colour=baseline_colour)
    bar.empty()
    st.session_state["explain.check"] = ((check_run, image_key, cfg, target), check)
stored = st.session_state.get("explain.check")
if stored and stored[0] == (check_run, image_key, cfg, target):
    check = stored[1]
    st.plotly_chart(charts.similarity_lines(check.stages, {"Spearman ρ": check.spearman,
                                                          "top-10% overlap": check.top_k_overlap},
                                            "randomised (cumulative, from the head down)", A.DEPENDENCE_THRESHOLD),
                    key="explain.check_chart")
    (st.success if check.depends_on_model else st.warning)(f"{A.METHODS[check.method].title}: {check.verdict}")
    st.caption(f"On this image and {check.images - 1} more from the validation set; each stage's figure is the "
               "median over them.")

steps_kept = store.checkpoints.steps(check_run)
if len(steps_kept) >= 2:
    st.subheader("Over the run's checkpoints")
    if st.button(f"Compare maps at the {len(steps_kept)} kept steps of {store.label(check_run)}",
                 key="explain.history"):
        bar, progress = progress_bar()
        try:
            history = E.map_history(lambda s: readings.run_model(check_run, s)[0], steps_kept, image, cfg, target,
                                    baseline_colour, progress)
        except CheckpointUnreadable as err:
            st.error(f"One of the kept steps cannot be read, so the maps over checkpoints are not shown: {err}.")
            st.stop()
        finally:
            bar.empty()
        series = {"Spearman ρ to the last map": history.spearman, "top-10% overlap": history.top_k_overlap}
        st.plotly_chart(charts.similarity_lines(history.steps, series, "training step"), key="explain.history_chart")
        cols = st.columns(min(len(history.steps), 6))
        for col, s in zip(cols, history.steps[-len(cols):], strict=True):
            col.plotly_chart(charts.heat(A.normalize(history.maps[s], sign, outlier), f"step {s}"),
                             key=f"explain.step.{s}")
