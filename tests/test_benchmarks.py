"""`python -m core bench --quick` runs every section on tiny sizes and writes its one table and CSV: the
figures in docs/benchmarks.md come from it, so it must not rot. Its numbers are not asserted; timings belong to the
benchmark, not to tests."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.app_driver import unavailable as app_unavailable
from benchmarks.bench import REDRAW_VIEWS
from benchmarks.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.browser
@pytest.mark.process
def test_the_benchmark_measures_every_section_beside_its_baseline(tmp_path):
    out = tmp_path / "bench.csv"
    env = {**os.environ, "FREEZELAB_HOME": str(tmp_path / "home"), "FREEZELAB_TRAINER": "process"}  # the app's
    done = subprocess.run([sys.executable, "-m", "core", "bench", "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(("device: CPU", "device: GPU")) and "torch" in lines[0]
    assert "| measured | FreezeLab | baseline | FreezeLab ÷ baseline |" in lines
    rows = list(csv.DictReader(out.open()))
    assert {r["section"] for r in rows} == set(SECTIONS)
    for section in SECTIONS:
        assert f"| **{section}**:" in done.stdout
    measured = [r for r in rows if not r["what"].startswith("skipped")]
    for r in measured:
        value = float(r["value"])
        assert value > 0 and math.isfinite(value), r
        if r["baseline"]:  # the ratio is the two figures measured in this run, divided
            assert float(r["ratio"]) == value / float(r["baseline"])
    loop = {r["what"].split(":")[0]: r for r in rows if r["section"] == "loop"}
    assert set(loop) == {"feature extraction, cache on", "fine-tune the top two blocks, cache on",
                         "fine-tune everything, burst loop"}
    scale = [r for r in rows if r["section"] == "scale" and r["what"].startswith("images held")]
    assert [float(r["ratio"]) for r in scale] == [1.0, 0.25, 1.0]  # 32-px images held for a 64-px model
    app = [r for r in rows if r["section"] == "app"]
    if why := app_unavailable():
        assert app[0]["what"] == f"skipped: {why}"
    else:
        assert app[1]["what"].startswith("click to all three runs finished, the slowest of")
        assert [r["what"] for r in app][4:] == ["click to the first step stored", "click to the first point drawn",
                                               "server start to the trainer ready, the demo's runs built (before "
                                               "the click)", "`freezelab app` to the server answering its health "
                                               "check", "health check to the Start page's button drawn",
                                               "click at once to the first step stored",
                                               "click at once to the first point drawn",
                                               "a training step, the Train page showing it live"]
    redraw = [r["what"] for r in rows if r["section"] == "redraw"]
    if why:
        assert redraw == [f"skipped: {why}"]
    else:  # each way of drawing the live view, beside an empty redraw
        assert redraw == list(REDRAW_VIEWS[1:])


def test_a_section_measures_freezelab_beside_its_baseline_in_one_table_and_csv(tmp_path):
    """The loop section, in this process, on tiny sizes: every row's ratio is its value over the baseline
    measured in the same run, and the table and the CSV say the same."""
    from benchmarks import bench

    printed = []
    rows = bench.run(("loop",), bench.Options(quick=True, epochs=1), tmp_path / "bench.csv", echo=printed.append)
    assert rows and {r.section for r in rows} == {"loop"}
    for row in rows:
        assert row.value > 0 and row.baseline > 0 and row.ratio == pytest.approx(row.value / row.baseline)
    table = next(p for p in printed if p.startswith("| measured"))
    assert all(f"| {r.what} |" in table for r in rows)
    with (tmp_path / "bench.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [w["what"] for w in written] == [r.what for r in rows]
    assert [float(w["ratio"]) for w in written] == pytest.approx([r.ratio for r in rows])
