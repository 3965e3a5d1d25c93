"""Driving the app as a user meets it: served from the project folder on a free localhost port, opened in
Debian's Chromium through Playwright, clicked by widget key. The benchmark (benchmarks/bench.py) and the
browser tests (tests/test_browser.py) both use it, so both drive the same app the same way."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the project folder: the app's entry script lives here
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 60  # a cold `streamlit run` answers in ~5 s here; a server that has not in 60 has failed


def unavailable() -> str:
    """Why the app cannot be driven here, in words, or ''."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        return "no Chromium on PATH (Debian: apt-get install chromium)"
    if importlib.util.find_spec("streamlit") is None:
        return "streamlit is not installed"
    return ""


def launch_chromium(playwright):
    """Headless Chromium with the flags that keep it off the network and the GPU."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)


def _answers(port: int) -> bool:
    try:  # http.client, not urllib: the tests' network mock covers urllib, and this is localhost
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/_stcore/health")
        return conn.getresponse().read() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(home: Path, script: str | None = None, log: Path | None = None, **env: str) -> Iterator[str]:
    """The app as README starts it (`freezelab app`, which starts the trainer too), or `streamlit run script`,
    from the project folder (so .streamlit/config.toml applies) on a free localhost port, with `env` added to
    its environment; yields the URL once the server answers. Its output goes to `log` when given."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = ["-m", "streamlit", "run", script] if script else ["-m", "core", "app"]
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, *command, "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"], cwd=ROOT,
        env={**os.environ, "FREEZELAB_HOME": str(home), "PYTHONPATH": str(ROOT), **env},
        stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(port):
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with status {proc.returncode} before it answered")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)
        if log:
            out.close()


def keyed_button(page, key: str):
    """The page's button with this widget key (Streamlit's class `st-key-<key>`). By name, "Stop" would also
    match Streamlit's own Stop, in the header while a script runs, which stops the script run, not training."""
    return page.locator(f".st-key-{key.replace('.', '-')} button")


def click_burst(page, url: str, epochs: int) -> None:
    """As a user would: open the Train page of the app at `url`, run a burst of `epochs` epochs of the
    comparison it shows, and wait until the page shows it started (a burst long enough to be seen running)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/train")
    amount = page.get_by_label("How many epochs")
    expect(amount).to_be_visible(timeout=60_000)
    amount.fill(str(epochs))
    amount.press("Enter")
    keyed_button(page, "train.burst").click()
    # Started once the page says so (its Stop turns on): a page closed at once could take the click with it.
    expect(keyed_button(page, "train.stop")).to_be_enabled(timeout=60_000)
