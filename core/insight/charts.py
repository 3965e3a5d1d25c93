"""Plotly figures the pages and the report draw. Pure functions: data in, figure out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.store.runs import run_names

COLORS = {"trainable": "#2b6cb0", "partial": "#90cdf4", "frozen": "#a0aec0", "dropped": "rgba(160,174,192,0.25)"}
# ...and a pattern each (plotly's bar patterns), so the states read without colour too, in either theme.
PATTERNS = {"trainable": "", "partial": ".", "frozen": "/", "dropped": "x"}
_KEY_GLYPHS = {"trainable": "■", "partial": "▦", "frozen": "▨", "dropped": "☒"}
STRIP_KEY = " ".join(f'<span style="color:{COLORS[s]}">{g}</span> {s}' for s, g in _KEY_GLYPHS.items())  # legend
SEPARATOR = "rgba(128,128,128,0.5)"  # lines between blocks: visible on a light and on a dark background
PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#e53e3e"]


def block_strip(table: pd.DataFrame, all_blocks: list[str], params: dict[str, int]) -> go.Figure:
    """The backbone as a strip of blocks, width growing with parameters (square root, so small blocks
    stay visible), coloured and patterned frozen (hatched), partial (dotted) or trainable (solid); blocks cut off
    by truncation are shown faint and crossed. No background of its own: it sits on the active theme's."""
    rows = table.set_index("block")
    offset, fig = 0.0, go.Figure()
    for name in [*all_blocks, "head"]:
        if name in rows.index:
            row = rows.loc[name]
            count = int(row["params"])
            state = {"all": "trainable", "partial": "partial"}.get(row["requires_grad"], "frozen")
        else:
            count, state = params.get(name, 0), "dropped"
        width = max(math.sqrt(count), 1.0)
        fig.add_trace(go.Bar(
            x=[width], base=[offset], y=[""], orientation="h", marker_color=COLORS[state],
            marker_pattern={"shape": PATTERNS[state], "fillmode": "overlay", "fgcolor": "rgba(255,255,255,0.6)",
                            "solidity": 0.25},  # overlay: the pattern on the colour, not instead of it
            marker_line={"color": SEPARATOR, "width": 2}, text=[name], textposition="inside",
            insidetextfont={"color": "white" if state == "trainable" else "#1a202c"},  # on its own colour, any theme
            insidetextanchor="middle", name=state, legendgroup=state, showlegend=False,
            hovertemplate=f"{name}: {count:,} parameters, {state}<extra></extra>",
        ))
        offset += width
    fig.update_layout(barmode="overlay", height=90, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"visible": False}, yaxis={"visible": False})
    return fig


# One colour per kind of recipe, the same on every page and chart: Okabe and Ito's palette, told apart by
# people with any of the common colour-vision deficiencies (Okabe & Ito, 2002, "Color Universal Design").
RECIPE_COLORS = {"feature_extraction": "#0072B2", "fine_tune_top": "#E69F00", "fine_tune_all": "#009E73",
                 "from_scratch": "#D55E00", "two_phase": "#CC79A7", "truncated": "#56B4E9", "custom": "#7f7f7f"}


def _shade(color: str, k: int) -> str:
    """The k-th run of a kind: its colour, then darker and lighter in turn, so two runs of one kind stay apart."""
    if not k:
        return color
    f = (0.6, 1.35, 0.4, 1.6)[(k - 1) % 4]
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    rgb = [min(255, round(c * f)) if f < 1 else round(c + (255 - c) * (f - 1)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def run_colors(table) -> dict[str, str]:
    """Each run's colour, keyed by run (never by label): its recipe kind's colour (RECIPE_COLORS) where the
    table has a `recipe` column, shaded for a kind's second run and later; else the palette in order. `table`:
    rows with run_id (and recipe), or run ids alone."""
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame({"run_id": list(table)})
    runs = table.drop_duplicates("run_id")
    if "recipe" not in runs:
        return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(runs.run_id)}
    seen: dict[str, int] = {}
    colors = {}
    for row in runs.itertuples():
        kind = row.recipe if row.recipe in RECIPE_COLORS else "custom"
        colors[row.run_id] = _shade(RECIPE_COLORS[kind], seen.get(kind, 0))
        seen[kind] = seen.get(kind, 0) + 1
    return colors


SMOOTHING = 0.3  # weight of each new step in the smoothed per-step loss (an exponential moving average)


def smooth(values: pd.Series, weight: float = SMOOTHING) -> pd.Series:
    """Exponential moving average, started at the first value (no bias towards zero)."""
    return values.ewm(alpha=weight, adjust=True).mean()


MAX_STEP_POINTS = 1000  # per run, in the live chart: a long burst's every step would make each redraw heavier


def thin(n: int, at_most: int = MAX_STEP_POINTS) -> np.ndarray:
    """Positions of at most `at_most` of `n` points, evenly spread, the first and the last always among them."""
    if n <= at_most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, at_most).round().astype(int))


# The two panels of `curves`, laid out by hand: make_subplots and per-trace validation cost ~50 ms a figure
# on a 2-core laptop, and the live chart is rebuilt every second while training shares the CPU.
CURVES_PANELS = {"x": (0.0, 0.46), "x2": (0.54, 1.0)}
CURVES_TITLES = {"x": "Loss (log scale)", "x2": "Accuracy"}


@dataclass(frozen=True)
class Line:
    """One line of the loss and accuracy chart, whoever draws it (Plotly here, SVG in `ui.live`)."""
    run_id: str
    name: str  # its legend entry
    color: str
    panel: str  # "x": loss, "x2": accuracy
    kind: str  # "val": per epoch, solid with markers; "train": per epoch, dashed; "step": per step, smoothed
    x: np.ndarray
    y: np.ndarray
    legend: bool  # the run's one legend entry


def curve_lines(table: pd.DataFrame, x: str = "epoch", steps: pd.DataFrame | None = None) -> list[Line]:
    """What the curves chart draws for every run: per epoch, validation and training loss and accuracy; with
    `steps`, the per-step training loss, smoothed over every step, then thinned to at most MAX_STEP_POINTS."""
    parts = [t[[c for c in ("run_id", "label", "recipe") if c in t]]
             for t in (table, steps) if t is not None and len(t)]
    if not parts:
        return []
    both = pd.concat(parts)
    names, colors = run_names(both), run_colors(both)
    lines = []
    for run_id in dict.fromkeys(both["run_id"]):
        color, label = colors[run_id], names[run_id]
        run = table[table.run_id == run_id]
        for panel, metric in ((("x", "loss"), ("x2", "acc")) if len(run) else ()):
            lines.append(Line(run_id, label, color, panel, "val", run[x].to_numpy(), run[f"val_{metric}"].to_numpy(),
                              legend=panel == "x"))
            lines.append(Line(run_id, f"{label} (train)", color, panel, "train", run[x].to_numpy(),
                              run[f"train_{metric}"].to_numpy(), legend=False))
        if steps is not None:
            s = steps[steps.run_id == run_id].assign(loss=lambda t: smooth(t["loss"]))  # smoothed over every step
            s = s.iloc[thin(len(s))]
            lines.append(Line(run_id, label if run.empty else f"{label} (step, smoothed)", color, "x", "step",
                              s[x].to_numpy(), s["loss"].to_numpy(), legend=run.empty))
    return lines


X_TITLES = {"step": "step", "epoch": "epoch", "seconds": "training seconds"}
READABLE_LABELS = 5  # points labelled on a scatter; more would overlap
TITLE_CHARS = 32  # a title line's characters in a chart a third of the page wide (a pair of runs, a matrix)


def fit_title(text: str, chars: int = TITLE_CHARS) -> str:
    """`text` wrapped at spaces into lines of at most `chars` characters (a word longer than that on its own
    line), joined with Plotly's <br>: a chart's title is never cut off, whatever the run's name."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def _title_margin(title: str, per_line: int = 18) -> int:
    return 22 + per_line * (title.count("<br>") + 1)


ACCURACY_RANGE = [0, 1.02]  # accuracy stops at 1 (the margin keeps a marker at 1 whole)
ACCURACY_TICKS = {"tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1], "range": ACCURACY_RANGE}


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis from `lo` to `hi` (> 0): the powers of ten between them; with fewer than three of
    them, 2 and 5 times them too. Every chart's log axis uses these (Plotly through `log_axis`, the live SVG)."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [10.0 ** d for d in decades if lo <= 10.0 ** d <= hi]
    if len(ticks) < 3:
        ticks = sorted(m * 10.0 ** d for d in decades for m in (1, 2, 5) if lo <= m * 10.0 ** d <= hi)
    return ticks


def log_axis(values) -> dict:
    """A Plotly log axis's ticks for `values`, labelled with full values (0.1, 0.2, 0.5, 1): Plotly's own minor
    ticks would read 0.2 as "2"."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return {}
    ticks = log_ticks(v.min(), v.max()) or [10.0 ** round(math.log10(v.min()))]
    return {"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def _trace(line: Line) -> dict:
    style = {"val": {"mode": "lines+markers", "line": {"color": line.color}},
             "train": {"mode": "lines", "line": {"color": line.color, "dash": "dash", "width": 1}},
             "step": {"mode": "lines+markers" if len(line.x) < 3 else "lines",
                      "line": {"color": line.color, "width": 1}, "opacity": 0.5}}[line.kind]
    return {"type": "scatter", "x": line.x, "y": line.y, "xaxis": line.panel, "yaxis": line.panel.replace("x", "y"),
            "name": line.name, "legendgroup": line.run_id, "showlegend": line.legend, **style}


def curves(table: pd.DataFrame, x: str = "epoch", steps: pd.DataFrame | None = None) -> go.Figure:
    """Loss and accuracy of every run (`curve_lines`): validation solid with markers, training dashed, the
    smoothed per-step training loss a thin line, there from a run's first step on."""
    layout = {
        "height": 380, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "x unified",
        "yaxis": {"type": "log", "anchor": "x"},  # a run's early spike (from scratch at a high rate) stays readable
        "yaxis2": {**ACCURACY_TICKS, "anchor": "x2"},
        "annotations": [{"text": title, "x": sum(CURVES_PANELS[axis]) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                         "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 16}}
                        for axis, title in CURVES_TITLES.items()],
    }
    for axis, domain in CURVES_PANELS.items():
        layout[axis.replace("x", "xaxis")] = {"domain": list(domain), "anchor": axis.replace("x", "y"),
                                               "title": {"text": X_TITLES[x]}}
    lines = curve_lines(table, x, steps)
    layout["yaxis"] |= log_axis(np.concatenate([line.y for line in lines if line.panel == "x"] or [[]]))
    return go.Figure(data=[_trace(line) for line in lines], layout=layout)


def results_bars(table: pd.DataFrame) -> go.Figure:
    """Each run's final validation accuracy as a large bar (rows with run_id, label, val_acc, recipe), its value
    written on it: the answer first, the curves beneath."""
    names, colors = run_names(table), run_colors(table)
    fig = go.Figure(go.Bar(y=[names[r] for r in table.run_id], x=table.val_acc, orientation="h",
                           marker_color=[colors[r] for r in table.run_id], text=[f"{v:.3f}" for v in table.val_acc],
                           textposition="inside", insidetextanchor="end", textfont={"size": 18},
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=90 + 55 * len(table), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis={**ACCURACY_TICKS, "title": "final validation accuracy"},
                      yaxis={"autorange": "reversed", "type": "category"})
    return fig


def tally(counts: dict[str, int]) -> go.Figure:
    """How many predicted each choice (the lesson's class tally), a bar per choice in the order offered."""
    fig = go.Figure(go.Bar(y=list(counts), x=list(counts.values()), orientation="h", marker_color=PALETTE[0],
                           text=[str(n) for n in counts.values()], textposition="auto",
                           hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(height=80 + 45 * len(counts), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "browsers that predicted it", "dtick": 1, "rangemode": "tozero"},
                      yaxis={"autorange": "reversed", "type": "category"})
    return fig


def scatter(table: pd.DataFrame, x: str, x_title: str, log_x: bool = False) -> go.Figure:
    """Final validation accuracy of each run (a row with run_id, label, val_acc) against `x` (wall time,
    trainable parameters, ...)."""
    fig = go.Figure()
    names, colors = run_names(table), run_colors(table)
    labelled = len(table) <= READABLE_LABELS  # beyond that, names pile up: the hover and the legend say them
    for i, row in enumerate(table.itertuples()):
        name = names[row.run_id]
        fig.add_trace(go.Scatter(x=[getattr(row, x)], y=[row.val_acc], mode="markers+text" if labelled else "markers",
                                 text=[name], name=name, textposition="top center" if i % 2 else "bottom center",
                                 cliponaxis=False,
                                 marker={"size": 12, "color": colors[row.run_id]},
                                 showlegend=not labelled, hovertemplate=f"{name}<br>{x_title}: %{{x}}<br>"
                                                                 "accuracy: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=320, margin={"l": 70, "r": 70, "t": 30, "b": 10}, xaxis_title=x_title,
                      yaxis={"title": "final validation accuracy", **ACCURACY_TICKS},
                      xaxis_type="log" if log_x else "linear")
    if log_x:
        fig.update_xaxes(**log_axis(table[x]))
    return fig


def confusion(matrix: np.ndarray, classes: list[str], title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues", showscale=False,
                               text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    title = fit_title(title)
    fig.update_layout(title=title, height=320 + _title_margin(title),
                      margin={"l": 10, "r": 10, "t": _title_margin(title), "b": 10},
                      xaxis={"title": "predicted", "type": "category"},  # class names such as "5" stay names
                      yaxis={"title": "true", "type": "category", "autorange": "reversed"})
    return fig


def class_counts(counts: dict[str, tuple[int, int]]) -> go.Figure:
    names = list(counts)
    fig = go.Figure([go.Bar(x=names, y=[c[0] for c in counts.values()], name="train"),
                     go.Bar(x=names, y=[c[1] for c in counts.values()], name="validation")])
    fig.update_layout(barmode="group", xaxis_type="category", height=280, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title="Images per class", legend={"orientation": "h", "y": 1.1})
    return fig


# --- attributions -----------------------------------------------------------------------

def colorize(values: np.ndarray, signed: bool = False) -> np.ndarray:
    """A normalised map as RGB uint8: [0, 1] on inferno, or [-1, 1] on a diverging red-blue scale. Done
    here rather than by plotly's colour scales, which some browsers render washed out at the low end."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    scaled = (v + 1) / 2 if signed else v
    cmap = colormaps["RdBu_r" if signed else "inferno"]
    return (cmap(np.clip(scaled, 0, 1))[..., :3] * 255).astype(np.uint8)


def heat(values: np.ndarray, title: str, signed: bool = False) -> go.Figure:
    """A normalised map: [0, 1] from black through red to yellow, or [-1, 1] blue-white-red when `signed`."""
    rgb = colorize(values, signed)
    fig = go.Figure(go.Image(z=rgb, customdata=np.asarray(values)[..., None],
                             hovertemplate="x %{x}, y %{y}: %{customdata[0]:.2f}<extra></extra>"))
    return _square(fig, title)


def overlay(image: np.ndarray, values: np.ndarray, title: str, opacity: float = 0.55) -> go.Figure:
    """The map blended over the image (H, W, 3 uint8), weighted by the map so cold areas show the image."""
    weight = opacity * np.clip(np.asarray(values, dtype=np.float64), 0, 1)[..., None]
    blend = (1 - weight) * image.astype(np.float64) + weight * colorize(values).astype(np.float64)
    return _square(go.Figure(go.Image(z=blend.round().astype(np.uint8), hoverinfo="skip")), title)


def _square(fig: go.Figure, title: str) -> go.Figure:
    title = fit_title(title)
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=230 + _title_margin(title, 16),
                      margin={"l": 0, "r": 0, "t": _title_margin(title, 16), "b": 0})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return fig


def probabilities(probs: np.ndarray, classes: list[str], highlight: int) -> go.Figure:
    colors = [PALETTE[0] if i == highlight else "#cbd5e0" for i in range(len(classes))]
    fig = go.Figure(go.Bar(x=probs, y=classes, orientation="h", marker_color=colors,
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=max(140, 22 * len(classes)), margin={"l": 0, "r": 0, "t": 0, "b": 0},
                      xaxis={"range": [0, 1]}, yaxis={"autorange": "reversed", "type": "category"})
    return fig


def similarity_lines(x: list, series: dict[str, list[float]], x_title: str,
                     threshold: float | None = None) -> go.Figure:
    """Similarity to the original map (Spearman, top-k overlap) along randomisation stages or checkpoints."""
    fig = go.Figure([go.Scatter(x=x, y=v, mode="lines+markers", name=k) for k, v in series.items()])
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dot",
                      annotation_text="flagged if still at or above this after full randomisation")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title=x_title,
                      yaxis={"range": [-1, 1.05], "title": "similarity to the original map"},
                      legend={"orientation": "h", "y": -0.3})
    return fig


# --- inside the network -------------------------------------------------------------------

HEATMAPS_PER_ROW = 4  # runs side by side in `block_heatmaps`; more runs take more rows (any number fits)


def block_heatmaps(matrices: dict[str, pd.DataFrame], title: str, log: bool = False,
                   empty: str = "—") -> go.Figure:
    """One blocks × epochs heat map per run, HEATMAPS_PER_ROW to a row, on one colour scale (so the runs compare);
    cells with nothing to measure (NaN) stay blank and read `empty`. `log`: colour by log10 of the value."""
    names = list(matrices)
    cols = min(max(len(names), 1), HEATMAPS_PER_ROW)
    rows = max(math.ceil(len(names) / cols), 1)
    titles = [fit_title(n, 90 // cols) for n in names]
    # In pixels: one row's heat maps (a block a line), and the gap above each later row for its titles and the
    # row's "epoch" axis above it. Plotly takes the gap as a fraction of the whole, at most 1 / (rows - 1).
    row_px = 50 + 32 * max((len(m) for m in matrices.values()), default=1)
    titles_px = 22 * max((t.count("<br>") + 1 for t in titles), default=1)
    gap_px = 50 + titles_px
    area = rows * row_px + (rows - 1) * gap_px
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.06, vertical_spacing=gap_px / area,
                        subplot_titles=titles)
    values = [m.to_numpy(dtype=float) for m in matrices.values()]
    shown = [np.log10(np.where(v > 0, v, np.nan)) if log else v for v in values]
    finite = np.concatenate([s[np.isfinite(s)] for s in shown]) if shown else np.array([])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1e-12
    for i, (matrix, raw, z) in enumerate(zip(matrices.values(), values, shown, strict=True)):
        row, col = divmod(i, cols)
        text = [[empty if not np.isfinite(v) else "0" if v == 0 else f"{v:.2g}" for v in line] for line in raw]
        fig.add_trace(go.Heatmap(z=z, x=[str(c) for c in matrix.columns], y=list(matrix.index), text=text,
                                 texttemplate="%{text}", zmin=lo, zmax=hi, colorscale="Viridis",
                                 showscale=i == len(names) - 1, colorbar={"title": "log10" if log else ""},
                                 hovertemplate="%{y}, epoch %{x}: %{text}<extra></extra>"), row + 1, col + 1)
        fig.update_yaxes(autorange="reversed", type="category", row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="epoch", type="category", row=row + 1, col=col + 1)
    top = 38 + titles_px  # the figure's title, then the first row's titles
    fig.update_layout(title={"text": title, "font": {"size": 14}, "y": 1 - 12 / (top + area + 50),
                             "yanchor": "top"},
                      height=top + area + 50, margin={"l": 10, "r": 10, "t": top, "b": 50})
    return fig


def bars_by_block(values: dict[str, pd.Series], y_title: str, colors: dict[str, str] | None = None) -> go.Figure:
    """One bar per run for each block (x: blocks in order)."""
    fig = go.Figure([go.Bar(x=list(v.index), y=list(v.values), name=name,
                            marker_color=(colors or {}).get(name)) for name, v in values.items()])
    fig.update_layout(barmode="group", height=320, yaxis_title=y_title, xaxis={"type": "category"},
                      margin={"l": 10, "r": 10, "t": 20, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


def per_class(recall: dict[str, np.ndarray], classes: list[str]) -> go.Figure:
    """Per-class accuracy of each run, side by side."""
    fig = bars_by_block({name: pd.Series(values, index=classes) for name, values in recall.items()},
                        "per-class accuracy (validation)")
    fig.update_xaxes(title_text="class")
    fig.update_yaxes(**ACCURACY_TICKS)
    return fig


def probe_lines(before: pd.DataFrame, after: pd.DataFrame) -> go.Figure:
    """Linear-probe accuracy per block, with the starting weights and after training."""
    fig = go.Figure([go.Scatter(x=t["block"], y=t["accuracy"], mode="lines+markers", name=name, line=line)
                     for name, t, line in (("starting weights", before, {"dash": "dash", "width": 4}),
                                           ("after training", after, {"width": 2}))])
    fig.update_layout(height=320, yaxis={**ACCURACY_TICKS, "title": "probe accuracy (validation)"},
                      xaxis={"type": "category", "title": "probe on the output of"},
                      margin={"l": 10, "r": 10, "t": 20, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def pca_pair(coords: dict[str, np.ndarray], labels: np.ndarray, classes: list[str]) -> go.Figure:
    """2-D PCA of penultimate features, one panel per state of the network, points coloured by class."""
    fig = make_subplots(rows=1, cols=len(coords), subplot_titles=list(coords), horizontal_spacing=0.06)
    for col, points in enumerate(coords.values(), 1):
        for c, name in enumerate(classes):
            mine = labels == c
            fig.add_trace(go.Scatter(x=points[mine, 0], y=points[mine, 1], mode="markers", name=name,
                                     legendgroup=name, showlegend=col == 1,
                                     marker={"size": 6, "color": PALETTE[c % len(PALETTE)], "opacity": 0.75}),
                          1, col)
    fig.update_xaxes(title_text="PC 1")
    fig.update_yaxes(title_text="PC 2")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def forgetting_lines(tables: dict[str, pd.DataFrame]) -> go.Figure:
    """Source-task accuracy with the source head over each run's kept steps."""
    fig = go.Figure([go.Scatter(x=t["step"], y=t["accuracy"], mode="lines+markers", name=name,
                                customdata=t["unchanged"],
                                hovertemplate="step %{x}: accuracy %{y:.3f}, %{customdata:.0%} of predictions "
                                              "unchanged<extra></extra>") for name, t in tables.items()])
    fig.update_layout(height=320, yaxis={**ACCURACY_TICKS, "title": "source-task accuracy"},
                      xaxis_title="training step", margin={"l": 10, "r": 10, "t": 20, "b": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def cost_by_depth(table: pd.DataFrame) -> go.Figure:
    """Milliseconds per step, megabytes saved for backward and trainable parameters against the number of
    frozen leading blocks."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=("ms per step (forward, backward, optimizer)", "MB saved for backward",
                                        "trainable parameters"))
    k = table["frozen_blocks"]
    for part, color in (("forward_s", PALETTE[0]), ("backward_s", PALETTE[1]), ("step_s", PALETTE[2])):
        if part == "step_s":
            y = 1000 * (table["step_s"] - table["forward_s"] - table["backward_s"])
            name = "optimizer"
        else:
            y, name = 1000 * table[part], part.removesuffix("_s")
        fig.add_trace(go.Bar(x=k, y=y, name=name, marker_color=color), 1, 1)
    fig.add_trace(go.Bar(x=k, y=table["saved_backbone_bytes"] / 2**20, name="backbone", marker_color=PALETTE[3]), 1, 2)
    fig.add_trace(go.Bar(x=k, y=table["saved_head_bytes"] / 2**20, name="head", marker_color=PALETTE[4]), 1, 2)
    fig.add_trace(go.Scatter(x=k, y=table["trainable_params"], mode="lines+markers", name="trainable",
                             marker_color=PALETTE[5]), 1, 3)
    fig.update_layout(barmode="stack", height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(type="log", row=1, col=3, **log_axis(table["trainable_params"]))
    fig.update_xaxes(title_text="frozen leading blocks", dtick=1)
    return fig


def confusion_difference(a: np.ndarray, b: np.ndarray, classes: list[str], title: str) -> go.Figure:
    """counts(a) − counts(b): red where run a puts more images than run b, blue where fewer."""
    diff = a.astype(int) - b.astype(int)
    bound = max(int(np.abs(diff).max()), 1)
    fig = go.Figure(go.Heatmap(z=diff, x=classes, y=classes, colorscale="RdBu_r", zmin=-bound, zmax=bound,
                               text=diff, texttemplate="%{text}", showscale=False,
                               hovertemplate="true %{y}, predicted %{x}: %{z:+d}<extra></extra>"))
    title = fit_title(title)
    fig.update_layout(title=title, height=320 + _title_margin(title),
                      margin={"l": 10, "r": 10, "t": _title_margin(title), "b": 10},
                      xaxis={"title": "predicted", "type": "category"},
                      yaxis={"title": "true", "type": "category", "autorange": "reversed"})
    return fig


def lr_range(table: pd.DataFrame, suggested: float) -> go.Figure:
    """The range test's loss against learning rate (log scale), raw and smoothed, with the suggestion."""
    fig = go.Figure([go.Scatter(x=table["lr"], y=table["loss"], mode="markers", name="loss", opacity=0.4,
                                marker={"color": PALETTE[0], "size": 5}),
                     go.Scatter(x=table["lr"], y=table["smoothed"], mode="lines", name="smoothed",
                                line={"color": PALETTE[0]})])
    fig.add_vline(x=suggested, line_dash="dot", annotation_text=f"suggested {suggested:.2g}")
    fig.update_layout(height=320, xaxis={"type": "log", "title": "learning rate", **log_axis(table["lr"])},
                      yaxis_title="training loss",
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.3})
    return fig


def at_equal_time(table: pd.DataFrame, seconds: float) -> go.Figure:
    """Each run's validation accuracy after the same training time (analysis.at_equal_time's rows)."""
    names, colors = run_names(table), run_colors(table)
    fig = go.Figure(go.Bar(x=[names[r] for r in table.run_id], y=table.val_acc,
                           marker_color=[colors[r] for r in table.run_id],
                           text=[f"epoch {e:g}" if e == e else "no epoch yet" for e in table.epoch],
                           hovertemplate="%{x}: %{y:.3f} (%{text})<extra></extra>"))
    fig.update_layout(height=300, yaxis={**ACCURACY_TICKS, "title": f"validation accuracy after {seconds:.1f} s"},
                      xaxis={"type": "category"}, margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return fig


def depth_sweep(runs: pd.DataFrame) -> go.Figure:
    """Final validation accuracy against frozen leading blocks (experiments.sweep_runs' rows): every seed
    as a dot, the mean over seeds as a line with its spread (one standard deviation), and the from-scratch
    control as a dashed band across."""
    pretrained, control = runs[runs.depth.notna()], runs[runs.depth.isna()]
    by_depth = pretrained.groupby("depth").val_acc.agg(["mean", "std"]).reset_index()
    fig = go.Figure([
        go.Scatter(x=pretrained.depth, y=pretrained.val_acc, mode="markers", name="one seed", opacity=0.5,
                   marker={"color": PALETTE[0], "size": 7}, customdata=pretrained.seed,
                   hovertemplate="%{x} frozen, seed %{customdata}: %{y:.3f}<extra></extra>"),
        go.Scatter(x=by_depth.depth, y=by_depth["mean"], mode="lines+markers", name="mean over seeds",
                   line={"color": PALETTE[0], "width": 3},
                   error_y={"type": "data", "array": by_depth["std"].fillna(0), "visible": True}),
    ])
    if control.val_acc.notna().any():
        mean, spread = control.val_acc.mean(), control.val_acc.std() if len(control) > 1 else 0.0
        fig.add_hrect(y0=mean - (spread or 0), y1=mean + (spread or 0), fillcolor=PALETTE[1], opacity=0.15,
                      line_width=0)
        fig.add_hline(y=mean, line_dash="dash", line_color=PALETTE[1],
                      annotation_text=f"from scratch {mean:.3f}", annotation_position="bottom right")
    fig.update_layout(height=360, xaxis={"title": "leading blocks frozen (0: fine-tune all · last: feature "
                                                  "extraction)", "dtick": 1},
                      yaxis={"title": "final validation accuracy", **ACCURACY_TICKS},
                      margin={"l": 10, "r": 10, "t": 20, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig
