"""A Streamlit page for `freezelab bench --only redraw`: one fragment redraws one way of showing the live view
twice a second, on curves that grow by a step per redraw. Which way: the URL's `view` parameter, one of VIEWS
(`benchmarks.bench.REDRAW_VIEWS`), so one server serves every view. Each is drawn by a rerun of the fragment,
but for the last, drawn as the live view does: in place, four times in each run of the fragment, which the
page's timer starts every two seconds. Each redraw ends with a caption that counts them: the benchmark divides
the browser's CPU time by the redraws it saw.

The three runs, their labels and their size follow the demo comparison (30 steps a burst, an epoch every 5);
the data is made up: what a redraw costs does not depend on the values."""

import time

import numpy as np
import pandas as pd
import streamlit as st

from benchmarks.bench import REDRAW_VIEWS
from core.execution.snapshot import Snapshot
from core.insight import charts
from core.store.status import RunStatus
from ui import live

LABELS = ("Feature extraction", "Fine-tune the top 2 blocks", "From scratch")
STEPS_PER_EPOCH = 5


def snapshots(step: int) -> list[Snapshot]:
    return [Snapshot(f"run{i}", label=label, status=RunStatus.RUNNING, step=step, epoch=step / STEPS_PER_EPOCH,
                     burst_done=step % 30, burst_total=30, images_per_sec=1000.0 * (i + 1), cache_on=i < 2,
                     cache_reason="stem, layer1 frozen: their output is computed once")
            for i, label in enumerate(LABELS)]


def curves(step: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's epoch table and step table (`Metrics.curves`), `step` steps into each run."""
    rng = np.random.default_rng(0)
    epochs, steps = [], []
    for i, label in enumerate(LABELS):
        s = np.arange(1, step + 1)
        loss = 2.3 * np.exp(-s / (20 + 10 * i)) + 0.1 * rng.random(step)
        steps.append(pd.DataFrame({"run_id": f"run{i}", "label": label, "step": s, "epoch": s / STEPS_PER_EPOCH,
                                   "seconds": s * 0.02, "loss": loss}))
        e = np.arange(1, step // STEPS_PER_EPOCH + 1)
        epochs.append(pd.DataFrame({"run_id": f"run{i}", "label": label, "step": e * STEPS_PER_EPOCH, "epoch": e,
                                    "seconds": e * 0.1, "val_loss": 2 / (e + i), "train_loss": 2.2 / (e + i),
                                    "val_acc": 1 - 1 / (e + 1.5), "train_acc": 1 - 1 / (e + 2)}))
    return pd.concat(epochs, ignore_index=True), pd.concat(steps, ignore_index=True)


def rows_columns(snaps: list[Snapshot]) -> None:
    """The runs' rows as the Train page drew them before `ui.live`: columns, a progress bar, a metric."""
    for snap in snaps:
        c1, c2, c3, c4 = st.columns([2, 3, 1, 3])
        c1.markdown(f"**{snap.label}**  \n`{snap.status}` · lr 0.01")
        c2.progress(snap.progress, text=f"step {snap.step}, epoch {snap.epoch:.2f}")
        c3.metric("images/s", live.speed(snap.images_per_sec))
        c4.caption(f"{'🟢 feature cache on' if snap.cache_on else '⚪ feature cache off'}: {snap.cache_reason}")


def plotly_curves(step: int) -> None:
    table, steps = curves(step)
    st.plotly_chart(charts.curves(table, "epoch", steps), width="stretch")


def svg_curves(step: int) -> None:
    table, steps = curves(step)
    st.markdown(live.curves_svg(table, "epoch", steps), unsafe_allow_html=True)  # as ui/live_view.py draws it


IN_PLACE = "curves as SVG, redrawn in place"  # drawn as the live view does
VIEWS = {
    "empty": lambda step: None,
    "rows as columns": lambda step: rows_columns(snapshots(step)),
    "rows as one Markdown table": lambda step: st.markdown(live.runs_table(snapshots(step), {})),
    "curves in Plotly": plotly_curves,
    "curves as SVG": svg_curves,
    IN_PLACE: svg_curves,
}

assert tuple(VIEWS) == REDRAW_VIEWS, "the benchmark times the views it lists, in its order"

st.title("Live view")
view = st.query_params.get("view", "empty")


def count() -> int:
    st.session_state.step = st.session_state.get("step", 0) + 1
    return st.session_state.step


@st.fragment(run_every=2.0 if view == IN_PLACE else 0.5)
def redraw() -> None:
    if view != IN_PLACE:
        step = count()
        VIEWS[view](step)
        st.caption(f"redraw {step}")
        return
    curves_box, caption_box = st.empty(), st.empty()
    for i in range(4):  # twice a second, into the same elements
        step = count()
        with curves_box:
            VIEWS[view](step)
        caption_box.caption(f"redraw {step}")
        if i < 3:
            time.sleep(0.5)


redraw()
