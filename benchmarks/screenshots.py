"""README's screenshots, taken from the app as a user meets it: `python -m benchmarks.screenshots [--out docs]`.

Serves the app (the trainer in its own process, as `freezelab app` does) on a fresh $FREEZELAB_HOME, clicks it
in headless Chromium and writes docs/train.png (the demo comparison trained, on the Train page), docs/dark.png
(a shared link opening Layers in the dark theme) and docs/sweep.png (a two-epoch depth sweep, two seeds).
Emoji need a colour emoji font (Debian: apt-get install fonts-noto-color-emoji).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.app_driver import ROOT, keyed_button, launch_chromium, serve, unavailable
from core.execution import trainer_client as trainer

TIMEOUT_MS = 180_000  # a sweep of fourteen runs on two cores takes a minute or two


def _settled(page) -> None:
    """Wait until the script run is over (Streamlit's status widget gone)."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT_MS)


def take(out: Path) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="freezelab-shots-"))
    written = []
    try:
        with sync_playwright() as p, serve(home, **{trainer.MODE_ENV: "process"}) as url:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(url)
            expect(page.get_by_role("button", name="Run the demo comparison")).to_be_enabled(timeout=TIMEOUT_MS)
            demo = page.get_by_role("button", name="Run the demo comparison")
            demo.click()
            expect(demo).to_be_disabled(timeout=TIMEOUT_MS)  # training
            expect(demo).to_be_enabled(timeout=TIMEOUT_MS)  # done
            page.goto(f"{url}/train")  # the same runs, on the Train page
            expect(keyed_button(page, "train.burst")).to_be_enabled(timeout=TIMEOUT_MS)
            _settled(page)
            expect(page.locator(".stPlotlyChart .scatterlayer .trace").first).to_be_visible(timeout=TIMEOUT_MS)
            page.wait_for_timeout(1000)  # Plotly draws its traces in a frame or two
            page.screenshot(path=out / "train.png")
            written.append(out / "train.png")

            dark = browser.new_context(color_scheme="dark", viewport={"width": 1400, "height": 1200}).new_page()
            dark.goto(f"{url}/layers?backbone=resnet18&weights=none&train=layer3,layer4&bn=stats")
            expect(dark.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=TIMEOUT_MS)
            _settled(dark)
            dark.screenshot(path=out / "dark.png")
            written.append(out / "dark.png")

            sweep = browser.new_page(viewport={"width": 1400, "height": 1500})
            sweep.goto(f"{url}/experiments")
            epochs = sweep.get_by_label("Epochs per run")
            expect(epochs).to_be_visible(timeout=TIMEOUT_MS)
            epochs.fill("2")
            keyed_button(sweep, "experiments.sweep.run").click()
            expect(sweep.get_by_text("14 of 14 runs ended")).to_be_visible(timeout=TIMEOUT_MS * 3)
            _settled(sweep)
            expect(sweep.locator(".stPlotlyChart .scatterlayer .trace").first).to_be_visible(timeout=TIMEOUT_MS)
            sweep.wait_for_timeout(1000)
            sweep.screenshot(path=out / "sweep.png")
            written.append(out / "sweep.png")
            browser.close()
    finally:
        trainer.shut_down(home)
        shutil.rmtree(home, ignore_errors=True)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the PNGs go (default: docs/)")
    args = parser.parse_args()
    if why := unavailable():
        print(f"Cannot take screenshots here: {why}.")
        return 2
    for path in take(Path(args.out)):
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
