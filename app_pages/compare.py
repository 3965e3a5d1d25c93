"""Compare: every stored run in a table; curves, accuracy against cost, confusion matrices; export."""

import numpy as np
import streamlit as st

from core.experiments import studies
from core.insight import analysis, charts, figures, report, trackers
from core.runtime import shares
from core.store import model_export
from ui import readings, resources, session, training

st.title("📊 Compare")

store = training.store()
runs = training.runs()
if runs.empty:
    session.runs_from_link("compare.selected", [], [])  # a link's runs are not here: said, not silently dropped
    st.info("No runs yet: train some on the Train page.")
    st.stop()

mixed = (runs.made_by != "you").any()  # whose run it is, said when the list holds others' runs
st.dataframe(runs[[*(["made_by"] if mixed else []), "name", "status", "backbone", "weights", "trainable", "params",
                   "epochs", "val_acc", "best_val_acc", "seconds", "created", "message"]],
             hide_index=True, width="stretch",
             column_config={"val_acc": st.column_config.ProgressColumn("val acc", min_value=0, max_value=1),
                            "best_val_acc": st.column_config.NumberColumn("best", format="%.3f"),
                            "seconds": st.column_config.NumberColumn("training s", format="%.1f")})

labels = {r.id: f"{r.label} · {r.id}" for r in runs.itertuples()}
group = [r for r in training.current_group() if r in labels]
groups = dict(zip(runs.id, runs.group, strict=True))
sweep = studies.all_in_sweeps(group, groups)  # a sweep opens whole, its seeds averaged per setting
default = group if sweep else analysis.default_selection(group, list(labels))
picked = st.session_state.get("compare.selected")
if picked and not any(r in labels for r in picked):  # all out of view now (another browser's, the switch off):
    del st.session_state["compare.selected"]  # the default again, not an empty picker
default = session.runs_from_link("compare.selected", list(labels), list(labels)) or default
selected = st.multiselect("Runs to compare", list(labels), default=default, format_func=labels.get,
                          key="compare.selected")
session.link_runs("compare.selected", selected)
if len(group) > len(default) and selected == default:
    st.caption(f"Showing {len(default)} of the {len(group)} runs of the latest group, spread over it; add others "
               "above (the Experiments page shows a sweep's means per setting).")
if not selected:
    st.info("Pick one or more runs above to compare them.")
    st.stop()
chosen = runs.set_index("id").loc[selected].reset_index().rename(columns={"id": "run_id"})

# --- curves and cost ----------------------------------------------------------------
x_axis = st.radio("x axis", ["epoch", "step", "seconds"], horizontal=True, key="compare.x")
curves = store.metrics.curves(selected)
settings = studies.sweep_settings(store, selected, groups)
if settings and st.toggle("One line per setting: the mean over its seeds", True, key="compare.mean"):
    curves = analysis.mean_by_setting(curves, settings)
    st.caption("Each line is a setting's mean over its seeds, at the epochs every seed has reached; the "
               "Experiments page shows each seed's final accuracy and the spread.")
if curves.empty:
    st.info("The selected runs have no finished epoch yet.")
else:
    st.plotly_chart(charts.curves(curves, x_axis), width="stretch")
done = chosen.dropna(subset=["val_acc"])
if not done.empty:
    left, right = st.columns(2)
    left.plotly_chart(charts.scatter(done, "seconds", "training seconds"), width="stretch")
    right.plotly_chart(charts.scatter(done, "trainable", "trainable parameters", log_x=True),
                       width="stretch")

if not curves.empty and len(selected) >= 2:
    st.subheader("At equal training time")
    st.caption("The curves above compare runs at equal epochs. A frozen run's epoch costs less, so here each run "
               "is read after the same training time: the last validation accuracy it had reached by then. "
               "Training time includes building a run's feature cache, which its first epoch waits for.")
    longest = float(curves.seconds.max())
    budget = st.slider("Training seconds", 0.0, max(longest, 0.1), analysis.every_run_has_a_point(curves),
                       key="compare.seconds", format="%.1f s",
                       help="Training time includes building a run's feature cache.")
    st.plotly_chart(charts.at_equal_time(analysis.at_equal_time(curves, budget), budget), width="stretch",
                    key="compare.equal_time")

# --- confusion matrices ----------------------------------------------------------------
st.subheader("Confusion matrices (validation set, last checkpoint)")
shown = selected[:4]
cols = st.columns(len(shown))
for col, run_id in zip(cols, shown, strict=True):
    with col:
        if not chosen.set_index("run_id").loc[run_id, "readable"]:
            st.caption(f"{labels[run_id]}: its stored config cannot be read, so its model cannot be rebuilt.")
            continue
        if why := readings.checkpoint_problem(run_id):
            st.caption(f"{labels[run_id]}: {why}.")
            continue
        scored = readings.confusion(run_id)
        if scored is None:
            st.caption(f"{labels[run_id]}: no checkpoint yet (one is written when a burst ends).")
            continue
        matrix, classes = scored
        accuracy = matrix.trace() / matrix.sum()
        st.plotly_chart(charts.confusion(matrix, classes, f"{store.label(run_id)} · {accuracy:.1%}"),
                        width="stretch", key=f"compare.cm.{run_id}")
        recall = analysis.per_class_accuracy(matrix)
        worst = int(np.nanargmin(recall))
        st.caption(f"Per class: {', '.join(f'{c} {r:.0%}' for c, r in zip(classes, recall, strict=True))}. "
                   f"Hardest: {classes[worst]}.")

# --- export and housekeeping ---------------------------------------------------------------
MODEL_FORMATS = {None: "training checkpoint (FreezeLab)", model_export.ModelFormat.STATE_DICT: "weights (state dict)",
                 model_export.ModelFormat.TORCH_EXPORT: "torch.export program (torch alone)",
                 model_export.ModelFormat.ONNX: "ONNX (ONNX Runtime)"}
st.subheader("Export")
st.caption("Files are made when you click, from the runs as they are then.")
e1, e2, e3 = st.columns(3)
e1.download_button("Report (one HTML file)", lambda: report.report_html(store, selected, resources.trained_models()),
                   "freezelab-report.html", "text/html", key="compare.report",
                   help="Setup, results, curves, heat maps, confusion matrices, attribution maps with their sanity "
                        "check, and each run's config; opens offline in any browser. Takes a few seconds per run.")
e1.download_button("Curves as CSV", lambda: store.metrics.export_csv(selected), "freezelab-curves.csv", "text/csv",
                   key="compare.csv")
if not curves.empty:
    e2.download_button("Curves as PNG", lambda: figures.curves_png(store.metrics.curves(selected), x_axis),
                       "freezelab-curves.png", "image/png", key="compare.png")
with e3:
    target = st.selectbox("Model of", selected, format_func=labels.get, key="compare.ckpt")
    if readings.has_checkpoint(target):
        fmt = st.selectbox("As", [None, *model_export.available_formats()], key="compare.model_format",
                           format_func=lambda f: MODEL_FORMATS[f],
                           help="Each holds the weights and a manifest (class names, input size, normalisation, "
                                "the run and its accuracy). The checkpoint is for FreezeLab: it resumes training.")
        if fmt is None:  # the training checkpoint
            st.download_button("Download checkpoint", store.checkpoints.path(target).read_bytes,
                               f"freezelab-{target}.pt", "application/octet-stream", key="compare.checkpoint")
        else:
            st.download_button("Download model", lambda: model_export.export_zip(
                store, target, fmt, resources.trained_models()), f"freezelab-{target}-{fmt}.zip",
                "application/zip", key="compare.model")
    else:
        st.caption("No checkpoint yet.")

with st.expander("Export to MLflow or TensorBoard"):
    st.caption("Each selected run with its config (as parameters), every epoch's metrics and the per-step loss; "
               "MLflow gets its checkpoint too. Exporting a run again replaces its earlier export.")
    with_model = st.checkbox("MLflow: each run's model too (an MLflow PyTorch model, a few seconds each)",
                             key="compare.mlflow.model")
    for (tracker, name), column in zip(trackers.TRACKERS.items(), st.columns(2), strict=True):
        where = column.text_input(f"{name}: folder" + (" or tracking URI" if tracker == "mlflow" else ""),
                                  str(trackers.default_targets()[tracker]), key=f"compare.{tracker}.target")
        if column.button(f"Export to {name}", key=f"compare.{tracker}.export"):
            bar = column.progress(0.0, text=f"Exporting to {name}")
            try:
                shares.check_export(where)  # a browser exports only where the operator shares
                trackers.export(tracker, store, selected, where, with_model=with_model,
                                progress=lambda d, t, what, bar=bar: bar.progress(d / t, text=what))
                column.success(f"{len(selected)} runs exported; look with `{trackers.viewer_command(tracker, where)}`")
            except trackers.TrackerUnavailable as err:
                column.warning(str(err))
            except (shares.NotShared, trackers.ExportFailed) as err:
                column.error(str(err))
            finally:
                bar.empty()

with st.expander("Delete runs"):
    mine = training.mine(list(labels))  # seeing everyone's runs is not owning them
    if len(mine) < len(labels):
        st.caption("Runs other browsers made are shown, not offered for deletion here.")
    doomed = st.multiselect("Runs to delete", [r for r in labels if r in mine], format_func=labels.get,
                            key="compare.delete")
    sure = st.checkbox("Yes, delete them with their metrics and checkpoints", key="compare.sure")
    busy = training.is_training(doomed)  # a Ray sweep's runs too
    if busy:
        st.warning("Stop a run before deleting it.")
    if st.button("Delete", disabled=not (doomed and sure) or busy, key="compare.delete_runs"):
        for run_id in doomed:
            training.delete_run(run_id)
        st.rerun()
