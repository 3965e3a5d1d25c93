"""Train: define runs, train them in bursts, and watch their curves grow live."""

import streamlit as st

from core.data.datasets import DataUnavailable
from core.freezing import recipes_for
from core.insight import charts, fairness
from core.models.backbones import block_names
from core.models.weights import WeightsMismatch, WeightsUnavailable
from core.runtime.shares import NotShared
from core.store.status import RunStatus
from core.training.config import CURRENT, DEMO_COMPARISON, DEMO_EPOCHS, DEMO_OPTIM, OptimConfig, comparison
from core.training.rules import MAX_EPOCHS, OPTIMIZERS, ConfigInvalid
from ui import live_view, session, training
from ui.live import markdown_literal

st.title("🏋️ Train")

data_cfg, model, plan = session.data_config(), session.model_config(), session.freeze_plan()
recipes = recipes_for(block_names(model.backbone))
run_ids = training.current_group()

# --- a comparison a link carried ----------------------------------------------------
if offered := session.shared_comparison():
    with st.container(border=True):  # what a link carries is drawn as text: a label cannot fetch or format
        st.markdown(f"**The link you opened carries a comparison of {len(offered)} runs:** "
                    + ", ".join(markdown_literal(c.label or "unnamed") for c in offered) + ".")
        if fair := fairness.held_equal(offered):
            st.caption(markdown_literal(fair))
        go, drop = st.columns([2, 1])
        if go.button("▶ Create and train them", type="primary", key="train.shared.run"):
            try:  # checked whole when the link was read; the folder or weights may have gone since
                training.start_burst(training.new_comparison(offered, "shared"),
                                     epochs=max(c.epochs for c in offered))
            except (ValueError, DataUnavailable, WeightsUnavailable) as err:  # ConfigInvalid, NotShared among them
                st.error(str(err))
            else:
                session.drop_shared_comparison()
                st.rerun()
        if drop.button("Not now", key="train.shared.drop"):
            session.drop_shared_comparison()
            st.rerun()

# --- a new comparison -------------------------------------------------------------
def new_comparison() -> None:
    """The form that creates a comparison's runs."""
    st.caption(f"Data: {data_cfg.source}, {data_cfg.per_class or 'all'} images per class · "
               f"backbone {model.backbone}, weights {model.weights} (set on the Data and Layers pages)")
    with st.form("train.new"):
        variants = st.multiselect(
            "Runs", [CURRENT, *recipes], default=[k for k in DEMO_COMPARISON if k in recipes], key="train.variants",
            format_func=lambda k: "Current plan (from Layers)" if k == CURRENT else recipes[k].title)
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs per run", 1, MAX_EPOCHS, DEMO_EPOCHS, key="train.epochs")
        lr = c2.select_slider("Learning rate of the current plan", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2,
                                                                     1e-1], DEMO_OPTIM.lr,
                              key="train.lr", format_func=lambda v: f"{v:g}",
                              help="Presets train at their own rate, suited to what they train.")
        optimizer = c3.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(DEMO_OPTIM.name),
                                 key="train.optimizer")
        batch = c4.select_slider("Batch size", [8, 16, 20, 32, 64, 128, 256], DEMO_OPTIM.batch_size,
                                 key="train.batch")
        d1, d2, d3 = st.columns(3)
        seed = d1.number_input("Seed", 0, 10_000, 0, key="train.seed")
        patience = d2.number_input("Early stopping patience (0: off)", 0, 100, 0, key="train.patience")
        cache = d3.checkbox("Cache frozen features when exact", session.cache_switch(), key="train.cache")
        same_lr = st.checkbox("Give every run this one learning rate instead (unfair: a fresh head alone needs a "
                              "higher rate than pretrained blocks; try it to see what it does to feature extraction)",
                              False, key="train.same_lr")
        own_rates = ", ".join(f"{r.title} {r.phases[0].lr:g}" for r in recipes.values())
        st.caption(f"Held equal: data, weights, epochs, batch size, seed, and BatchNorm in frozen blocks "
                   f"(`{plan.bn}`, as set on the Layers page). Each preset trains at the learning "
                   f"rate suited to what it trains ({own_rates}), chosen so each is within 3 points of its best "
                   "on the demo; the range test below finds rates for another setup.")
        if st.form_submit_button("Create runs", type="primary", key="train.create"):
            try:
                configs = comparison(recipes, variants, plan=plan, bn=plan.bn, same_lr=lr if same_lr else None,
                                     data=data_cfg, model=model, epochs=int(epochs), seed=int(seed),
                                     optim=OptimConfig(name=optimizer, lr=lr, batch_size=int(batch)),
                                     patience=int(patience) or None, feature_cache=cache)
                session.set_cache_switch(cache)
                training.new_comparison(configs, "ui")  # checked again at the door: a file gone since is said
            except (ConfigInvalid, NotShared) as err:
                st.error(str(err))
            else:
                st.rerun()


# Drawn only while open: even collapsed, the form costs the browser a layout on every visit, and the demo's
# click lands on this page while its runs start training.
new_box = st.expander("New comparison", expanded=not run_ids, key="train.new_open", on_change="rerun")
if new_box.open:
    with new_box:
        new_comparison()

if not run_ids:
    st.info("Create runs above, or press “Run the demo comparison” on the start page.")
    st.stop()

# --- bursts ------------------------------------------------------------------------
b1, b2, b3, b4, b5 = st.columns([1, 1, 1, 1, 2])
unit = b1.radio("Burst of", ["epochs", "steps"], horizontal=True, key="train.unit")
amount = b2.number_input(f"How many {unit}", 1, 10_000, 2 if unit == "epochs" else 50, key="train.amount")
busy = training.is_training(run_ids)  # a Ray sweep's runs too (Experiments page)
own = training.mine(run_ids)  # another browser's runs are shown, not trained or stopped from here
if len(own) < len(run_ids):
    st.caption(f"{len(run_ids) - len(own)} of these runs belong to another browser: shown here, trained and "
               "stopped only there" + (f"; a burst here trains the other {len(own)}." if own else "."))
if b3.button("▶ Run burst", type="primary", disabled=busy or not own, width="stretch", key="train.burst"):
    try:
        started = training.start_burst(own, **{unit: int(amount)})
        if not started:
            st.info("Every run here has ended (finished, failed or diverged): give the finished ones more epochs "
                    "below, or create new runs above.")
    except (DataUnavailable, WeightsUnavailable, WeightsMismatch, ValueError, RuntimeError) as err:
        st.error(str(err))  # RuntimeError: another process trains one of these runs
    busy = training.is_training(run_ids)
if b4.button("■ Stop", disabled=not (busy and training.is_training(own)), width="stretch", key="train.stop"):
    training.stop_training(own)
x_axis = b5.radio("x axis", ["epoch", "step", "seconds"], horizontal=True, key="train.x")
with st.popover("🔗 Share this comparison"):
    st.caption("A link that offers these runs' exact configs (recipes, learning rates, epochs, data, seed) to "
               "whoever opens it: one click trains them again in their browser.")
    st.code(session.comparison_link(list(training.configs(run_ids).values())), language=None, wrap_lines=True)
finished = [r for r in own if training.store().status(r)[0] == RunStatus.FINISHED]
if finished and not busy:
    e1, e2 = st.columns([1, 3], vertical_alignment="bottom")
    more = e1.number_input("More epochs", 1, MAX_EPOCHS, 2, key="train.more")
    if e2.button(f"▶ Carry the {len(finished)} finished run{'s' if len(finished) > 1 else ''} on for {int(more)} "
                 "more epochs", key="train.lengthen"):
        training.start_burst(training.lengthen(finished, int(more)), epochs=int(more))
        busy = True


# The live view (ui/live_view.py), drawn last, below, into this place: the rest of the page is never held up.
live_box = st.container()


# --- a learning rate for another setup ----------------------------------------------------------------
with st.expander("Find a learning rate (range test)"):
    st.caption("Smith (2017), as fastai's lr_find: train a few dozen steps while the learning rate grows "
               "exponentially, and watch the loss. Too low, it barely moves; too high, it blows up. The "
               "suggestion, a tenth of where the smoothed loss was lowest, is a starting point, not a verdict.")
    f1, f2 = st.columns([2, 1])
    tested = f1.selectbox("For", [CURRENT, *recipes], key="train.lr_find.for",
                          format_func=lambda k: "Current plan (from Layers)" if k == CURRENT else recipes[k].title)
    if f2.button("Run the range test", key="train.lr_find"):
        try:  # ConfigInvalid is a ValueError
            (run_cfg,) = comparison(recipes, [tested], plan=plan, data=data_cfg, model=model, optim=DEMO_OPTIM)
            st.session_state["train.lr_found"] = (tested, training.lr_range_test(run_cfg))
        except (DataUnavailable, WeightsUnavailable, WeightsMismatch, ValueError) as err:
            st.error(str(err))
    found = st.session_state.get("train.lr_found")
    if found and found[0] == tested:
        table, suggested = found[1]
        st.plotly_chart(charts.lr_range(table, suggested), key="train.lr_chart")
        st.caption(f"Suggested: {suggested:.2g}" + ("" if tested == CURRENT else
                                                   f" · the preset's own: {recipes[tested].phases[0].lr:g}"))


with live_box:
    live_view.show(run_ids, busy, x_axis, key="train")
