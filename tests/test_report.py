"""The report of a comparison: one HTML file whose every number is the store's, and which a browser opens from
file:// with no network and every section drawn."""

import html
import itertools
import json
import os
import re

import pandas as pd
import pytest
import torch

from core.__main__ import main
from core.execution.jobs import JobManager
from core.insight import report
from core.store.runs import RunStore, config_from_json
from core.store.trained_models import TrainedModels
from core.training.config import demo_comparison


@pytest.fixture
def made(tmp_path):
    """The demo comparison, one epoch each, and its report written to a file."""
    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "reported") for cfg in demo_comparison(epochs=1)]
    manager.start(run_ids, epochs=1)
    manager.wait(120)
    steps = []
    text = report.report_html(manager.store, run_ids, TrainedModels(manager.store, torch.device("cpu")),
                              progress=lambda done, total, what: steps.append(done / total))
    path = tmp_path / "report.html"
    path.write_text(text, encoding="utf-8")
    return manager.store, run_ids, text, path, steps


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_every_number_in_the_report_is_the_stores_and_every_section_is_there(made):
    store, run_ids, text, _, steps = made
    table = store.runs().set_index("id")
    cells = dict(((run, key), value) for run, key, value in
                 re.findall(r'<td data-run="([^"]+)" data-key="(\w+)">([^<]*)</td>', text))
    for run_id in run_ids:
        row = table.loc[run_id]
        assert cells[run_id, "val_acc"] == f"{row.val_acc:.4f}"
        assert cells[run_id, "trainable"] == f"{int(row.trainable):,}"
        assert cells[run_id, "seconds"] == f"{row.seconds:.1f}" and cells[run_id, "epochs"] == "1"
    numbers = json.loads(re.search(r"<script type='application/json' id='freezelab-numbers'>(.*?)</script>",
                                   text).group(1))
    assert numbers == {r: {"val_acc": table.loc[r].val_acc, "trainable": int(table.loc[r].trainable),
                           "seconds": table.loc[r].seconds} for r in run_ids}
    best = table.loc[run_ids].val_acc.idxmax()
    assert f"<b>{html.escape(store.label(best))}</b> leads with {table.loc[best].val_acc:.3f}" in text
    for key in report.SECTIONS:
        assert f"<section id='{key}'>" in text
    configs = [html.unescape(c) for c in re.findall(r"<pre>(.*?)</pre>", text, re.S)]
    assert [config_from_json(c) for c in configs] == [store.config(r) for r in run_ids]  # reproduces each run
    assert "Held equal: data" in text and text.count("sanity") >= 1
    assert len(text.encode()) < 10e6 and steps[-1] == 1.0 and steps == sorted(steps)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_cli_writes_the_report_of_named_runs_or_says_why_not(tmp_path, capsys):
    manager = JobManager(RunStore())
    run_id = manager.create_run(demo_comparison(epochs=1)[0], "one")
    manager.start([run_id], epochs=1)
    manager.wait(120)
    out = tmp_path / "r.html"
    assert main(["report", run_id, "--out", str(out)], prog="freezelab") == 0
    assert "wrote" in capsys.readouterr().out and f'data-run="{run_id}"' in out.read_text()
    assert main(["report", "nosuchrun", "--out", str(tmp_path / "x.html")], prog="freezelab") == 2
    assert "No run nosuchrun" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
    assert main(["report"], prog="freezelab") == 2
    assert "freezelab runs list" in capsys.readouterr().err


@pytest.mark.browser
def test_the_report_opens_offline_from_a_file_in_chromium_with_every_section_drawn(made):
    from benchmarks.app_driver import CHROMIUM, launch_chromium

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - CI installs it
        sync_playwright = None
    if not (CHROMIUM and sync_playwright) and not os.environ.get("CI"):
        pytest.skip("needs Chromium (apt-get install chromium) and playwright (pip)")
    _, run_ids, _, path, _ = made
    asked = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1300, "height": 4000})
        page.route("**/*", lambda route: (asked.append(route.request.url),
                                          route.continue_() if route.request.url.startswith("file:")
                                          else route.abort()))
        page.goto(path.as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg")
        for title in report.SECTIONS.values():
            assert page.get_by_role("heading", name=title, exact=True).is_visible()
        # curves, drift and gradients, a confusion matrix and a map per run, per-class accuracy: all drawn
        assert page.locator(".js-plotly-plot .main-svg").count() >= 3 + 2 * len(run_ids) + 1
        assert page.locator("img[alt='the image explained']").evaluate("i => i.naturalWidth") > 0
        browser.close()
    assert [u for u in asked if not u.startswith("file:")] == []


def test_a_report_of_runs_not_trained_yet_says_so_in_each_section():
    store = RunStore()
    run_id = store.create(demo_comparison()[0], "untrained")
    text = report.report_html(store, [run_id], TrainedModels(store, torch.device("cpu")))
    assert "No run has finished an epoch yet" in text and "No run has a checkpoint yet" in text
    assert f'<td data-run="{run_id}" data-key="val_acc">—</td>' in text


# --- Many runs in one report (issue 45) -----------------------------------------------------------------------------


@pytest.fixture
def twenty_runs():
    """Twenty runs with a trained epoch's curves and block statistics: one run is trained (one epoch on a few
    digits), and twenty of its config carry its rows, recorded into the store as the trainer records them. They
    have no checkpoint: the sections that read one (and explain an image, a minute's work) say so instead."""
    from conftest import small_run
    from core.training.events import BlockStats, EpochEnd

    manager = JobManager(RunStore())
    store = manager.store
    trained = manager.create_run(small_run("fine_tune_top", epochs=1), "trained")
    manager.start([trained], epochs=1)
    manager.wait(120)
    row = store.runs().set_index("id").loc[trained]
    epochs = [EpochEnd(int(c.step), int(c.epoch), c.train_loss, c.train_acc, c.val_loss, c.val_acc, c.lr,
                       c.images_per_sec, c.seconds) for c in store.metrics.curves([trained]).itertuples()]
    stats = store.metrics.block_stats([trained])
    assert epochs and not stats.empty

    def kept(values):
        return tuple(None if pd.isna(v) else float(v) for v in values)

    blocks = [BlockStats(int(step), int(epoch), tuple(g.block), kept(g.drift), kept(g.bn_drift), kept(g.grad_norm))
              for (step, epoch), g in stats.groupby(["step", "epoch"], sort=True)]
    run_ids = []
    for i in range(20):
        run_id = store.create(store.config(trained), f"copy {i + 1}")
        store.metrics.record(run_id, [*epochs, *blocks])
        store.set_params(run_id, int(row.params), int(row.trainable))
        store.set_status(run_id, "finished")
        run_ids.append(run_id)
    return store, run_ids


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_report_of_twenty_runs_draws_every_runs_heat_maps_in_rows(twenty_runs):
    store, run_ids = twenty_runs
    text = report.report_html(store, run_ids, TrainedModels(store, torch.device("cpu")))
    inside = re.search(r"<section id='inside'>(.*?)</section>", text, re.S).group(1)
    assert inside.count('"hovertemplate":"%{y}, epoch %{x}') == 2 * len(run_ids)  # drift, gradients: each run's
    cells = set(re.findall(r'<td data-run="([^"]+)" data-key="val_acc">', text))
    assert cells == set(run_ids) and "id='left-out'" not in text
    from core.insight import charts
    from core.insight import inside as I

    stats = store.metrics.block_stats(run_ids)
    fig = charts.block_heatmaps({r: I.block_matrix(stats, r, "drift") for r in run_ids}, "d")
    domains = sorted({tuple(fig.layout[f"yaxis{i if i > 1 else ''}"].domain) for i in range(1, 21)}, reverse=True)
    assert len(domains) == 20 // charts.HEATMAPS_PER_ROW  # rows of heat maps, one under the other, none overlapping
    assert all(below[1] < above[0] for above, below in itertools.pairwise(domains))


def test_a_report_asked_for_more_runs_than_it_holds_shows_the_first_and_names_the_rest(twenty_runs, monkeypatch):
    store, run_ids = twenty_runs
    monkeypatch.setattr(report, "MAX_RUNS", 5)
    text = report.report_html(store, run_ids, TrainedModels(store, torch.device("cpu")))
    assert set(re.findall(r'<td data-run="([^"]+)" data-key="val_acc">', text)) == set(run_ids[:5])
    said = html.unescape(re.search(r"<p class='note' id='left-out'>(.*?)</p>", text).group(1))
    assert said == (f"This report shows the first 5 of the 20 runs asked for (a report holds at most 5), leaving "
                    f"out '{run_ids[5]}', '{run_ids[6]}', '{run_ids[7]}' and 12 more.")
