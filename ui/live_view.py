"""The live view of a comparison's runs: their table, what went wrong, and their curves, growing while they train.
One fragment, shown by the Train page and by the start page once its demo comparison is clicked.

While runs train, each run of the fragment lasts about PERIOD_S and redraws in place, every STEP_S, the parts that
changed; the page's timer then starts the next. Rerun four times a second instead (every part sent again each
time), the view kept Chromium busy 42-55% of a core beside the trainer; redrawn in place as often, 24-31%
(docs/benchmarks.md). Between redraws it looks at the runs' status every CHECK_S: the end of a burst shows
within that, and the page then redraws whole once (the interactive Plotly figure), which stops the timer.
While runs train the curves are drawn light (inline SVG: `ui.live` says what each way costs).
"""

from __future__ import annotations

import time

import streamlit as st

from core.execution.snapshot import Snapshot
from core.insight import charts
from core.insight.fairness import held_equal
from core.store.status import ENDED_BADLY, RunProblem, RunStatus
from ui import live, raw_html, resources, training

PERIOD_S, STEP_S, CHECK_S, END_EARLY_S = 2.0, 0.25, 0.05, 0.1

# While the view polls, one of its fragment runs is always in progress, so Streamlit's header would say
# "Running…" for as long as runs train, beside a Stop that stops the view, not training. Its animation alone
# costs Chromium 30-50 ms of CPU a second (a page whose fragment only sleeps: 66-95 ms, hidden 30-42 ms), taken
# from training on a laptop. Hidden while the view polls; the page's own Stop stops training.
_QUIET_HEADER = "<style>[data-testid='stStatusWidget'] { display: none; }</style>"


def show(run_ids: list[str], busy: bool, x: str = "epoch", key: str = "live") -> None:
    """Draw the live view of `run_ids` here, under what they hold equal; while `busy` (any of them trains) it
    redraws itself until they stop. `x` is the curves' x axis (`charts.X_TITLES`); `key` prefixes the keys of
    the buttons it shows.
    While runs train, its first run lasts about PERIOD_S within the page's run: call it last, into a container
    placed where it goes, or what the page draws after it waits (and shows faded) until then."""
    if busy:
        st.html(_QUIET_HEADER)
    configs = training.configs(run_ids)
    if fair := held_equal([configs[r] for r in run_ids if r in configs]):
        st.caption(fair)
    manager, start_lrs = resources.training(), {run_id: cfg.start_lr for run_id, cfg in configs.items()}
    budgets = {run_id: cfg.epochs for run_id, cfg in configs.items()}

    @st.fragment(run_every=PERIOD_S if busy else None)
    def view() -> None:
        """Each run's status, progress, speed and feature cache, what went wrong, and the curves."""
        table_box, notes_box, curves_box, legend_box = st.empty(), st.container(), st.empty(), st.empty()
        drawn: dict[int, str] = {}

        def draw(box, content: str, element: str = "markdown", **kw) -> None:  # what a box shows is not sent again
            if drawn.get(id(box)) != content:
                drawn[id(box)] = content
                if element == "raw html":  # the one way raw HTML reaches a page: checked there
                    raw_html.write(box, content)
                else:
                    getattr(box, element)(content, **kw)

        deadline = time.monotonic() + PERIOD_S - END_EARLY_S  # ends before the timer's next tick
        snaps = manager.snapshots_of(run_ids)
        notes = _notes(snaps)
        with notes_box:
            _draw_notes(snaps, key)
        while True:
            any_running = any(s.status == RunStatus.RUNNING for s in snaps)
            draw(table_box, live.runs_table(snaps, start_lrs, budgets))
            if _notes(snaps) != notes:  # a run failed or ended with something to say: the whole page again
                st.rerun()
            if busy and not any_running:
                st.rerun()  # training ended: redraw the whole page once (the interactive chart), which stops the timer
            curves, steps = training.live_curves(run_ids)
            if steps.empty:
                hint = live.curves_hint(snaps)  # none under runs that failed before their first step
                draw(curves_box, hint, "info" if hint else "markdown")
            elif any_running:  # our markup, every name in it escaped
                draw(curves_box, live.curves_svg(curves, x, steps), "raw html")
            else:
                curves_box.plotly_chart(charts.curves(curves, x, steps), width="stretch")
            if not steps.empty:
                draw(legend_box, "Thin lines: training loss at every step (smoothed); markers: validation at each "
                     "epoch's end, dashed: training over the epoch." +
                     (" Hover and zoom once the runs stop." if any_running else ""), "caption")
            if not (busy and any_running) or time.monotonic() >= deadline:
                return
            redraw_at = min(time.monotonic() + STEP_S, deadline)
            while time.monotonic() < redraw_at:  # look at the status often, draw four times a second
                time.sleep(CHECK_S)
                snaps = manager.snapshots_of(run_ids)
                if not any(s.status == RunStatus.RUNNING for s in snaps):
                    break

    view()


def _notes(snaps: list[Snapshot]) -> list[tuple[str, str, str]]:
    return [(s.run_id, s.status, s.message) for s in snaps if s.message or s.status in ENDED_BADLY]


def _draw_notes(snaps: list[Snapshot], key: str) -> None:
    """What went wrong, and what a run has to say; a run whose checkpoint is gone can restart from step 0."""
    for failure in live.failures(snaps):
        st.error(failure)
    for snap in snaps:
        if snap.status in ENDED_BADLY:
            continue
        if snap.problem is RunProblem.CHECKPOINT_MISSING:
            st.warning(f"{snap.label}: {snap.message}")
            if training.mine([snap.run_id]) and st.button(f"Restart {snap.label} from step 0",
                                                           key=f"{key}.restart.{snap.run_id}"):
                training.start_burst([snap.run_id], epochs=1, restart=True)
                st.rerun()
        elif snap.message:
            st.caption(f"{snap.label}: {snap.message}")
