"""Page tests through Streamlit's AppTest: each page runs with no exception and does what it promises.
Training happens in the app's background worker, so tests wait on the run store between reruns."""

import base64
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import wait_for
from core.data.datasets import DataConfig
from core.runtime import paths
from core.store.runs import RunStore
from core.training.config import DEMO_COMPARISON, demo_comparison
from ui import session

ROOT = Path(__file__).resolve().parents[1]


ENTRY = "streamlit_app.py"
SWEEP_THREADS = ("freezelab-sweep", "freezelab-ray")  # the thread that runs a sweep, and Ray's heartbeat


def _run(page: str, at: AppTest | None = None, **query: str) -> AppTest:
    """Run `page` as the app does, through the entry point's navigation: in a new browser session (opened with
    the URL's `query`) when `at` is None, else in `at`'s session ("" reruns the page it is on)."""
    if at is None:  # not `at or ...`: an AppTest that has not run yet is falsy
        at = AppTest.from_file(str(ROOT / ENTRY), default_timeout=120)
        at.query_params.update(query)
        at.run()
        assert not at.exception, at.exception
        if page == ENTRY:
            return at
    if page and page != ENTRY:
        at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def _statuses() -> set[str]:
    return set(RunStore().runs().status)


def _values(encoded) -> np.ndarray:
    """A plotly trace's array as the browser gets it: a list, or a typed array in base64."""
    if isinstance(encoded, dict):
        return np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
    return np.asarray(encoded)


def _audit(at: AppTest):
    return at.dataframe[0].value.set_index("block")


@pytest.mark.slow
def test_landing_page_runs_the_demo_comparison_and_shows_live_curves():
    at = _run("streamlit_app.py")
    assert at.title[0].value.endswith("FreezeLab")
    assert any("CPU" in c.value or "GPU" in c.value for c in at.caption)
    assert "offline demo" in " ".join(m.value for m in at.markdown)
    assert not any(c.value.startswith("Held equal") for c in at.caption)  # nothing to compare yet
    at.button(key="start.demo").click()
    _run("", at)
    assert at.title[0].value.endswith("FreezeLab")  # the race shows below the button
    if RunStore().runs().status.isin(["queued", "running"]).any():  # (unless it has finished already)
        assert at.button(key="start.demo").disabled  # one demo at a time
    held = next(c.value for c in at.caption if c.value.startswith("Held equal"))  # the UI says what is fair
    assert "epochs (6)" in held and "batch size (20)" in held and "seed (0)" in held
    assert "learning rate (Feature extraction 0.01; Fine-tune the top 2 blocks 0.003; From scratch 0.01)" in held
    wait_for(lambda: _statuses() == {"finished"})
    _run("", at)
    assert not at.button(key="start.demo").disabled
    labels = " ".join(m.value for m in at.markdown)
    for label in ("Feature extraction", "Fine-tune the top 2 blocks", "From scratch"):
        assert label in labels
    charts = [json.loads(c.proto.spec)["data"] for c in at.get("plotly_chart")]
    drawn = [d for d in charts if any(t.get("mode") == "lines+markers" for t in d)]  # not the start page's strip
    assert len(drawn) == 1
    validation = [t for t in drawn[0] if t.get("mode") == "lines+markers" and t.get("xaxis", "x") == "x"]
    assert len(validation) == 3 and all(_values(t["x"]).max() == 6 for t in validation)  # the last epoch drawn
    rows = {line.split("**")[1]: line for line in labels.splitlines() if line.startswith("| **")}  # the runs' table
    assert "`finished`" in rows["Feature extraction"] and "🟢 on" in rows["Feature extraction"]
    assert "⚪ off" in rows["From scratch"]  # nothing frozen, nothing to cache
    assert RunStore().metrics.curves().groupby("label").epoch.max().to_dict() == {
        "Feature extraction": 6, "Fine-tune the top 2 blocks": 6, "From scratch": 6}
    # The answer leads: the winner named with its numbers, the accuracies as bars above the curves.
    best = RunStore().runs().sort_values("val_acc").iloc[-1]
    assert any(m.value.startswith(f"**{best.label}** leads with {best.val_acc:.3f}") for m in at.markdown)
    assert "start.results" in [c.key for c in at.get("plotly_chart")][:2]
    # The Train page shows the same runs; its new-comparison form waits, undrawn, in its collapsed expander.
    _run("app_pages/train.py", at)
    assert at.title[0].value.endswith("Train")
    assert sum("`finished`" in m.value for m in at.markdown) == 1  # the runs' table
    assert "train.variants" not in {w.key for w in at.multiselect}
    at.session_state["train.new_open"] = True
    _run("", at)
    assert at.multiselect(key="train.variants").value == list(DEMO_COMPARISON)


@pytest.mark.process
def test_the_start_page_says_while_the_trainer_starts_and_the_demo_then_trains_in_it(monkeypatch):
    from core.execution import trainer_client as trainer
    from core.execution.trainer_server import hold_lock
    from core.runtime import paths

    monkeypatch.setenv(trainer.MODE_ENV, "process")  # the app's default (conftest picks thread for the others)
    home = paths.home()
    starting = hold_lock(home)  # as a trainer does from its first moment, before it imports torch
    try:
        at = _run(ENTRY)
        assert any("The trainer is starting" in c.value for c in at.caption)
        starting.close()  # "that one" died before it answered: the app starts its own, and the line goes
        wait_for(lambda: not any("The trainer is starting" in c.value for c in _run("", at).caption))
        at.button(key="start.demo").click()
        _run("", at)
        assert any(c.value.startswith("Held equal") for c in at.caption)  # the race shows on the start page
        trained_by = trainer.ask(home, "live_runs")
        assert sorted(trained_by) == sorted(RunStore().runs().id)  # the trainer's states, not this process's
    finally:
        starting.close()
        trainer.shut_down(home)


COLD_START_PAGE = """
import json, sys

class NoTorch:  # a cold server: the trainer is still loading torch, and this page must not wait for it here
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"the Start page imported {name} on a cold server")

sys.meta_path.insert(0, NoTorch())
from streamlit.testing.v1 import AppTest

at = AppTest.from_file("streamlit_app.py", default_timeout=60).run()
print(json.dumps({"exception": [e.value for e in at.exception], "buttons": [b.key for b in at.button],
                  "captions": [c.value for c in at.caption] + [c.value for c in at.sidebar.caption]}))
"""


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_cold_server_draws_the_whole_start_page_without_torch(tmp_path):
    """While the trainer starts, the server leaves the CPU to it: the Start page, its button first, draws with no
    torch in the server, and says what waits (the trainer; the device and block strip come once torch is in)."""
    import subprocess
    import sys

    from core.execution import trainer_client as trainer
    from core.execution.trainer_server import hold_lock

    home = tmp_path / "home"
    starting = hold_lock(home)  # a trainer that is starting: it holds the lock while it imports torch
    try:
        done = subprocess.run([sys.executable, "-c", COLD_START_PAGE], capture_output=True, text=True, timeout=120,
                              cwd=ROOT, env={**os.environ, "FREEZELAB_HOME": str(home), trainer.MODE_ENV: "process"})
    finally:
        starting.close()
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout.splitlines()[-1])
    assert page["exception"] == [] and "start.demo" in page["buttons"]
    assert any("The trainer is starting" in c for c in page["captions"])
    assert any("block strip of this setup shows here in a moment" in c for c in page["captions"])
    assert not any("Training device" in c or "Trains on" in c for c in page["captions"])  # not known yet


def test_data_page_loads_the_demo_and_reacts_to_a_new_choice():
    at = _run("app_pages/data.py")
    assert "100 training and 500 validation images, 5 classes" in at.success[0].value
    at.select_slider(key="data.per_class").set_value(5)
    at.radio(key="data.task").set_value("source")
    at.multiselect(key="data.classes").set_value(["1", "3"])
    at.button(key="data.load").click()
    _run("", at)
    assert "10 training and 200 validation images, 2 classes" in at.success[0].value
    assert len(at.get("plotly_chart")) == 1 and len(at.get("image")) == 2


def test_data_page_explains_a_missing_folder():
    at = _run("app_pages/data.py")
    at.radio(key="data.source").set_value("folder")
    _run("", at)
    at.text_input(key="data.path").input(str(paths.data_dir() / "no/such/folder"))  # shared, yet missing
    _run("", at)
    assert "does not exist" in at.error[0].value
    assert not at.button  # nothing to load until the folder is right


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_layers_page_toggles_blocks_and_the_audit_follows():
    at = _run("app_pages/layers.py")
    table = _audit(at)
    assert set(table.loc[["stem", "layer1", "layer2", "layer3", "layer4"], "requires_grad"]) == {"none"}
    assert at.metric[0].value == "645"  # head only: 128 * 5 + 5

    at.checkbox(key="layers.train.demo.layer4").check()
    _run("", at)
    table = _audit(at)
    assert table.loc["layer4", "requires_grad"] == "all" and table.loc["layer4", "bn_mode"] == "train"
    assert table.loc["layer3", "requires_grad"] == "none" and table.loc["layer3", "bn_mode"] == "eval"
    assert int(at.metric[0].value.replace(",", "")) == 645 + table.loc["layer4", "params"]

    assert at.selectbox(key="layers.preset").value == "custom"  # layer4 alone is no preset
    at.selectbox(key="layers.preset").set_value("truncated")  # applies when chosen
    _run("", at)
    assert list(_audit(at).index) == ["stem", "layer1", "layer2", "head"]

    at.radio(key="layers.bn").set_value("affine")
    at.selectbox(key="layers.truncate").set_value("none")
    _run("", at)
    assert _audit(at).loc["layer1", "requires_grad"] == "partial"

    at.text_input(key="layers.hidden").input("12, x")
    _run("", at)
    assert "positive whole numbers" in at.error[0].value

    at.text_input(key="layers.hidden").input("")
    at.radio(key="layers.weights.demo").set_value("file")
    _run("", at)
    missing = paths.data_dir() / "weights.pt"  # in a shared folder, yet not there
    at.text_input(key="layers.weights_file").input(str(missing))
    _run("", at)
    assert f"No weights file at '{missing}'" in at.error[0].value


@pytest.mark.slow
def test_train_page_starts_a_burst_and_stops_it_then_compare_shows_the_runs():
    at = _run("app_pages/train.py")
    assert "Create runs above" in at.info[0].value
    at.multiselect(key="train.variants").set_value(["current", "feature_extraction"])
    # Long enough to be seen training: uncached, 100 images a class, 500 epochs (cached, 200 epochs of the
    # default 20 a class end within seconds, before the page is looked at).
    at.session_state[session.DATA_KEY] = DataConfig(per_class=100)
    at.checkbox(key="train.cache").uncheck()
    at.number_input(key="train.epochs").set_value(500)
    at.button(key="train.create").click()
    _run("", at)
    store = RunStore()
    current = "Current plan: head only · lr 0.001"  # the default plan, named by what it trains
    assert set(store.runs().label) == {current, "Feature extraction"}
    at.number_input(key="train.amount").set_value(500)
    at.button(key="train.burst").click()
    _run("", at)
    wait_for(lambda: len(store.metrics.curves()) >= 2)  # an epoch of each run: the curves have arrived
    _run("", at)
    drawn = " ".join(m.value for m in at.markdown)  # while they train, the light drawing
    assert not at.get("plotly_chart") and drawn.count("<polyline") >= 2 * 3  # per run: val, train, step loss
    stop = at.button(key="train.stop")
    assert not stop.disabled
    stop.click()
    _run("", at)
    wait_for(lambda: _statuses() == {"stopped"})
    _run("", at)
    assert "`stopped`" in " ".join(m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1  # stopped: the interactive figure
    cmp = _run("app_pages/compare.py", at)  # the same browser session: its own runs
    assert set(cmp.dataframe[0].value.name) == {current, "Feature extraction"}
    assert len(cmp.get("plotly_chart")) >= 3  # curves, two scatter plots, confusion matrices
    assert any("Scoring" in s.value for s in cmp.get("spinner")) or len(cmp.get("plotly_chart")) == 6
    assert "compare.equal_time" in {c.key for c in cmp.get("plotly_chart")}  # equal training time, too
    downloads = [d.proto.label for d in cmp.get("download_button")]
    assert {"Curves as CSV", "Curves as PNG", "Download checkpoint"} <= set(downloads)


def test_compare_page_deletes_runs():
    at = _run("app_pages/compare.py")
    assert "No runs yet" in at.info[0].value
    store = RunStore()
    from core.training.config import RunConfig
    keep, drop = store.create(RunConfig(label="keep"), "g"), store.create(RunConfig(label="drop"), "g")
    _run("", at)
    at.multiselect(key="compare.delete").set_value([drop])
    at.checkbox(key="compare.sure").check()
    _run("", at)
    at.button(key="compare.delete_runs").click()
    _run("", at)
    assert list(store.runs().id) == [keep]


@pytest.fixture(autouse=True)
def _fresh_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.slow
def test_explain_page_maps_each_run_and_runs_the_sanity_check():
    from core.execution.jobs import JobManager

    at = _run("app_pages/explain.py")
    assert "train some on the Train page" in at.info[0].value
    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "explain") for cfg in demo_comparison(epochs=1)[:2]]
    manager.start(run_ids, epochs=1)
    manager.wait(120)

    at = _run("app_pages/explain.py")
    assert at.multiselect(key="explain.runs").value == run_ids
    assert at.radio(key="explain.target").value == "true"  # one question for every run, by default
    at.selectbox(key="explain.outcome").set_value("correct")
    at.selectbox(key="explain.method").set_value("saliency")
    _run("", at)
    at.button(key="explain.compute").click()
    _run("", at)
    text = " ".join(m.value for m in at.markdown)
    assert "Feature extraction" in text and "Fine-tune the top 2 blocks" in text and text.count("✓") == 2
    assert len(at.get("plotly_chart")) == 2 * 3 + 1  # per run: probabilities, map, overlay; then the difference
    assert any("Every map explains the same class" in c.value and "(the true one)" in c.value for c in at.caption)
    pairs = at.dataframe[0].value
    assert list(pairs.columns) == ["run", "other run", "spearman", "top_k_overlap"] and len(pairs) == 1

    at.button(key="explain.sanity").click()
    _run("", at)
    assert len(at.success) + len(at.warning) == 1  # a verdict on whether the map depends on the model
    assert any("this image and 2 more" in c.value for c in at.caption)  # what the verdict rests on


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_compare_makes_its_files_only_when_asked(monkeypatch):
    """A rerun of Compare must not render the PNG nor read checkpoints: the buttons build them on click."""
    import pathlib

    from core.execution.jobs import JobManager
    from core.insight import figures, report
    from core.store import model_export

    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "cmp") for cfg in demo_comparison(epochs=1)[:2]]
    manager.start(run_ids, epochs=1)
    manager.wait(120)
    made = {"png": 0, "checkpoint": 0}
    real_png, real_read = figures.curves_png, pathlib.Path.read_bytes

    def counting_png(*args, **kwargs):
        made["png"] += 1
        return real_png(*args, **kwargs)

    def counting_read(path, *args, **kwargs):
        made["checkpoint"] += path.name == "checkpoint.pt"
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(figures, "curves_png", counting_png)
    monkeypatch.setattr(pathlib.Path, "read_bytes", counting_read)
    at = _run("app_pages/compare.py")
    at.radio(key="compare.x").set_value("step")
    _run("", at)
    assert {d.proto.label for d in at.get("download_button")} >= {"Curves as PNG", "Download checkpoint"}
    exported = {"zips": 0, "reports": 0}
    monkeypatch.setattr(model_export, "export_zip", lambda *a, **k: exported.update(zips=exported["zips"] + 1))
    monkeypatch.setattr(report, "report_html", lambda *a, **k: exported.update(reports=exported["reports"] + 1))
    at.selectbox(key="compare.model_format").set_value(model_export.ModelFormat.TORCH_EXPORT)
    _run("", at)
    assert {"Download model", "Report (one HTML file)"} <= {d.proto.label for d in at.get("download_button")}
    assert made == {"png": 0, "checkpoint": 0} and exported == {"zips": 0, "reports": 0}


def test_layers_previews_the_cache_the_runs_will_get():
    at = _run("app_pages/layers.py")
    assert at.metric[2].value.startswith("on · 5 of 5")  # feature extraction: the whole backbone
    at.session_state["setup.cache"] = False  # the Train page's switch, as runs were last created
    _run("", at)
    assert at.metric[2].value == "off"
    assert any("switched off for this run" in c.value for c in at.caption)


@pytest.mark.slow
def test_inside_page_with_no_runs_still_measures_cost():
    at = _run("app_pages/inside.py")
    assert "No runs yet" in at.info[0].value
    at.button(key="inside.cost").click()
    _run("", at)
    table = at.dataframe[0].value
    assert list(table.frozen_blocks) == [0, 1, 2, 3, 4, 5] and table.saved_backbone_bytes.iloc[-1] == 0
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.slow
def test_inside_page_shows_what_changed_in_each_run():
    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "inside") for cfg in demo_comparison(epochs=2)[:2]]  # frozen, top two
    manager.start(run_ids, epochs=2)
    manager.wait(120)
    at = _run("app_pages/inside.py")
    assert at.multiselect(key="inside.runs").value == run_ids
    assert len(at.get("plotly_chart")) == 3 + 4  # drift, gradients, BatchNorm; two matrices, difference, per class
    drift = at.get("plotly_chart")[0].proto.spec
    assert "Feature extraction" in drift and "Fine-tune the top 2 blocks" in drift
    assert at.success[0].value.startswith("No silent mistake")
    for key in ("inside.probe", "inside.pca", "inside.forget"):
        at.button(key=key).click()
        _run("", at)
    assert len(at.get("plotly_chart")) == 7 + 3
    assert any("100% of predictions unchanged" in c.value for c in at.caption)  # feature extraction forgets nothing


@pytest.mark.slow
def test_inside_compares_the_three_batchnorm_policies_in_one_click():
    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    run_id = manager.create_run(demo_comparison(epochs=1)[0], "seed")
    manager.start([run_id], epochs=1)
    manager.wait(120)
    at = _run("app_pages/inside.py")
    at.button(key="inside.bn_compare").click()
    _run("", at)
    assert at.title[0].value.endswith("Inside")  # it stays where it was asked for
    store = RunStore()
    group = store.group(None)
    made = [store.config(r) for r in group]
    assert [c.phases[0].plan.bn for c in made] == ["frozen", "stats", "affine"]
    assert len({(c.data, c.model, c.optim, c.epochs, c.seed, c.phases[0].plan.trainable) for c in made}) == 1
    assert at.multiselect(key="inside.runs").value == group  # the maps will show them
    assert any(s.value == "The three BatchNorm policies, training" for s in at.subheader)
    wait_for(lambda: _statuses() == {"finished"})
    _run("", at)
    drift = at.get("plotly_chart")[0].proto.spec
    assert all(f"BatchNorm {policy}" in drift for policy in ("frozen", "stats", "affine"))
    # Two runs, class by class: any two, picked.
    assert at.selectbox(key="inside.pair_a").value == group[0]
    at.selectbox(key="inside.pair_a").set_value(group[2])
    _run("", at)
    assert group[2] not in at.selectbox(key="inside.pair_b").options


PAGES = ["streamlit_app.py", "app_pages/data.py", "app_pages/layers.py", "app_pages/train.py", "app_pages/inside.py",
         "app_pages/compare.py", "app_pages/explain.py", "app_pages/experiments.py"]


@pytest.mark.slow
def test_every_page_explains_a_damaged_run_store_and_offers_a_fresh_one(isolated_homes):
    home = isolated_homes / "freezelab"
    home.mkdir(parents=True, exist_ok=True)
    damaged = home / "runs.sqlite"
    damaged.write_bytes(b"not a database at all" * 100)
    for page in PAGES:
        at = _run(page)
        assert str(damaged) in at.error[0].value and "damaged" in at.error[0].value, page
    assert damaged.read_bytes() == b"not a database at all" * 100
    at.button(key="store.fresh").click()
    _run("", at)
    assert not at.error and list(home.glob("runs.damaged-*.sqlite"))
    assert RunStore().runs().empty


@pytest.mark.slow
def test_pages_survive_a_run_with_a_damaged_config_and_a_damaged_zoo_manifest(isolated_homes):
    import sqlite3

    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    good, bad = (manager.create_run(cfg, "mixed") for cfg in demo_comparison(epochs=1)[:2])
    manager.start([good, bad], epochs=1)
    manager.wait(120)
    with sqlite3.connect(RunStore().path) as con:
        con.execute("UPDATE runs SET config = 'not json' WHERE id = ?", (bad,))
    entry = isolated_homes / "freezelab" / "zoo" / "broken-entry"
    entry.mkdir(parents=True)
    (entry / "model.pt").write_bytes(b"")
    (entry / "manifest.json").write_text("{ not json")
    for page in PAGES:
        _run(page)  # no exception on any page
    at = _run("app_pages/layers.py")
    assert any("broken-entry is left out" in c.value for c in at.caption)
    at = _run("app_pages/compare.py")
    assert any("config cannot be read" in c.value for c in at.caption)
    at = _run("app_pages/explain.py")
    assert bad not in at.multiselect(key="explain.runs").options
    manager = JobManager(RunStore())
    manager.start([bad], steps=1)
    manager.wait(60)
    status, message = manager.store.status(bad)
    assert status == "failed" and "cannot be read" in message


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_train_offers_a_restart_when_a_checkpoint_is_gone_and_keeps_history_until_asked():
    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "lost") for cfg in demo_comparison(epochs=2)[:1]]
    manager.start(run_ids, epochs=1)
    manager.wait(120)
    RunStore().checkpoints.path(run_ids[0]).unlink()
    at = _run("app_pages/train.py")
    at.button(key="train.burst").click()
    _run("", at)
    wait_for(lambda: _statuses() == {"stopped"})
    _run("", at)
    assert "checkpoint is missing" in at.warning[0].value
    assert RunStore().metrics.recorded_steps(run_ids[0]) == 5
    at.button(key=f"train.restart.{run_ids[0]}").click()
    _run("", at)
    wait_for(lambda: _statuses() == {"paused"})
    assert RunStore().metrics.step_log().step.tolist() == [1, 2, 3, 4, 5]  # trained again from step 0


@pytest.mark.slow
def test_the_apps_worker_trains_exactly_what_headless_training_does(tmp_path):
    """The demo comparison clicked in the app against the same runs trained headless, at the app's torch
    thread count (CPU kernels sum in an order that depends on it): the same metrics, bit for bit."""

    from core.execution.jobs import JobManager

    at = _run("streamlit_app.py")
    at.button(key="start.demo").click()
    _run("", at)
    wait_for(lambda: _statuses() == {"finished"})
    app = RunStore().metrics.curves()
    headless = JobManager(RunStore(tmp_path / "headless"), threads=max(1, (os.cpu_count() or 1) - 1))  # the app's
    run_ids = [headless.create_run(cfg) for cfg in demo_comparison()]
    headless.start(run_ids, epochs=6)
    headless.wait(120)
    columns = ["label", "step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    ours = headless.store.metrics.curves(run_ids)[columns].sort_values(["label", "step"], ignore_index=True)
    assert len(ours) == 18 and ours.equals(app[columns].sort_values(["label", "step"], ignore_index=True))


def _experiments() -> AppTest:
    return _run("app_pages/experiments.py")


@pytest.mark.slow
def test_experiments_page_runs_a_depth_sweep_and_tabulates_it_over_seeds():
    at = _experiments()
    at.number_input(key="experiments.sweep.epochs").set_value(1)
    at.number_input(key="experiments.sweep.seeds").set_value(2)
    at.button(key="experiments.sweep.run").click()
    _run("", at)
    wait_for(lambda: _statuses() == {"finished"})
    _run("", at)
    store = RunStore()
    assert len(store.runs()) == 14  # depths 0..5 and the control, two seeds each
    table = at.dataframe[0].value
    assert list(table.setting)[-1] == "from scratch" and (table.runs == 2).all() and table.spread.notna().all()
    assert at.get("plotly_chart")  # accuracy against depth
    at.button(key="experiments.sweep.show").click()
    _run("", at)
    assert at.title[0].value.endswith("Train")


@pytest.mark.parametrize(("engine", "stop_on"), [
    ("job manager (the app's trainer)", "experiments"),
    pytest.param("Ray Tune (local)", "experiments", marks=pytest.mark.ray),
    pytest.param("Ray Tune (local)", "train", marks=pytest.mark.ray),
])
@pytest.mark.slow
def test_a_sweep_stops_from_the_experiments_or_the_train_page_and_every_run_resumes(engine, stop_on):
    if engine.startswith("Ray"):
        pytest.importorskip("ray.tune", reason="Ray Tune is an optional install (requirements-extras.txt); the "
                                               "page offers its engine only with it")
    at = _experiments()
    at.number_input(key="experiments.sweep.epochs").set_value(200)  # far longer than the test waits
    at.number_input(key="experiments.sweep.seeds").set_value(1)
    at.radio(key="experiments.sweep.engine").set_value(engine)
    at.button(key="experiments.sweep.run").click()
    _run("", at)
    wait_for(lambda: not RunStore().metrics.curves().empty, "no epoch of the sweep was stored")
    _run("", at)
    if stop_on == "train":  # the sweep's curves, where every comparison's Stop is
        at.button(key="experiments.sweep.show").click()
        _run("", at)
        assert at.title[0].value.endswith("Train")
        _run("app_pages/train.py", at)  # AppTest's next run would go back to the page it was told, not follow
        assert at.button(key="train.burst").disabled
    if engine.startswith("Ray") and stop_on == "experiments":  # a run training on Ray cannot be deleted meanwhile
        _run("app_pages/compare.py", at)
        at.multiselect(key="compare.delete").set_value([RunStore().runs().id.iloc[0]])
        at.checkbox(key="compare.sure").check()
        _run("", at)
        assert at.button(key="compare.delete_runs").disabled
        assert any("Stop a run before deleting it" in w.value for w in at.warning)
        _run("app_pages/experiments.py", at)
    stop = f"{stop_on}.{'sweep.' if stop_on == 'experiments' else ''}stop"
    assert not at.button(key=stop).disabled
    at.button(key=stop).click()
    _run("", at)
    wait_for(lambda: not _statuses() & {"queued", "running"}, "the sweep did not stop")
    wait_for(lambda: not any(t.name.startswith(SWEEP_THREADS) for t in threading.enumerate()))
    _run("", at)
    assert at.button(key=stop).disabled  # nothing left to stop
    runs = RunStore().runs()
    assert len(runs) == 7 and set(runs.status) == {"stopped"}  # depths 0..5 and the control, all resumable
    assert 0 < runs.epochs.sum() < 7 * 200
    if stop_on == "experiments":  # the sweep's chart says its settings have not had the same budget yet
        assert any("have not finished" in c.value for c in at.caption)


@pytest.mark.ray
def test_a_ray_sweep_waiting_for_another_says_so_and_stops_at_once():
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional install (requirements-extras.txt); the page "
                                           "offers its engine only with it")
    from core.execution import ray_engine

    assert ray_engine._TURN.acquire(timeout=5)  # another session's sweep holds this process's Ray
    try:
        at = _experiments()
        at.number_input(key="experiments.sweep.seeds").set_value(1)
        at.radio(key="experiments.sweep.engine").set_value("Ray Tune (local)")
        at.button(key="experiments.sweep.run").click()
        _run("", at)
        wait_for(lambda: {RunStore().status(r) for r in RunStore().runs().id} == {("running", ray_engine.QUEUED)},
                 "the sweep did not queue")
        _run("", at)
        (progress,) = at.get("progress")
        assert "0 of 7 runs ended; queued: it begins when the Ray sweep before it ends" in str(progress.proto)
        at.button(key="experiments.sweep.stop").click()
        _run("", at)
        wait_for(lambda: not any(t.name.startswith(SWEEP_THREADS) for t in threading.enumerate()),
                 "a queued sweep did not end at once when stopped")
        assert set(RunStore().runs().status) == {"stopped"}
    finally:
        ray_engine._TURN.release()


@pytest.mark.slow
def test_experiments_page_pretrains_on_one_task_saves_to_the_zoo_and_transfers_to_the_other():
    from core.models import zoo

    at = _experiments()
    at.number_input(key="experiments.pretrain.epochs").set_value(2)
    at.button(key="experiments.pretrain.run").click()
    _run("", at)
    assert at.title[0].value.endswith("Train")  # its curves grow there
    wait_for(lambda: _statuses() == {"finished"})
    at = _run("app_pages/experiments.py", at)  # back, in the same session: its pretrained run is listed
    at.text_input(key="experiments.pretrain.name").set_value("digits-a")
    at.button(key="experiments.pretrain.save").click()
    _run("", at)
    assert any("Saved" in s.value for s in at.success)
    assert zoo.read_manifest("digits-a")["classes"] == ["0", "1", "2", "3", "4"]
    assert at.selectbox(key="experiments.transfer.entry").value == "digits-a"
    at.number_input(key="experiments.transfer.epochs").set_value(1)
    at.button(key="experiments.transfer.run").click()
    _run("", at)
    wait_for(lambda: _statuses() == {"finished"})
    runs = RunStore().runs()
    transfer = runs[runs.group.str.startswith("transfer")]
    assert sorted(transfer.weights) == ["none", "zoo:digits-a", "zoo:digits-a"]


@pytest.mark.slow
def test_experiments_page_trains_a_report_recipe_and_sets_it_beside_the_report():
    at = _experiments()
    at.selectbox(key="experiments.recipe").set_value("vgg16_dense128")
    at.radio(key="experiments.recipe.data").set_value("the current data (Data page)")
    at.number_input(key="experiments.recipe.per_class").set_value(2)
    at.radio(key="experiments.recipe.weights").set_value("none")
    _run("", at)
    at.button(key="experiments.recipe.run").click()
    _run("", at)
    wait_for(lambda: "running" not in _statuses())
    at = _run("app_pages/experiments.py", at)
    at.selectbox(key="experiments.recipe").set_value("vgg16_dense128")
    _run("", at)
    beside = at.dataframe[-1].value
    assert beside.run.tolist() == ["VGG16 frozen, Flatten + Dense 128"] and beside["your epochs"].iloc[0] >= 1


TITLES = {f"app_pages/{name.lower()}.py": name
          for name in ("Data", "Layers", "Train", "Inside", "Compare", "Explain", "Experiments")}


def test_the_navigation_renders_every_page_with_the_setup_and_device_in_the_sidebar():
    at = _run(ENTRY)
    assert at.title[0].value.endswith("FreezeLab")
    for page, title in TITLES.items():
        _run(page, at)
        assert at.title[0].value.endswith(title), page
        sidebar = " ".join(m.value for m in at.sidebar.markdown)
        assert "Backbone: demo" in sidebar and "Trainable: none (feature extraction)" in sidebar, page
        assert "Data: offline demo (digits 5-9)" in sidebar, page
        assert any(c.value.startswith("Trains on CPU") or c.value.startswith("Trains on GPU")
                   for c in at.sidebar.caption), page
        assert at.toggle(key="runs.show_all").value is False


def test_a_shared_link_opens_the_setup_it_encodes_and_the_url_follows_changes():
    at = _run("app_pages/layers.py", backbone="resnet18", weights="none", train="layer3,layer4", bn="stats", size="32")
    assert at.selectbox(key="layers.backbone").value == "resnet18"
    assert at.radio(key="layers.weights.resnet18").value == "none"
    assert [at.checkbox(key=f"layers.train.resnet18.{b}").value for b in ("stem", "layer1", "layer2", "layer3",
                                                                             "layer4")] == [False] * 3 + [True] * 2
    assert at.radio(key="layers.bn").value == "stats"
    audit = _audit(at)
    assert audit.loc["layer4", "requires_grad"] == "all" and audit.loc["layer2", "requires_grad"] == "none"
    assert "Trainable: layer3, layer4" in " ".join(m.value for m in at.sidebar.markdown)
    at.checkbox(key="layers.train.resnet18.layer3").uncheck()
    _run("", at)
    assert at.query_params["train"] == "layer4" and at.query_params["backbone"] == "resnet18"
    assert at.query_params["size"] == "32" and "bn" in at.query_params


def test_a_link_with_a_bad_value_says_so_and_opens_the_rest():
    at = _run(ENTRY, backbone="resnet999", bn="affine")
    said = " ".join(t.value for t in at.toast)
    assert "backbone='resnet999' was not used" in said
    assert "BatchNorm: affine" in " ".join(m.value for m in at.sidebar.markdown)


def _listed(at: AppTest) -> set[str]:
    """Run ids the Compare page offers (to compare, export and delete)."""
    return {option.rsplit(" · ", 1)[1] for option in at.multiselect(key="compare.selected").options}


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_each_browser_session_sees_its_own_runs_unless_it_asks_for_everyones():
    from core.execution.jobs import JobManager
    from core.training.config import RunConfig

    alice = _run("app_pages/train.py")
    alice.multiselect(key="train.variants").set_value(["feature_extraction"])
    alice.button(key="train.create").click()
    _run("", alice)
    made = set(RunStore().runs().id)
    assert len(made) == 1

    bob = _run("app_pages/compare.py")  # another browser: none of alice's runs by default
    assert "No runs yet" in bob.info[0].value
    _run("app_pages/train.py", bob)
    assert "Create runs above" in bob.info[0].value  # nor alice's comparison on the Train page
    bob.toggle(key="runs.show_all").set_value(True)
    _run("app_pages/compare.py", bob)
    assert _listed(bob) == made  # the switch shows everyone's...
    assert bob.multiselect(key="compare.delete").options == []  # ...but bob deletes only bob's
    _run("app_pages/train.py", bob)  # ...and neither trains nor stops alice's
    assert bob.button(key="train.burst").disabled and bob.button(key="train.stop").disabled
    assert any("belong to another browser" in c.value for c in bob.caption)

    _run("app_pages/compare.py", alice)
    assert _listed(alice) == made
    cli = JobManager(RunStore()).create_run(RunConfig(label="from the command line"))  # belongs to no session
    _run("", alice)
    assert _listed(alice) == made | {cli}
    _run("app_pages/compare.py", bob)
    bob.multiselect(key="compare.selected").set_value(sorted(made))  # alice's run, seen through the switch
    _run("", bob)
    bob.toggle(key="runs.show_all").set_value(False)
    _run("", bob)
    assert _listed(bob) == {cli}  # bob can delete only what bob sees
    assert bob.multiselect(key="compare.selected").value == [cli]  # alice's run out of view: the default again
    bob.multiselect(key="compare.selected").set_value([])  # an empty pick stays empty, and says what to do
    _run("", bob)
    assert bob.multiselect(key="compare.selected").value == []
    assert "Pick one or more runs" in bob.info[0].value


@pytest.mark.slow
def test_the_train_page_shows_weights_downloading_instead_of_step_0(monkeypatch, no_network):
    from conftest import SlowLine

    line = SlowLine(monkeypatch, 3 << 20, hold=True)  # held after its first megabyte until the page is looked at
    at = _run("app_pages/train.py", backbone="resnet18", size="32")
    at.multiselect(key="train.variants").set_value(["feature_extraction"])
    at.button(key="train.create").click()
    _run("", at)
    at.button(key="train.burst").click()
    _run("", at)
    try:
        shown = ""
        end = time.monotonic() + 60
        while "downloading resnet18-" not in shown:
            assert time.monotonic() < end, shown
            time.sleep(0.2)
            _run("", at)
            shown = " ".join(m.value for m in at.markdown)
        assert "1.0 of 3.1 MB" in shown
    finally:
        line.release.set()
    wait_for(lambda: _statuses() == {"failed"})
    _run("", at)
    assert "checksum mismatch" in at.error[0].value


def test_the_train_form_keeps_what_the_user_set_across_a_visit_to_another_page():
    at = _run("app_pages/train.py")
    at.multiselect(key="train.variants").set_value(["fine_tune_top"])
    at.number_input(key="train.epochs").set_value(9)
    at.number_input(key="train.seed").set_value(3)
    at.button(key="train.create").click()  # the form's values are the session's once submitted
    _run("", at)
    _run("app_pages/data.py", at)
    _run("app_pages/train.py", at)
    at.session_state["train.new_open"] = True  # the user opens "New comparison" again
    _run("", at)
    assert at.multiselect(key="train.variants").value == ["fine_tune_top"]
    assert at.number_input(key="train.epochs").value == 9 and at.number_input(key="train.seed").value == 3
    assert not at.warning  # no notice about a value set twice


def test_layers_says_what_frozen_means_under_each_batchnorm_policy_and_warns_of_frozen_random_weights():
    at = _run("app_pages/layers.py")
    said = " ".join(c.value for c in at.caption)
    assert "BatchNorm in eval mode" in said and "policy `frozen`" in said
    assert not at.warning
    at.radio(key="layers.bn").set_value("stats")
    _run("", at)
    said = " ".join(c.value for c in at.caption)
    assert "BatchNorm in train mode" in said and "eval mode" not in said  # what the audit then shows
    assert set(_audit(at).loc[["layer1", "layer2"], "bn_mode"]) == {"train"}
    at.radio(key="layers.weights.demo").set_value("none")
    _run("", at)
    assert "random" in at.warning[0].value  # frozen random weights are random features


def test_a_shared_link_that_ticks_blocks_opens_layers_with_the_matching_preset_named():
    at = _run("app_pages/layers.py", train="layer3,layer4")
    blocks = ("stem", "layer1", "layer2", "layer3", "layer4")
    ticked = [b for b in blocks if at.checkbox(key=f"layers.train.demo.{b}").value]
    assert ticked == ["layer3", "layer4"]
    assert at.selectbox(key="layers.preset").value == "fine_tune_top"  # not "Feature extraction"
    at.checkbox(key="layers.train.demo.layer2").check()
    _run("", at)
    assert at.selectbox(key="layers.preset").value == "custom"


def test_the_train_pages_presets_follow_the_batchnorm_policy_set_on_layers_and_say_so():
    from core.freezing import FreezePlan

    at = AppTest.from_file(str(ROOT / ENTRY), default_timeout=120)
    at.session_state[session.PLAN_KEY] = FreezePlan(bn="stats")
    at.run()
    _run("app_pages/train.py", at)
    assert any("BatchNorm in frozen blocks (`stats`" in c.value for c in at.caption)
    at.multiselect(key="train.variants").set_value(["feature_extraction", "fine_tune_top"])
    at.button(key="train.create").click()
    _run("", at)
    store = RunStore()
    assert {p.plan.bn for r in store.runs().id for p in store.config(r).phases} == {"stats"}


def test_the_recipes_open_on_one_that_runs_here_and_say_what_each_would_download():
    at = _experiments()
    recipe = at.selectbox(key="experiments.recipe")
    from core.experiments.report_recipes import RECIPES

    assert RECIPES[recipe.value].available  # not one this machine cannot build
    options = recipe.options  # as shown: each says what it needs
    assert all("needs" in o or "runs offline" in o for o in options)
    assert any("CIFAR-10 (170 MB)" in o for o in options)  # nothing is on this fresh machine
    # Offline (no CIFAR-10, no ImageNet weights here): the click as it stands needs no download.
    assert at.radio(key="experiments.recipe.data").value == "the current data (Data page)"
    assert at.radio(key="experiments.recipe.weights").value == "none"
    assert any(c.value == "This run needs no download." for c in at.caption)
    at.radio(key="experiments.recipe.weights").set_value("pretrained")
    _run("", at)
    assert any(c.value.startswith("This run first downloads") and "ImageNet weights" in c.value for c in at.caption)


@pytest.mark.slow
def test_finished_runs_carry_on_from_the_train_page_instead_of_a_dead_end():
    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "demo") for cfg in demo_comparison(epochs=1)[:2]]
    manager.start(run_ids, epochs=1)
    manager.wait(120)
    at = _run("app_pages/train.py")
    assert "Carry the 2 finished runs on for 2 more epochs" in at.button(key="train.lengthen").label
    at.button(key="train.lengthen").click()
    _run("", at)
    wait_for(lambda: _statuses() == {"finished"} and all(RunStore().config(r).epochs == 3 for r in run_ids))
    assert list(RunStore().runs().epochs) == [3, 3]


@pytest.mark.slow
def test_compare_opens_a_sweep_as_one_mean_line_per_setting():
    from core.execution.jobs import JobManager
    from core.experiments import studies
    from core.models.backbones import ModelConfig
    from core.training.config import DEMO_OPTIM

    manager = JobManager(RunStore())
    configs = studies.depth_sweep(DataConfig(per_class=5, val_per_class=5), ModelConfig(), DEMO_OPTIM, 1, seeds=2)
    run_ids = [manager.create_run(cfg, "sweep-test") for cfg in configs]
    manager.start(run_ids, epochs=1)
    manager.wait(300)
    at = _run("app_pages/compare.py")
    assert at.multiselect(key="compare.selected").value == run_ids  # the whole sweep...
    assert at.toggle(key="compare.mean").value
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    legend = [t["name"] for t in curves if t.get("showlegend")]
    assert len(legend) == 7 and all(name.endswith("(mean of 2)") for name in legend)  # ...as seven lines


def test_a_link_with_values_the_data_page_does_not_offer_opens_it_and_says_so():
    at = _run(ENTRY, size="33", per_class="7", path="y" * 5000, data="folder", backbone="resnet18")
    said = " ".join(t.value for t in at.toast)
    assert "size='33'" in said and "per_class='7'" in said and "4095 characters" in said
    _run("app_pages/data.py", at)  # asserts no exception: what the link set, the page can show
    assert at.select_slider(key="data.image_size").value == 28


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_backbone_that_needs_more_than_224_px_gets_its_size_from_a_link_and_on_the_data_page():
    at = _run(ENTRY, backbone="torchvision:swin_v2_t", size="256")  # Swin V2 takes 256 px at least
    assert not at.toast, [t.value for t in at.toast]
    _run("app_pages/data.py", at)
    slider = at.select_slider(key="data.image_size")
    assert slider.value == 256 and slider.options[-2:] == ["224", "256"]  # options as the browser gets them
    at = _run(ENTRY, size="256")  # the demo net has no such size: said, and left out
    assert "the image sizes offered with demo are 28, 32" in " ".join(t.value for t in at.toast)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_run_whose_checkpoint_cannot_be_read_is_left_out_in_words_on_every_page():
    from conftest import small_run
    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    run_ids = [manager.create_run(small_run(k, epochs=1), "g") for k in ("feature_extraction", "fine_tune_top")]
    manager.start(run_ids, epochs=1)
    manager.wait(120)
    manager.store.checkpoints.path(run_ids[0]).write_bytes(b"damaged " * 100)
    for page in ("app_pages/compare.py", "app_pages/explain.py", "app_pages/inside.py"):
        at = _run(page)  # no exception
        said = " ".join(e.value for e in [*at.warning, *at.caption])
        assert f"({run_ids[0]}) is left out: its checkpoint cannot be read" in said or (
            page.endswith("compare.py") and "its checkpoint cannot be read" in said), (page, said)
    at = _run("app_pages/explain.py")
    offered = at.multiselect(key="explain.runs").options
    assert len(offered) == 1 and offered[0].endswith(run_ids[1])  # the readable one is shown


def test_inside_shows_a_run_from_a_zoo_entry_whose_manifest_has_the_wrong_shape():
    import shutil

    from core.execution.jobs import JobManager
    from core.models import zoo
    from core.training.config import RunConfig

    entry = paths.zoo_dir() / "bent"
    entry.mkdir(parents=True)
    shutil.copy(zoo.BUNDLED / "demo-digits04" / zoo.CHECKPOINT, entry / zoo.CHECKPOINT)
    (entry / zoo.MANIFEST).write_text(json.dumps({"backbone": "demo", "data": "digits", "classes": 5}))
    manager = JobManager(RunStore())
    run_id = manager.create_run(RunConfig(DataConfig(per_class=10, val_per_class=20),
                                          session.ModelConfig("demo", "zoo:bent"), epochs=1))
    manager.start([run_id], epochs=1)
    manager.wait(120)
    at = _run("app_pages/inside.py")
    assert at.selectbox(key="inside.focus").value == run_id
    _run("app_pages/layers.py", at)
    assert any("Zoo entry bent is left out" in c.value and "wrong shape" in c.value for c in at.caption)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_runs_link_opens_the_same_runs_on_compare_explain_and_inside_and_names_what_it_cannot():
    """`?runs=ID,ID` round-trips: each page opens the runs a link names, writes its selection back as the user
    changes it, and says in a toast which ids it could not open (unknown, or another browser's)."""
    from core.execution.jobs import JobManager

    manager = JobManager(RunStore())
    a, b = (manager.create_run(cfg, "linked") for cfg in demo_comparison(epochs=1)[:2])
    manager.start([a, b], epochs=1)
    manager.wait(120)
    foreign = manager.store.create(demo_comparison()[0], "theirs", session="another-browser")
    for page, picker in (("app_pages/compare.py", "compare.selected"), ("app_pages/explain.py", "explain.runs"),
                         ("app_pages/inside.py", "inside.runs")):
        at = _run(page, runs=f"{b},nosuchrun,{foreign}")
        assert at.multiselect(key=picker).value == [b], page
        said = " ".join(t.value for t in at.toast)
        assert "nosuchrun" in said and foreign in said and b not in said, page
        assert at.query_params["runs"] == b
        at.multiselect(key=picker).set_value([a, b])
        _run("", at)
        assert at.query_params["runs"] == f"{a},{b}", page
        again = _run(page, runs=at.query_params["runs"])  # the address as a link, in another browser session
        assert again.multiselect(key=picker).value == [a, b] and not again.toast, page


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_an_uploaded_state_dict_is_kept_and_used_and_a_hostile_or_unfitting_one_is_refused(tmp_path):
    """Layers takes a weights file from the browser: read with weights_only=True and fitted to the backbone before
    it is kept; code in a pickle never runs, and a file for another architecture names the layers that differ."""
    import io

    import torch

    from core.models import weights
    from core.models.backbones import ModelConfig
    from core.models.network import build_model

    at = _run("app_pages/layers.py")
    at.radio(key="layers.weights.demo").set_value("file")
    _run("", at)
    trained = build_model(ModelConfig("demo", weights="none"), num_classes=5, seed=7)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    at.file_uploader(key="layers.weights_upload").upload("mine.pt", buffer.getvalue())
    _run("", at)
    kept = at.session_state["layers.weights_file"]
    assert kept.startswith(str(weights.uploads_dir())) and not at.error, [e.value for e in at.error]
    assert at.session_state[session.MODEL_KEY].weights == f"file:{kept}"
    loaded = build_model(ModelConfig("demo", weights=f"file:{kept}"), num_classes=5)
    assert torch.equal(loaded.blocks["layer2"].conv1.weight, trained.blocks["layer2"].conv1.weight)

    planted = tmp_path / "ran"
    hostile = io.BytesIO()
    torch.save({"model": _Payload(str(planted))}, hostile)  # unpickling it would create `planted`
    other = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)  # a ResNet's first layer, not the demo net's
    for name, content, says in (("evil.pt", hostile.getvalue(), "holds Python objects"),
                                ("resnet.pt", other.getvalue(), "do not fit demo")):
        again = _run("app_pages/layers.py")
        again.radio(key="layers.weights.demo").set_value("file")
        _run("", again)
        again.file_uploader(key="layers.weights_upload").upload(name, content)
        _run("", again)
        said = " ".join(e.value for e in again.error)
        assert name in said and says in said and str(weights.uploads_dir()) not in said, said
    assert not planted.exists() and len(list(weights.uploads_dir().iterdir())) == 1  # only the good one kept


class _Payload:
    """A pickle that would run code: creating a file, when unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_layers_offers_any_torchvision_model_and_says_why_one_cannot_be_split():
    at = _run("app_pages/layers.py")
    assert "torchvision:densenet121" not in at.selectbox(key="layers.backbone").options  # the registry first
    at.toggle(key="layers.more").set_value(True)
    _run("", at)
    assert "torchvision:densenet121" in at.selectbox(key="layers.backbone").options
    at.selectbox(key="layers.backbone").set_value("torchvision:mobilenet_v3_small")
    _run("", at)
    assert not at.error and at.session_state[session.MODEL_KEY].backbone == "torchvision:mobilenet_v3_small"
    assert {"layers.train.torchvision:mobilenet_v3_small.stage4", "layers.train.torchvision:mobilenet_v3_small.stem"} \
        <= {c.key for c in at.checkbox}
    from core.models.backbones import ModelConfig

    stale = _run(ENTRY)  # a session holding a name torchvision does not know (a setup from elsewhere)
    stale.session_state[session.MODEL_KEY] = ModelConfig("torchvision:nosuchnet")
    _run("app_pages/layers.py", stale)
    assert "no classification model 'nosuchnet'" in stale.error[0].value and not stale.exception
