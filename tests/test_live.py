"""The light live view (`ui.live`): the runs' Markdown table and the curves as SVG."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from core.execution.snapshot import Snapshot
from core.insight import charts
from ui import live

SVG = "{http://www.w3.org/2000/svg}"


def _table(md: str) -> list[list[str]]:
    """The cells' text of a Markdown table, as CommonMark with GitHub tables renders them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    rows, row = [], None
    for tok in tokens:
        if tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "inline" and row is not None:
            row.append("".join(c.content for c in tok.children if c.type in ("text", "code_inline")))
    return rows


def test_the_text_bar_fills_in_proportion_and_clips():
    assert live.bar(0.0) == "▱" * 12 and live.bar(1.0) == "▰" * 12
    assert live.bar(0.5, cells=10) == "▰" * 5 + "▱" * 5
    assert live.bar(-1.0) == live.bar(0.0) and live.bar(7.0) == live.bar(1.0)


def test_the_runs_table_has_a_row_per_run_and_a_label_cannot_break_it():
    snaps = [Snapshot("a", label="Top | *two* [blocks]", status="running", step=30, epoch=1.5, burst_done=15,
                      burst_total=60, images_per_sec=12_345, cache_on=False, cache_reason="blocks train"),
             Snapshot("b", label="Feature extraction", status="finished", step=60, epoch=3.0, burst_done=60,
                      burst_total=60, images_per_sec=800, cache_on=True, cache_reason="backbone frozen")]
    header, first, second = _table(live.runs_table(snaps, {"a": 3e-3}))
    assert header == ["Run", "Status", "Learning rate", "Progress", "Images/s", "Feature cache"]
    assert first[0] == "Top | *two* [blocks]"  # the label reads as typed, in one cell: nothing split or styled
    assert first[1:3] == ["running", "0.003"]
    assert first[3] == live.bar(0.25) + " step 30, epoch 1.50"
    assert first[4] == "12k" and first[5] == "⚪ off: blocks train"
    assert second[1:3] == ["finished", "—"]  # no starting rate known for "b"
    assert second[3].startswith(live.bar(1.0)) and second[4] == "800" and second[5] == "🟢 on: backbone frozen"


def test_a_preparing_run_shows_what_it_is_doing_instead_of_step_zero():
    snap = Snapshot("a", label="Fine-tune", status="running", preparing="downloading resnet18.pth",
                    prepare_done=25, prepare_total=100)
    row = _table(live.runs_table([snap], {}))[1]
    assert row[3].startswith(live.bar(0.25)) and "downloading resnet18.pth" in row[3] and "step" not in row[3]


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (0.0, 7.3), (3.0, 1234.0), (0.013, 0.042), (-2.0, 2.0)])
def test_nice_ticks_are_round_evenly_spaced_and_inside_the_range(lo, hi):
    ticks = live.nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 11
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    gaps = np.diff(ticks)
    assert np.allclose(gaps, gaps[0])
    mantissa = gaps[0] / 10 ** np.floor(np.log10(gaps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 5))


def test_log_ticks_are_powers_of_ten_or_finer_when_the_range_is_short():
    assert charts.log_ticks(0.005, 20) == [0.01, 0.1, 1.0, 10.0]
    assert charts.log_ticks(0.3, 2.5) == pytest.approx([0.5, 1.0, 2.0])


def _curves():
    table = pd.DataFrame({"run_id": ["r1", "r1", "r2"], "label": ["Feature extraction"] * 2 + ["From scratch"],
                          "step": [5, 10, 5], "epoch": [1.0, 2.0, 1.0], "seconds": [0.1, 0.2, 0.3],
                          "val_loss": [1.0, 0.5, 2.0], "train_loss": [1.2, 0.6, 2.2], "val_acc": [0.5, 0.7, 0.2],
                          "train_acc": [0.4, 0.6, 0.1]})
    steps = pd.DataFrame({"run_id": ["r1"] * 10 + ["r2"] * 5,
                          "label": ["Feature extraction"] * 10 + ["From scratch"] * 5,
                          "step": list(range(1, 11)) + list(range(1, 6)),
                          "epoch": [s / 5 for s in range(1, 11)] + [s / 5 for s in range(1, 6)],
                          "seconds": np.linspace(0.01, 0.3, 15), "loss": np.linspace(2.3, 0.4, 15)})
    return table, steps


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(markup[markup.index("<svg"):markup.index("</svg>") + len("</svg>")])


def test_the_svg_draws_the_same_lines_as_the_interactive_chart_inside_their_panels():
    table, steps = _curves()
    svg = _svg(live.curves_svg(table, "epoch", steps))
    polylines = svg.findall(f"{SVG}polyline")
    lines = charts.curve_lines(table, "epoch", steps)
    assert len(polylines) == len(lines) == len(charts.curves(table, "epoch", steps).data) == 10
    for poly, line in zip(polylines, lines, strict=True):
        assert poly.get("stroke") == line.color
        points = np.array([p.split(",") for p in poly.get("points").split()], float)
        assert len(points) == len(line.x)
        left, right = live._PANELS[line.panel]
        assert (points[:, 0] >= left).all() and (points[:, 0] <= right).all()  # in its own panel
        assert (points[:, 1] >= 0).all() and (points[:, 1] <= live.HEIGHT).all()
        if line.panel == "x" and len(points) > 1:  # a falling loss draws downwards: larger SVG y
            assert np.all(np.diff(points[:, 1])[np.diff(line.y.astype(float)) < 0] > 0)
    titles = {t.text for t in svg.findall(f"{SVG}text")}
    assert set(charts.CURVES_TITLES.values()) <= titles and "epoch" in titles
    legend = live.curves_svg(table, "epoch", steps).split("</svg>")[1]
    assert "Feature extraction" in legend and "From scratch" in legend


def test_a_zero_loss_has_no_place_on_the_log_scale_and_names_are_escaped():
    table, steps = _curves()
    table = table.assign(label=table.label.replace("From scratch", "<b>scratch</b> & co"),
                         val_loss=[1.0, 0.0, 2.0])
    steps = steps.assign(label=steps.label.replace("From scratch", "<b>scratch</b> & co"))
    markup = live.curves_svg(table, "epoch", steps)
    svg = _svg(markup)  # parses: the name did not break the markup
    val_loss = svg.findall(f"{SVG}polyline")[0]
    assert len(val_loss.get("points").split()) == 1  # the zero is left out, the 1.0 stays
    assert "<b>" not in markup and "&lt;b&gt;scratch&lt;/b&gt; &amp; co" in markup


def test_markdown_passes_the_drawing_through_untouched_whatever_the_names():
    table, steps = _curves()
    name = "*bold* $x^2$ :red[b] _under_ <i>"
    table, steps = table.assign(label=table.label.replace("From scratch", name)), \
        steps.assign(label=steps.label.replace("From scratch", name))
    markup = live.curves_svg(table, "epoch", steps)
    tokens = MarkdownIt("commonmark").parse(markup)
    assert [t.type for t in tokens] == ["html_block"] and tokens[0].content.strip() == markup.strip()
    assert "*bold* $x^2$ :red[b] _under_ &lt;i&gt;" in markup  # HTML-escaped, and not read as Markdown


def test_no_lines_no_svg():
    table, steps = _curves()
    assert live.curves_svg(table.iloc[:0], "epoch", steps.iloc[:0]) == ""


@pytest.mark.parametrize("x", ["step", "seconds"])
def test_every_x_axis_keeps_the_points_in_order(x):
    table, steps = _curves()
    for poly in _svg(live.curves_svg(table, x, steps)).findall(f"{SVG}polyline"):
        xs = [float(p.split(",")[0]) for p in poly.get("points").split()]
        assert xs == sorted(xs)
    assert re.search(rf">{charts.X_TITLES[x]}<", live.curves_svg(table, x, steps))


def test_progress_is_against_the_runs_budget_not_the_burst():
    """A 20-epoch run stopped early, then given a 2-epoch burst: the burst is done, the run is not."""
    snap = Snapshot("a", label="Fine-tune", status="paused", step=70, epoch=7.0, burst_done=20, burst_total=20)
    row = _table(live.runs_table([snap], {}, {"a": 20}))[1]
    assert row[3] == live.bar(7 / 20) + " epoch 7.00 of 20 (step 70)"
    assert not row[3].startswith(live.bar(1.0))


def test_a_cause_shared_by_runs_is_said_once_and_no_hint_waits_under_runs_that_cannot_draw():
    why = "WeightsUnavailable: no ImageNet weights offline"
    snaps = [Snapshot("a", label="Feature extraction", status="failed", message=why),
             Snapshot("b", label="Fine-tune", status="failed", message=why),
             Snapshot("c", label="From scratch", status="running", step=3)]
    assert live.failures(snaps) == [f"Feature extraction, Fine-tune failed: {why}"]
    assert live.curves_hint(snaps)  # one run can still draw
    assert live.curves_hint(snaps[:2]) == ""  # none can: no "Curves appear…" under them
