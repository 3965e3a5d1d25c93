"""What the live view (ui/live_view.py) draws while runs train, drawn light: what the browser redraws.

`python -m core bench --only redraw` measures what one redraw costs headless Chromium, on a 2-core machine:
the Plotly curves 180-260 ms of CPU and the runs' rows as columns with a progress bar and a metric each
90-110 ms, where the same curves as inline SVG cost about 50 ms, the rows as one Markdown table 40-46 ms, and
an empty redraw about 30 ms (over four runs of it). On a laptop the browser shares the cores with training,
so while runs train the page draws these, and the interactive Plotly figure (hover, zoom) once they stop.
Pure functions: data in, text out.
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd

from core.execution.snapshot import Snapshot
from core.insight.charts import CURVES_PANELS, CURVES_TITLES, X_TITLES, Line, curve_lines, log_ticks
from core.store.status import ENDED_BADLY

# --- the runs' rows -------------------------------------------------------------------------------------

BAR_CELLS = 12


def bar(fraction: float, cells: int = BAR_CELLS) -> str:
    """A progress bar in text: `cells` cells, filled in proportion to `fraction` (clipped to [0, 1])."""
    filled = round(min(max(fraction, 0.0), 1.0) * cells)
    return "▰" * filled + "▱" * (cells - filled)


def markdown_literal(text: str) -> str:
    """`text` as literal Markdown, in a paragraph or a table cell: what could format it (emphasis, code, links
    and images, HTML, Streamlit's colours and maths) or split the table is escaped. The one escape for names a
    page draws (a run's label may come from a link)."""
    return re.sub(r"([\\`*_\[\]|<>~$])", r"\\\1", text)


def speed(images_per_sec: float) -> str:
    if not images_per_sec:
        return "—"
    return f"{images_per_sec / 1000:.0f}k" if images_per_sec >= 10_000 else f"{images_per_sec:,.0f}"


def failures(snaps: list[Snapshot]) -> list[str]:
    """What ended runs badly, each cause said once with the runs it ended: three runs that failed for want of
    the same offline weights make one line, not three."""
    by_cause: dict[tuple[str, str], list[str]] = {}
    for snap in snaps:
        if snap.status in ENDED_BADLY:
            by_cause.setdefault((snap.status, snap.message), []).append(snap.label)
    return [f"{', '.join(names)} {status}: {message}" for (status, message), names in by_cause.items()]


def curves_hint(snaps: list[Snapshot]) -> str:
    """The line shown where curves will be before any run has a step; '' when none of them can have one (every
    run ended badly before its first step: the failures above say why)."""
    if snaps and all(s.status in ENDED_BADLY for s in snaps):
        return ""
    return "Curves appear with each run's first step."


def runs_table(snaps: list[Snapshot], start_lrs: dict[str, float], budgets: dict[str, int] | None = None) -> str:
    """Each run's name, status, starting learning rate, progress, speed and feature cache, as one Markdown table.
    Progress is against the run's whole budget (`budgets`: its epochs) where known, not the burst's: a paused
    run shows how much of its budget is left."""
    rows = ["| Run | Status | Learning rate | Progress | Images/s | Feature cache |", "|---|---|---|---|---|---|"]
    for snap in snaps:
        if snap.preparation:  # a download can take minutes: show it, not "step 0"
            done, words = snap.preparation
            progress = f"{bar(done)} {markdown_literal(words)}"
        else:
            budget = (budgets or {}).get(snap.run_id)
            progress = (f"{bar(snap.epoch / budget)} epoch {snap.epoch:.2f} of {budget} (step {snap.step})"
                        if budget else f"{bar(snap.progress)} step {snap.step}, epoch {snap.epoch:.2f}")
        lr = start_lrs.get(snap.run_id)
        cache = f"{'🟢 on' if snap.cache_on else '⚪ off'}: {markdown_literal(snap.cache_reason or '—')}"
        rows.append(f"| **{markdown_literal(snap.label)}** | `{snap.status}` | {'—' if lr is None else f'{lr:g}'} | "
                    f"{progress} | {speed(snap.images_per_sec)} | {cache} |")
    return "\n".join(rows)


# --- the curves, as SVG ---------------------------------------------------------------------------------

WIDTH, HEIGHT = 1000, 330  # the viewBox; the drawing scales to the page's width
_MARGIN = {"left": 58, "right": 14, "top": 34, "bottom": 44}
_PANELS = {axis: (lo * WIDTH, hi * WIDTH) for axis, (lo, hi) in CURVES_PANELS.items()}  # as `charts.curves`
_STYLE = {"val": 'stroke-width="2"', "train": 'stroke-width="1" stroke-dasharray="5 4"',
          "step": 'stroke-width="1" stroke-opacity="0.5"'}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values between `lo` and `hi`, about `count` of them, spaced 1, 2 or 5 times a power of ten."""
    if not hi > lo:
        return [lo]
    power = 10 ** math.floor(math.log10((hi - lo) / count))

    def ticks(step: float) -> list[float]:
        first = math.ceil(lo / step - 1e-9) * step
        return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]

    return min((ticks(m * power) for m in (1, 2, 5, 10)), key=lambda t: abs(len(t) - count))


def _label(v: float) -> str:
    return f"{v:g}"


class _Panel:
    """One panel's plotting area and its maps from data to viewBox coordinates."""

    def __init__(self, panel: str, x_range: tuple[float, float], y_range: tuple[float, float], log_y: bool):
        left, right = _PANELS[panel]
        self.x0, self.x1 = left + _MARGIN["left"], right - _MARGIN["right"]
        self.y0, self.y1 = _MARGIN["top"], HEIGHT - _MARGIN["bottom"]
        self.x_range, self.log_y = x_range, log_y
        self.y_range = tuple(math.log10(v) for v in y_range) if log_y else y_range

    def px(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.x_range
        return self.x0 + (np.asarray(x, float) - lo) / (hi - lo) * (self.x1 - self.x0)

    def py(self, y: np.ndarray) -> np.ndarray:
        lo, hi = self.y_range
        y = np.log10(np.maximum(np.asarray(y, float), 1e-12)) if self.log_y else np.asarray(y, float)
        return self.y1 - (y - lo) / (hi - lo) * (self.y1 - self.y0)


def _ranges(lines: list[Line]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The x range shared by both panels (from 0), and the loss panel's y range (padded, in log space)."""
    xs = np.concatenate([line.x for line in lines]).astype(float)
    x_hi = float(np.nanmax(xs)) if len(xs) else 1.0
    losses = np.concatenate([line.y for line in lines if line.panel == "x"]).astype(float)
    losses = losses[np.isfinite(losses) & (losses > 0)]
    lo, hi = (float(losses.min()), float(losses.max())) if len(losses) else (0.1, 1.0)
    pad = max(math.log10(hi / lo), 0.2) * 0.06
    return (min(0.0, float(np.nanmin(xs))) if len(xs) else 0.0, x_hi if x_hi > 0 else 1.0), \
        (lo / 10 ** pad, hi * 10 ** pad)


def _axes(p: _Panel, title: str, x_title: str) -> list[str]:
    grid = 'stroke="currentColor" stroke-opacity="0.12"'
    text = 'fill="currentColor" font-size="12"'
    out = [f'<text x="{(p.x0 + p.x1) / 2:.1f}" y="{p.y0 - 14}" text-anchor="middle" fill="currentColor" '
           f'font-size="16">{html.escape(title)}</text>',
           f'<text x="{(p.x0 + p.x1) / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" {text}>'
           f"{html.escape(x_title)}</text>"]
    lo, hi = p.x_range
    for t in nice_ticks(lo, hi):
        x = float(p.px(t))
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{p.y0}" y2="{p.y1}" {grid}/>')
        out.append(f'<text x="{x:.1f}" y="{p.y1 + 16}" text-anchor="middle" {text}>{_label(t)}</text>')
    y_lo, y_hi = (10 ** v for v in p.y_range) if p.log_y else p.y_range
    for t in (log_ticks(y_lo, y_hi) if p.log_y else nice_ticks(y_lo, min(y_hi, 1.0))):
        y = float(p.py(t))
        out.append(f'<line x1="{p.x0}" x2="{p.x1}" y1="{y:.1f}" y2="{y:.1f}" {grid}/>')
        out.append(f'<text x="{p.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {text}>{_label(t)}</text>')
    return out


def _draw(p: _Panel, line: Line) -> list[str]:
    y = line.y.astype(float)
    keep = np.isfinite(y) & (y > 0 if p.log_y else True)  # a log axis has no place for zero
    xs, ys = p.px(line.x[keep]), p.py(y[keep])
    if not len(xs):
        return []
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    out = [f'<polyline points="{points}" fill="none" stroke="{line.color}" {_STYLE[line.kind]}/>']
    if line.kind == "val" or (line.kind == "step" and len(xs) < 3):  # as `charts.curves` marks them
        radius = 3.5 if line.kind == "val" else 2
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{line.color}"/>'
                for x, y in zip(xs, ys, strict=True)]
    return out


def curves_svg(table: pd.DataFrame, x: str = "epoch", steps: pd.DataFrame | None = None) -> str:
    """The lines of `charts.curves`, in its two panels (loss on a log scale, accuracy from 0 to 1), as inline
    SVG in the page's text colour, with a legend of runs below: for `st.markdown(..., unsafe_allow_html=True)`
    (every name in it is escaped)."""
    lines = curve_lines(table, x, steps)
    if not lines:
        return ""
    x_range, loss_range = _ranges(lines)
    panels = {"x": _Panel("x", x_range, loss_range, log_y=True), "x2": _Panel("x2", x_range, (0.0, 1.02), log_y=False)}
    parts = []
    for axis, panel in panels.items():
        parts += _axes(panel, CURVES_TITLES[axis], X_TITLES[x])
    for line in lines:
        parts += _draw(panels[line.panel], line)
    legend = "".join(f'<span style="white-space:nowrap"><span style="color:{line.color}">●</span> '
                     f"{html.escape(line.name)}</span>" for line in lines if line.legend)
    # One HTML block for Markdown (a <div> line, then no blank line): passed through raw, nothing in it read as
    # Markdown. `st.html` would not do: its sanitiser keeps HTML only and drops the <svg>.
    return ('<div class="freezelab-live-curves">\n'
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="Loss and accuracy curves" '
            f'xmlns="http://www.w3.org/2000/svg" style="font-family:inherit">{"".join(parts)}</svg>\n'
            '<div style="display:flex;flex-wrap:wrap;gap:0.4em 1.5em;justify-content:center;font-size:0.9em">'
            f"{legend}</div>\n</div>")
