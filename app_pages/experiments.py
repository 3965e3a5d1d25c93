"""Experiments: questions that take many runs — at which depth to stop freezing (a sweep over seeds), what
the reports' recipes give here, and pretraining a backbone on one set of classes to transfer it to another."""

import dataclasses

import streamlit as st

from core.data.datasets import DataUnavailable, list_classes, task_words
from core.experiments import report_recipes, studies
from core.experiments.report_recipes import RECIPES, beside_reported
from core.freezing import RECIPE_LR
from core.insight import charts
from core.models import zoo
from core.models.backbones import block_names, list_backbones
from core.models.weights import WeightsMismatch, WeightsUnavailable
from core.store.status import RunStatus
from core.training.config import DEMO_EPOCHS, DEMO_OPTIM
from ui import readings, resources, session, training

st.title("🧪 Experiments")

store = training.store()
data_cfg, model = session.data_config(), session.model_config()
PROBLEMS = (DataUnavailable, WeightsUnavailable, WeightsMismatch, ValueError, RuntimeError)
sweep_tab, recipe_tab, pretrain_tab = st.tabs(["Transferability by depth", "The reports' recipes",
                                               "Pretrain, then transfer"])

# --- the depth sweep ----------------------------------------------------------------------------------------
with sweep_tab:
    blocks = block_names(model.backbone)
    st.markdown(f"Yosinski et al. (2014) asked how transferable features are by depth. Here: for k = 0 … "
                f"{len(blocks)}, keep the first k blocks of **{model.backbone}** frozen and train the rest, one run "
                "each, plus the same network from scratch as the control; repeat over seeds to see what is "
                "signal and what is noise.")
    with st.form("experiments.sweep"):
        c1, c2, c3 = st.columns(3)
        epochs = c1.number_input("Epochs per run", 1, 200, DEMO_EPOCHS, key="experiments.sweep.epochs")
        seeds = c2.number_input("Seeds per setting", 1, 10, 2, key="experiments.sweep.seeds")
        engines = ["job manager (the app's trainer)"] + (["Ray Tune (local)"] if training.RAY_AVAILABLE else [])
        engine = c3.radio("Engine", engines, key="experiments.sweep.engine",
                          help=None if training.RAY_AVAILABLE else "Ray is not installed: pip install -e '.[ray]'")
        same = st.checkbox(f"Hold one learning rate ({DEMO_OPTIM.lr:g}) for every setting instead of each its own",
                           False, key="experiments.sweep.same_lr")
        # Inside a form the widgets' values reach the script only on submit: no figure here that would go stale.
        st.caption(f"{len(blocks) + 2} settings × the seeds above, on {data_cfg.source}, {data_cfg.per_class or 'all'} "
                   "images per class. Held equal: data, weights, the epochs above, batch size "
                   f"{DEMO_OPTIM.batch_size}, BatchNorm in frozen blocks (`{session.freeze_plan().bn}`, as set on the "
                   "Layers page); seeds vary the "
                   "head's start and the data order. Each setting trains at the rate suited to what it trains "
                   f"(head alone {RECIPE_LR['feature_extraction']:g}, some blocks {RECIPE_LR['fine_tune_top']:g}, all "
                   f"blocks {RECIPE_LR['fine_tune_all']:g}, from scratch {RECIPE_LR['from_scratch']:g}) unless held "
                   "equal.")
        if st.form_submit_button("▶ Run the sweep", type="primary", key="experiments.sweep.run"):
            try:
                configs = studies.depth_sweep(data_cfg, model, DEMO_OPTIM, int(epochs), int(seeds),
                                              same_lr=DEMO_OPTIM.lr if same else None, bn=session.freeze_plan().bn)
                if engine.startswith("Ray"):
                    st.session_state[training.SWEEP_GROUP_KEY] = training.group_name(studies.SWEEP_PREFIX)
                    training.start_ray_sweep(configs, st.session_state[training.SWEEP_GROUP_KEY])
                else:
                    training.start_burst(training.new_comparison(configs, studies.SWEEP_PREFIX), epochs=int(epochs))
                    st.session_state[training.SWEEP_GROUP_KEY] = st.session_state[training.GROUP_KEY]
            except PROBLEMS as err:
                st.error(str(err))

    group = st.session_state.get(training.SWEEP_GROUP_KEY)

    def sweep_ids() -> list[str]:
        return store.group(group) if group else training.newest_group(studies.SWEEP_PREFIX)

    # It polls while the sweep trains, and while a sweep just started has no runs yet: a Ray sweep creates them in
    # its own thread, and the page may run before it has.
    ids_now = sweep_ids()
    polling = (group and not ids_now) or any(store.status(r)[0] == RunStatus.RUNNING for r in ids_now)

    @st.fragment(run_every=1.0 if polling else None)
    def sweep_results() -> None:
        run_ids = sweep_ids()
        if not run_ids:
            st.info("No sweep yet." if not group else "The sweep is starting (Ray takes a few seconds).")
            return
        runs = studies.sweep_runs(store, run_ids)
        bar, stop = st.columns([5, 1], vertical_alignment="bottom")
        bar.progress(*studies.sweep_progress(runs))
        # A callback: the runs are asked to stop before the fragment draws again, so the button greys out at once.
        own = training.mine(run_ids)  # another browser's sweep is shown, stopped only there
        stop.button("■ Stop the sweep", disabled=not (own and training.is_training(own)), width="stretch",
                    key="experiments.sweep.stop", on_click=training.stop_training, args=(own,),
                    help="Every run keeps what it trained and resumes from there (a burst on the Train page): on "
                    "the job manager each stops after its step, on Ray after its epoch, and the runs not yet begun "
                    "do not begin.")
        if runs.val_acc.notna().any():
            st.plotly_chart(charts.depth_sweep(runs), key="experiments.sweep.chart")
            if not runs.finished.all():  # a fair comparison holds the budget equal: say when it is not yet
                st.caption(f"{studies.UNEQUAL_BUDGETS} (the table's “finished” column).")
        table = studies.sweep_table(store, run_ids)
        st.dataframe(table, hide_index=True, column_config={
            "lr": st.column_config.NumberColumn("lr", format="%g"),
            "spread": st.column_config.NumberColumn(
                "spread", format="%.3f", help="Standard deviation of the final accuracy over the setting's seeds; "
                "empty with one seed (it needs two or more)."),
            **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
               for c in ("mean_val_acc", "min_val_acc", "max_val_acc")}})
        if takeaway := studies.sweep_takeaway(table):
            st.markdown(takeaway + ("" if runs.finished.all() else " (So far: not every run has finished.)"))
        if st.button("Show these runs' curves on the Train page", key="experiments.sweep.show"):
            st.session_state[training.GROUP_KEY] = store.runs().set_index("id").loc[run_ids[0], "group"]
            st.switch_page("app_pages/train.py")

    sweep_results()

# --- the reports' recipes ---------------------------------------------------------------------------------------
with recipe_tab:
    st.markdown("The configurations of the transfer-learning reports FreezeLab grew from, with the figure each "
                "reported (on all 50,000 CIFAR-10 training images) beside yours.")
    def marked(k: str) -> str:
        needed = report_recipes.downloads(RECIPES[k])
        return f"{RECIPES[k].title} · " + (f"needs {', '.join(needed)}" if needed else "runs offline")

    # The ones that run here first: a class offline opens on a recipe it can click.
    key = st.selectbox("Recipe (as the report set it up)", report_recipes.offline_first(RECIPES), format_func=marked,
                       key="experiments.recipe")
    recipe = RECIPES[key]
    st.markdown(f"**{recipe.title}** — {recipe.summary}")
    st.caption(f"Backbone {recipe.backbone}, head {dataclasses.asdict(recipe.head)}, {recipe.optim.name} at "
               f"{recipe.optim.lr:g} unless a phase sets its own, {recipe.epochs} epochs"
               f"{f', early stopping after {recipe.patience}' if recipe.patience else ''}, {recipe.image_size} px. "
               f"{recipe.notes}")
    if not recipe.available:
        st.warning(f"{recipe.backbone} comes with {recipe.needs}, an optional install: pip install -e "
                   f"'.[{recipe.needs}]'")
    else:
        figures = [f"{f.acc:.1%} {f.when} ({run.label})" for run in recipe.reported_runs() for f in run.reported]
        st.markdown("Reported: " + ("; ".join(figures) if figures else "no figure given"))
        r1, r2, r3 = st.columns(3)
        cifar_here = not report_recipes.downloads(recipe, weights="none")
        on_cifar = r1.radio("Data", ["CIFAR-10, as the report", "the current data (Data page)"],
                            index=0 if cifar_here else 1, key="experiments.recipe.data").startswith("CIFAR")
        per_class = r2.number_input("Training images per class (0: all)", 0, 5000, 100,
                                    key="experiments.recipe.per_class")
        weights_here = not report_recipes.downloads(recipe, on_cifar=False)
        weights = r3.radio("Weights", ["pretrained", "none"], index=0 if weights_here else 1,
                           key="experiments.recipe.weights")
        needed = report_recipes.downloads(recipe, on_cifar, weights)
        st.caption(f"This run first downloads {', '.join(needed)}." if needed else "This run needs no download.")
        if st.button("▶ Train this recipe", type="primary", key="experiments.recipe.run"):
            chosen = recipe.data() if on_cifar else data_cfg
            chosen = dataclasses.replace(chosen, per_class=int(per_class) or None)
            try:
                configs = recipe.configs(chosen, weights)
                training.start_burst(training.new_comparison(configs, f"recipe-{key}"), epochs=recipe.epochs)
                st.switch_page("app_pages/train.py")
            except PROBLEMS as err:
                st.error(str(err))
        mine = training.newest_group(f"recipe-{key}")
        if mine:
            st.markdown("**Your latest runs of it, beside the report**")
            st.dataframe(beside_reported(recipe, store, mine), hide_index=True)

# --- pretrain (task A), then transfer (task B) --------------------------------------------------------------------
with pretrain_tab:
    st.markdown("Train a backbone **from scratch** on some classes (task A), save it to your local zoo, then "
                "transfer it to other classes (task B) against training from scratch there. All offline, on the "
                "current data source — the bundled digits or your own folder.")
    offered = [*list_backbones(), *([model.backbone] if model.backbone not in list_backbones() else [])]
    backbone = st.selectbox("Backbone", offered, index=offered.index(model.backbone),
                            key="experiments.pretrain.backbone")
    demo = data_cfg.source == "demo"
    try:
        offered = list_classes(dataclasses.replace(data_cfg, task="source", classes=())) if not demo else []
    except DataUnavailable as err:
        st.error(str(err))
        st.stop()
    half = len(offered) // 2
    a1, a2, a3 = st.columns(3)
    if demo:
        task_a = a1.radio("Task A", ["source", "target"], format_func=task_words,
                          key="experiments.pretrain.task")
        data_a = dataclasses.replace(data_cfg, task=task_a, classes=(), per_class=None, crop_pad=2)
    else:
        classes_a = a1.multiselect("Task A: classes", offered, offered[:half], key="experiments.pretrain.classes")
        data_a = dataclasses.replace(data_cfg, classes=tuple(classes_a), per_class=None)
    pre_epochs = a2.number_input("Epochs", 1, 200, 8, key="experiments.pretrain.epochs")
    pre_lr = a3.select_slider("Learning rate", [1e-3, 3e-3, 1e-2], 3e-3, key="experiments.pretrain.lr")
    if st.button("▶ Pretrain from scratch on task A", type="primary", key="experiments.pretrain.run"):
        try:
            cfg = studies.pretrain_config(data_a, backbone, int(pre_epochs), pre_lr)
            training.start_burst(training.new_comparison([cfg], "pretrain"), epochs=int(pre_epochs))
            st.switch_page("app_pages/train.py")
        except PROBLEMS as err:
            st.error(str(err))

    pretrained = [r for r in training.newest_group("pretrain") if readings.has_checkpoint(r)]
    if pretrained:
        st.markdown("**Save a pretrained run to the zoo**")
        s1, s2, s3 = st.columns([3, 2, 1])
        source_run = s1.selectbox("Run", pretrained, format_func=lambda r: f"{store.label(r)} · "
                                                                             f"{store.status(r)[0]} · {r}",
                                  key="experiments.pretrain.source_run")
        name = s2.text_input("Zoo entry name", f"{backbone}-mine", key="experiments.pretrain.name")
        if s3.button("Save to zoo", key="experiments.pretrain.save"):
            try:
                folder = studies.save_to_zoo(store, source_run, name.strip(),
                                                 resources.data(store.config(source_run).data))
                st.session_state["experiments.transfer.entry"] = folder.name  # offered first below
                st.success(f"Saved {folder}: transfer it below, or pick it on the Layers page.")
            except PROBLEMS as err:
                st.error(str(err))

    entries = [e["name"] for e in zoo.list_entries() if e.get("backbone") == backbone and "unreadable" not in e]
    st.markdown("**Transfer to task B**")
    if not entries:
        st.info(f"No zoo entry holds a {backbone} yet: pretrain one above.")
    else:
        b1, b2, b3 = st.columns(3)
        entry = b1.selectbox("From zoo entry", entries, key="experiments.transfer.entry")
        if demo:
            task_b = b2.radio("Task B", ["target", "source"], format_func=task_words,
                              key="experiments.transfer.task")
            data_b = dataclasses.replace(data_cfg, task=task_b, classes=())
        else:
            classes_b = b2.multiselect("Task B: classes", offered, offered[half:], key="experiments.transfer.classes")
            data_b = dataclasses.replace(data_cfg, classes=tuple(classes_b))
        b_epochs = b3.number_input("Epochs", 1, 200, DEMO_EPOCHS, key="experiments.transfer.epochs")
        st.caption(f"Three runs on task B, {data_b.per_class or 'all'} images per class: feature extraction and "
                   "fine-tuning the top blocks from the entry, and from scratch; each at its own learning rate, "
                   "with data, budget and seed held equal.")
        if st.button("▶ Transfer and compare", type="primary", key="experiments.transfer.run"):
            try:
                configs = studies.transfer_comparison(entry, backbone, data_b, DEMO_OPTIM, int(b_epochs))
                training.start_burst(training.new_comparison(configs, "transfer"), epochs=int(b_epochs))
                st.switch_page("app_pages/train.py")
            except PROBLEMS as err:
                st.error(str(err))
