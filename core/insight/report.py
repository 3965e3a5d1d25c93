"""A comparison as one self-contained HTML file: it opens offline in any browser, with no server, and every
number in it is read from the run store when it is made.

Sections, in order (SECTIONS): the setup and what the runs held equal; the results (final accuracy, trainable
parameters, training time including the feature cache's build, the winner in a sentence); the curves; where
weights moved and gradients stopped, per block and epoch; confusion matrices and per-class accuracy; one
image's attribution map from each run, with the sanity check's verdict; how to reproduce each run. The figures
are Plotly's, interactive, with plotly.js written into the file once (about 4.7 MB of the file). A report holds at
most MAX_RUNS runs, the first asked for; it says so, naming the others, when more are asked.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import datetime

import pandas as pd

from core.insight import analysis, charts, inside
from core.insight.fairness import held_equal
from core.runtime.version import version
from core.runtime.words import listed
from core.store.checkpoints import CheckpointUnreadable
from core.store.runs import RunStore, config_to_json, run_names

SECTIONS = {"setup": "Setup", "results": "Results", "curves": "Curves", "inside": "Inside the network",
            "confusion": "Confusion matrices", "attribution": "What each model looks at",
            "reproduce": "Reproduce"}
REPORT_METHOD = "integrated_gradients"  # the map shown: pixel-level, and its sanity check is informative

SIDE_BY_SIDE = 340  # px: the width of a figure beside others (confusion matrices, maps)
# Runs in one report: each adds figures (its attribution map is as large as its images) and a sanity check's work,
# so a class's runs make a file a browser still opens, in a time a download button can wait for.
MAX_RUNS = 24
Progress = Callable[[int, int, str], None]


def _md(text: str) -> str:
    """The little Markdown the engine's sentences use (**bold**), as HTML."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _figure(fig, width: int | None = None) -> str:
    """A figure as a <div>, drawn by the plotly.js in the page's head: the page's width, or `width` pixels for
    figures side by side (sized by the grid they sit in, plotly draws them before the grid has its widths)."""
    if width:
        fig.update_layout(width=width)
    return fig.to_html(full_html=False, include_plotlyjs=False, default_width=f"{width}px" if width else "100%",
                       config={"displaylogo": False, "responsive": not width})


def _picture(image) -> str:
    """A uint8 (3, H, W) image as an inline PNG, scaled up without smoothing (pixels stay pixels)."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return (f"<img alt='the image explained' width='200' style='image-rendering:pixelated' "
            f"src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>" + "".join("<tr>" + "".join(rows_) + "</tr>" for rows_ in rows) + "</table>"


def _cell(value: str, key: str = "", run: str = "") -> str:
    """A table cell; a number the test reads back carries its run and what it is."""
    data = f' data-run="{run}" data-key="{key}"' if key else ""
    return f"<td{data}>{html.escape(value)}</td>"


def _plan(cfg) -> str:
    """What trains in each phase, at which learning rate, for how long."""
    return "; then ".join(f"{', '.join(p.plan.trainable) or 'head only'} at lr {p.lr or cfg.start_lr:g}"
                          + (f" for {p.epochs} epochs" if p.epochs else "") for p in cfg.phases)


def _setup(store: RunStore, run_ids: list[str], names: dict[str, str]) -> str:
    configs = [store.config(r) for r in run_ids]
    rows = [[_cell(names[r]), _cell(c.model.backbone), _cell(str(c.model.weights)),
             _cell(f"{c.data.source}, {c.data.per_class or 'all'} per class, {c.data.image_size} px"),
             _cell(_plan(c)), _cell(f"{c.epochs}"), _cell(f"{c.seed}")] for r, c in zip(run_ids, configs, strict=True)]
    said = held_equal(configs) or "One run: nothing is compared."
    return (_table(["run", "backbone", "weights", "data", "what trains", "epochs", "seed"], rows)
            + f"<p>{_md(said)}</p>")


def _results(table) -> str:
    rows = []
    for row in table.itertuples():
        rows.append([_cell(row.name), _cell(row.status),  # before a first epoch: no figures (None or NaN)
                     _cell(f"{row.val_acc:.4f}" if pd.notna(row.val_acc) else "—", "val_acc", row.id),
                     _cell(f"{int(row.trainable):,}", "trainable", row.id),
                     _cell(f"{row.seconds:.1f}" if pd.notna(row.seconds) else "—", "seconds", row.id),
                     _cell(f"{row.epochs:g}" if pd.notna(row.epochs) else "0", "epochs", row.id)])
    words = analysis.results_in_words(table) or "No run has finished an epoch yet."
    return (_table(["run", "status", "final val accuracy", "trainable parameters", "training s", "epochs"], rows)
            + f"<p>{_md(words)}</p><p class='note'>Training time includes building a run's feature cache, "
              "which its first epoch waits for.</p>")


def _curves(curves) -> str:
    if curves.empty:
        return "<p>No run has finished an epoch yet: curves are recorded at each epoch's end.</p>"
    return _figure(charts.curves(curves, "epoch"))


def _inside(store: RunStore, run_ids: list[str], names: dict[str, str]) -> str:
    stats = store.metrics.block_stats(run_ids)
    shown = [r for r in run_ids if (stats.run_id == r).any()]
    if not shown:
        return "<p>No finished epoch yet: these figures are recorded at each epoch's end.</p>"
    policies = {names[r]: store.config(r).phases[0].plan.bn for r in shown}
    drift = charts.block_heatmaps({names[r]: inside.block_matrix(stats, r, "drift") for r in shown},
                                  "weight drift", empty="—")
    grads = charts.block_heatmaps({names[r]: inside.block_matrix(stats, r, "grad_norm") for r in shown},
                                  "gradient norm", log=True, empty="frozen")
    return (f"<h3>Which weights moved</h3><p>How far each block's weights are from where the run started, "
            f"relative to their size (‖w − w₀‖ / ‖w₀‖), at each epoch's end. "
            f"{_md(inside.frozen_blocks_in_words(policies, 'drift'))}</p>{_figure(drift)}"
            f"<h3>Where gradients stop</h3><p>The mean gradient norm reaching each block per epoch (log scale). "
            f"{_md(inside.frozen_blocks_in_words(policies, 'gradient'))}</p>{_figure(grads)}")


def _scored(models, run_ids: list[str]) -> dict[str, tuple]:
    """Each run's (model, data, validation probabilities) at its latest checkpoint; runs without a readable one
    left out (the results table still lists them)."""
    out = {}
    for run_id in run_ids:
        try:
            loaded = models.model_at(run_id)
        except CheckpointUnreadable:
            continue
        if loaded is not None:
            model, data = loaded
            out[run_id] = (model, data, analysis.predict(model, data.val_x))
    return out


def _confusion(scored: dict, names: dict[str, str]) -> str:
    if not scored:
        return "<p>No run has a checkpoint yet (one is written when a burst ends).</p>"
    parts, recall = [], {}
    for run_id, (_, data, probs) in scored.items():
        matrix = analysis.confusion_matrix(data.val_y.numpy(), probs.argmax(1).numpy(), data.num_classes)
        accuracy = matrix.trace() / matrix.sum()
        parts.append(_figure(charts.confusion(matrix, data.classes, f"{names[run_id]} · {accuracy:.1%}"), SIDE_BY_SIDE))
        recall[names[run_id]] = analysis.per_class_accuracy(matrix)
    classes = next(iter(scored.values()))[1].classes
    return ("<p>On the validation set, with each run's latest checkpoint.</p><div class='row'>"
            + "".join(f"<div>{p}</div>" for p in parts) + "</div>" + _figure(charts.per_class(recall, classes)))


def _attribution(scored: dict, names: dict[str, str], image_index: int, progress: Progress | None) -> str:
    from core.insight import attribution as A
    from core.insight import explain as E

    if not scored:
        return "<p>No run has a checkpoint yet.</p>"
    data = next(iter(scored.values()))[1]
    if len({d.config for _, d, _ in scored.values()}) > 1:
        return "<p>These runs were trained on different images: no one image to explain in all of them.</p>"
    image, true = data.val_x[image_index], int(data.val_y[image_index])
    cfg = A.AttributionConfig(REPORT_METHOD)
    images, targets = E.sanity_images(image, true, "true", data)
    parts = []
    for i, (run_id, (model, _, probs)) in enumerate(scored.items()):
        if progress:
            progress(i, len(scored), f"attribution and sanity check for {names[run_id]}")
        check = A.sanity_check(model, images, cfg, targets, mean_colour=E.baseline_colour(cfg, data.train_x))
        predicted = int(probs[image_index].argmax())
        heat = A.normalize(check.original, "absolute")
        parts.append(f"<div><p><b>{html.escape(names[run_id])}</b> predicts "
                     f"<b>{html.escape(data.classes[predicted])}</b> ({float(probs[image_index, predicted]):.0%})"
                     f"{' ✓' if predicted == true else ' ✗'}</p>"
                     + _figure(charts.heat(heat, f"map for class {data.classes[true]}"), SIDE_BY_SIDE)
                     + f"<p class='verdict'>{html.escape(check.verdict)}</p></div>")
    return (f"<p>Validation image {image_index} (true class <b>{html.escape(data.classes[true])}</b>), explained "
            f"for its true class by {A.METHODS[REPORT_METHOD].title}. A map shows what the prediction is sensitive "
            "to, not a reason. Below each map, the sanity check's verdict (cascading randomisation; Adebayo et "
            f"al., 2018, Sanity Checks for Saliency Maps) on this image and {len(images) - 1} more.</p>"
            f"<div class='row'><div><p>The image</p>{_picture(image)}</div>" + "".join(parts) + "</div>")


def _reproduce(store: RunStore, run_ids: list[str], names: dict[str, str]) -> str:
    parts = []
    for run_id in run_ids:
        text = config_to_json(store.config(run_id))
        parts.append(f"<h3>{html.escape(names[run_id])} <small>({run_id})</small></h3>"
                     f"<p>Save the config below as <code>run.json</code>, then: "
                     f"<code>freezelab train --config run.json</code></p>"
                     f"<details><summary>config JSON</summary><pre>{html.escape(text)}</pre></details>")
    return "<p>Each run again from its stored config (on a CPU, the same metrics bit for bit).</p>" + "".join(parts)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1a202c}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #cbd5e0;padding:4px 8px;text-align:left}
.row{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:1em}.row>div{min-width:0}.note{color:#4a5568}
.verdict{font-size:.9em;color:#2d3748}pre{white-space:pre-wrap;background:#f7fafc;padding:.5em}"""


def report_html(store: RunStore, run_ids: list[str], models, image_index: int = 0, title: str = "",
                progress: Progress | None = None) -> str:
    """The report of `run_ids` (in that order; the first MAX_RUNS of them, saying so) as one HTML document.
    `models`: a TrainedModels reading their checkpoints; `image_index`: the validation image the attribution
    section explains."""
    import plotly.offline

    if not run_ids:
        raise ValueError("A report needs at least one run.")
    left_out = run_ids[MAX_RUNS:]
    said = (f"This report shows the first {MAX_RUNS} of the {len(run_ids):,} runs asked for (a report holds at "
            f"most {MAX_RUNS}), leaving out {listed(left_out)}." if left_out else "")
    run_ids = list(run_ids[:MAX_RUNS])
    table = store.runs().set_index("id").loc[run_ids].reset_index()
    names = run_names(table.rename(columns={"id": "run_id"}))
    table["name"] = table.id.map(names)
    steps = 4
    say = progress or (lambda done, total, what: None)
    say(0, steps, "reading the runs' checkpoints")
    scored = _scored(models, run_ids)
    if scored:
        image_index = min(max(image_index, 0), len(next(iter(scored.values()))[1].val_x) - 1)
    say(1, steps, "attribution maps and sanity checks")
    body = {"setup": _setup(store, run_ids, names), "results": _results(table),
            "curves": _curves(store.metrics.curves(run_ids)),
            "inside": _inside(store, run_ids, names), "confusion": _confusion(scored, names),
            "attribution": _attribution(scored, names, image_index,
                                        lambda d, t, what: say(1 + d / max(t, 1) * 2, steps, what)),
            "reproduce": _reproduce(store, run_ids, names)}
    say(3, steps, "writing the file")
    made = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = title or f"FreezeLab: {', '.join(names[r] for r in run_ids)}"
    sections = "".join(f"<section id='{key}'><h2>{SECTIONS[key]}</h2>{body[key]}</section>" for key in SECTIONS)
    numbers = json.dumps({r: {"val_acc": v if pd.notna(v) else None, "trainable": int(t),
                              "seconds": s if pd.notna(s) else None}
                          for r, v, t, s in zip(table.id, table.val_acc, table.trainable, table.seconds,
                                                strict=True)})
    say(steps, steps, "done")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='note'>Made {made} by FreezeLab {html.escape(version())} from "
            f"{len(run_ids)} stored run{'s' if len(run_ids) > 1 else ''}: {', '.join(run_ids)}.</p>"
            + (f"<p class='note' id='left-out'>{html.escape(said)}</p>" if said else "") + f"{sections}"
            f"<script type='application/json' id='freezelab-numbers'>{numbers}</script></body></html>")
