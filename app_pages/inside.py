"""Inside: what freezing changed in the network — which weights moved, where gradients stopped, what
BatchNorm did, at which depth features stop transferring, what the source task lost, what each setting
costs — and the silent mistakes the audit catches."""

import streamlit as st

from core.insight import analysis, charts, inside
from core.models.backbones import block_names
from core.runtime.device import describe_device
from core.training.config import DEMO_OPTIM, bn_comparison
from ui import live_view, readings, session, training

st.title("🔬 Inside")
st.caption("What training did to each block, recorded at every epoch's end, and what each freeze setting costs.")

store = training.store()
runs = training.runs()
labels = {r.id: f"{r.label} · {r.id}" for r in runs.itertuples()}
names = {r.id: r.label for r in runs.itertuples()}

BN_RUNS_KEY = "inside.bn_runs"  # the BatchNorm comparison this session started here


def compare_bn_policies(data_cfg, model_cfg) -> None:
    """Start the three BatchNorm policies' runs and show them on this page (a callback: before the page draws,
    so the run picker can take them)."""
    configs = bn_comparison(data_cfg, model_cfg, block_names(model_cfg.backbone), epochs=3, optim=DEMO_OPTIM)
    bn_runs = training.new_comparison(configs, "bn")
    training.start_burst(bn_runs, epochs=3)
    st.session_state[BN_RUNS_KEY] = st.session_state["inside.runs"] = bn_runs


selected: list[str] = []
if runs.empty:
    session.runs_from_link("inside.runs", [], [])  # a link's runs are not here: said, not silently dropped
    st.info("No runs yet: train some on the Train page, or run the demo comparison on the start page. "
            "What each setting costs (at the bottom) needs no run.")
else:
    default = [r for r in training.current_group() if r in labels][:3] or list(runs.id[:2])
    default = session.runs_from_link("inside.runs", list(labels), list(labels)) or default
    selected = st.multiselect("Runs", list(labels), default=default, format_func=labels.get, key="inside.runs")
    session.link_runs("inside.runs", selected)

if bn_runs := [r for r in st.session_state.get(BN_RUNS_KEY, []) if r in labels]:
    st.subheader("The three BatchNorm policies, training")
    live_view.show(bn_runs, training.is_training(bn_runs), key="inside.bn_live")  # asked for here, shown here

stats = store.metrics.block_stats(selected) if selected else None
recorded = [r for r in selected if stats is not None and (stats.run_id == r).any()]
if selected and not recorded:
    st.info("The selected runs have no finished epoch yet: figures are recorded at each epoch's end.")
shown = recorded[:4]
titles = charts.run_names(runs.rename(columns={"id": "run_id"})[["run_id", "label"]])

# --- weight drift ---------------------------------------------------------------------------------------
if shown:
    st.subheader("Which weights moved")
    configs = training.configs(shown)
    policies = {titles[r]: configs[r].phases[0].plan.bn for r in shown if r in configs}
    st.markdown("Each cell is how far a block's weights are from where the run started, relative to their size "
                f"(‖w − w₀‖ / ‖w₀‖). {inside.frozen_blocks_in_words(policies, 'drift')} "
                "Compare where the colour starts in two runs: that is their freeze boundary.")
    st.plotly_chart(charts.block_heatmaps({titles[r]: inside.block_matrix(stats, r, "drift") for r in shown},
                                          "weight drift", empty="—"), key="inside.drift")

    st.subheader("Where gradients stop")
    st.markdown("The mean gradient norm reaching each block per epoch (log scale). "
                + inside.frozen_blocks_in_words(policies, "gradient"))
    st.plotly_chart(charts.block_heatmaps({titles[r]: inside.block_matrix(stats, r, "grad_norm") for r in shown},
                                          "gradient norm", log=True, empty="frozen"), key="inside.grads")

    st.subheader("What BatchNorm did")
    st.markdown("How far each block's BatchNorm running statistics moved, at the last recorded epoch. Under the "
                "policy **frozen** (Keras' behaviour) frozen blocks keep their statistics exactly; under "
                "**stats** they drift towards the new data even though no weight trains; **affine** trains γ "
                "and β but keeps the statistics.")
    last = {titles[r]: inside.block_matrix(stats, r, "bn_drift").iloc[:, -1].dropna() for r in shown}
    st.plotly_chart(charts.bars_by_block(last, "BatchNorm statistics drift"), key="inside.bn")
    setup_data, setup_model = session.data_config(), session.model_config()
    st.button("▶ Compare the three BatchNorm policies on the current setup", key="inside.bn_compare",
              on_click=compare_bn_policies, args=(setup_data, setup_model))
    st.caption(f"Three runs on {setup_data.source} with {setup_model.backbone}: the top block trains, the rest "
               "is frozen. Held equal: data, weights, learning rate, 3 epochs, seed; only the policy differs. "
               "They train here, at the top of this page.")

# --- one run in depth -------------------------------------------------------------------------------------
readable = set(runs[runs.readable].id)
ready = [r for r in selected if r in readable and readings.has_checkpoint(r)]
for note in readings.unreadable(selected):
    st.warning(note)
if ready:
    st.divider()
    focus = st.selectbox("Look inside one run", ready, format_func=labels.get, key="inside.focus")

    def asked(label: str, key: str) -> bool:
        """A button for a view computed on demand; the view stays while the same run is in focus."""
        if st.button(label, key=key):
            st.session_state[f"{key}.run"] = focus
        return st.session_state.get(f"{key}.run") == focus

    no_start = "This run kept no weights from its start (it was trained before they were kept)."

    st.subheader("At which depth do features stop transferring?")
    st.markdown("A linear probe (Alain and Bengio, 2016) is a logistic regression trained on one block's "
                "output, averaged over space. Its validation accuracy says how much that block's features "
                "already tell the classes apart. Where the curve for the starting weights stops rising, the "
                "pretrained features become specific to their old task; training moves the curve up. Under "
                "feature extraction the two curves coincide: the backbone did not change.")
    if asked("Probe each block", "inside.probe"):
        probed = readings.probes(focus)
        if probed is None:
            st.caption(no_start)
        else:
            st.plotly_chart(charts.probe_lines(*probed), key="inside.probe_chart")

    st.subheader("Feature space")
    st.markdown("The features the classifier sees for each validation image, projected on their two main "
                "directions (PCA), before and after training, coloured by class. Classes that sit in separate "
                "clouds are easy for a linear head; fine-tuning can pull overlapping clouds apart.")
    if asked("Project the features", "inside.pca"):
        projected = readings.pca(focus)
        if projected is None:
            st.caption(no_start)
        else:
            st.plotly_chart(charts.pca_pair(*projected), key="inside.pca_chart")

    st.subheader("What the source task lost")
    task = inside.source_task(store.config(focus))
    if task is None:
        st.caption("Forgetting needs a backbone pretrained in the local zoo with its head kept (the bundled demo "
                   "net is one: digits 0-4); this run's backbone is not, or it is truncated.")
    else:
        st.markdown(f"The backbone came from **{task.entry}**, pretrained on classes {', '.join(task.classes)}. "
                    "Here it is scored on that task's held-out images with its original head, at every kept "
                    "step of this run. **Feature extraction keeps it exactly**; fine-tuning reuses the same "
                    "weights for the new task and the old one degrades (catastrophic forgetting).")
        if asked("Score the source task over the run", "inside.forget"):
            table = readings.forgetting(focus)
            st.plotly_chart(charts.forgetting_lines({titles[focus]: table}), key="inside.forget_chart")
            st.caption(f"Start: {table.accuracy.iloc[0]:.1%}; last kept step: {table.accuracy.iloc[-1]:.1%}, "
                       f"with {table.unchanged.iloc[-1]:.0%} of predictions unchanged.")

    st.subheader("Audit: silent freezing mistakes")
    st.markdown("Checks for the mistakes users of other frameworks report: a frozen block whose BatchNorm "
                "statistics changed, trainable parameters missing from the optimizer, frozen parameters inside "
                "it (weight decay still moves them), a trainable block whose gradient was always zero, and a "
                "run resumed under another plan than it was saved with.")
    found = readings.flags(focus)
    if not found:
        st.success("No silent mistake found in this run.")
    for flag in found:
        st.error(f"**{flag.block}**: {flag.problem}. Fix: {flag.fix}.")

# --- two runs' mistakes, class by class ----------------------------------------------------------------
if len(ready) >= 2:
    st.divider()
    st.subheader("Two runs, class by class")
    st.markdown("Their confusion matrices on the validation set and the difference: red cells are where the "
                "first run puts more images than the second. On the diagonal, red means the first run is "
                "better at that class.")
    pick_a, pick_b = st.columns(2)
    a = pick_a.selectbox("First run", ready, format_func=labels.get, key="inside.pair_a")
    b = pick_b.selectbox("Second run", [r for r in ready if r != a], format_func=labels.get, key="inside.pair_b")
    (ma, classes), (mb, _) = readings.confusion(a), readings.confusion(b)
    c1, c2, c3 = st.columns(3)
    c1.plotly_chart(charts.confusion(ma, classes, titles[a]), key="inside.cm_a")
    c2.plotly_chart(charts.confusion(mb, classes, titles[b]), key="inside.cm_b")
    c3.plotly_chart(charts.confusion_difference(ma, mb, classes, f"{titles[a]} minus {titles[b]}"),
                    key="inside.cm_diff")
    recall = {titles[r]: analysis.per_class_accuracy(m) for r, m in ((a, ma), (b, mb))}
    st.plotly_chart(charts.per_class(recall, classes), key="inside.per_class")

# --- cost against depth ---------------------------------------------------------------------------------------
st.divider()
st.subheader("What each setting costs")
setup_data, setup_model = session.data_config(), session.model_config()
st.markdown(f"For the current setup ({setup_model.backbone}, {setup_data.image_size} px images), one training "
            "step with k = 0 (fine-tune everything) up to all blocks frozen (feature extraction): time for the "
            "forward pass, backward pass and optimizer, the memory autograd keeps for backward, and trainable "
            "parameters. Frozen blocks at the bottom run without autograd, so they keep nothing for backward; "
            "whether that also saves time shows only where the difference beats the measurement's spread.")
batch = st.select_slider("Batch size", [8, 16, 20, 32, 64, 128], DEMO_OPTIM.batch_size, key="inside.batch")
if st.button("Measure", key="inside.cost"):
    st.session_state["inside.measured"] = (setup_model, setup_data, batch)
if st.session_state.get("inside.measured") == (setup_model, setup_data, batch):
    cost = readings.freeze_cost(setup_model, setup_data, batch)
    st.plotly_chart(charts.cost_by_depth(cost), key="inside.cost_chart")
    st.markdown(inside.cost_in_words(cost))
    st.caption(f"Measured on {describe_device()}, batch {batch}: median of {readings.COST_REPEATS} steps after "
               f"{inside.WARMUP_STEPS} warm-up steps, while this app also runs; spread: the middle half of the "
               "steps' times. Bytes and parameters do not move between measurements.")
    st.dataframe(cost.drop(columns=["cuda_peak_bytes"] if cost.cuda_peak_bytes.isna().all() else []),
                 hide_index=True)
