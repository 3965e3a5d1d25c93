"""The real app in a real browser: `streamlit run` on a free localhost port, Debian's Chromium driven
by Playwright. Every page opens with no error box; the demo comparison trains and its curves show.
Screenshots of each page land in artifacts/screenshots/."""

import os
from pathlib import Path

import pytest

from benchmarks.app_driver import CHROMIUM, click_burst, keyed_button, launch_chromium, serve
from conftest import wait_for
from core.execution import trainer_client as trainer

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - CI installs it
    sync_playwright = None

missing = "Chromium (apt-get install chromium)" if not CHROMIUM else "playwright (pip)" if not sync_playwright else ""
PROCESS_MODE = {trainer.MODE_ENV: "process"}  # the app's default, said outright
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"needs {missing}")]


@pytest.fixture
def app_url(tmp_path):
    try:
        with serve(tmp_path / "home", "streamlit_app.py", **PROCESS_MODE) as url:
            yield url
    finally:
        trainer.shut_down(tmp_path / "home")  # it outlives the server (that is its point)


TITLES = ["Start", "Data", "Layers", "Train", "Experiments", "Inside", "Compare", "Explain"]  # sidebar order


def _no_error_box(page) -> None:
    for test_id in ("stException", "stAlertContentError"):
        assert page.get_by_test_id(test_id).count() == 0, page.get_by_test_id(test_id).first.inner_text()


def test_every_page_and_the_demo_comparison_in_chromium(app_url):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        expect(page.get_by_role("button", name="Run the demo comparison")).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)  # script done
        _no_error_box(page)
        assert page.get_by_role("button", name="Deploy").count() == 0  # nothing in the header to distract a class
        page.screenshot(path=SHOTS / "0_start.png", full_page=True)

        page.get_by_role("button", name="Run the demo comparison").click()
        # the race, below the button: SVG curves while the runs train, the interactive Plotly chart once they stop
        expect(page.locator(".freezelab-live-curves polyline, .stPlotlyChart .scatterlayer").first).to_be_attached(
            timeout=120_000)
        expect(page.get_by_text("Held equal:")).to_be_visible()
        # The page below the race is drawn before it, fresh, not held (faded) by the view's first run (~2 s).
        below = page.locator('[data-stale="false"]', has=page.get_by_role("heading", name="Current setup"))
        expect(below.first).to_be_attached(timeout=1_000)
        expect(page.get_by_text("finished", exact=True)).to_have_count(3, timeout=120_000)
        expect(page.locator(".stPlotlyChart .scatterlayer")).to_have_count(2, timeout=60_000)  # the strip, the curves
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)  # the last redraw done
        _no_error_box(page)
        page.screenshot(path=SHOTS / "1_demo.png", full_page=True)
        page.get_by_role("link", name="Train them on in bursts").click()
        expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("finished", exact=True)).to_have_count(3, timeout=60_000)  # the same runs

        nav = page.get_by_test_id("stSidebarNav").inner_text().split()
        titles = [w for w in nav if w in TITLES]  # the icons between them are emoji
        assert titles == TITLES, nav
        # Each page.goto is a new Streamlit session in the same browser: the runs it shows are still this
        # browser's own (its identity comes from the XSRF cookie, not from the session).
        for path, heading in (("data", "Data"), ("layers", "Layers"), ("train", "Train"), ("inside", "Inside"),
                              ("explain", "Explain"), ("experiments", "Experiments"), ("compare", "Compare")):
            page.goto(f"{app_url}/{path}")
            expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
            expect(page).to_have_title(heading)  # the page's own title names the browser tab
            page.wait_for_load_state("networkidle")
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)  # script done
            _no_error_box(page)
            page.screenshot(path=SHOTS / f"page_{path}.png", full_page=True)
        expect(page.get_by_test_id("stPlotlyChart")).not_to_have_count(0)  # Compare draws its charts
        # Files are built when their button is clicked, and arrive whole.
        for label, magic in (("Curves as PNG", b"\x89PNG"), ("Download checkpoint", b"PK")):
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name=label).click()
            assert Path(download.value.path()).read_bytes()[:len(magic)] == magic, label
        browser.close()


def _luminance(css: str) -> float:
    r, g, b = (int(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_a_shared_link_in_dark_mode(app_url):
    """A browser that prefers dark gets the dark theme; the charts and the block strip sit on it (no white
    box), and a link's query parameters open the setup they encode."""
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(color_scheme="dark", viewport={"width": 1400, "height": 1200}).new_page()
        page.goto(f"{app_url}/layers?backbone=resnet18&weights=none&train=layer3,layer4&bn=stats")
        expect(page.get_by_role("heading", name="Layers")).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
        _no_error_box(page)
        background = page.evaluate('getComputedStyle(document.querySelector(".stApp")).backgroundColor')
        assert _luminance(background) < 0.2, background
        paper = page.evaluate('getComputedStyle(document.querySelector("[data-testid=stPlotlyChart] .main-svg"))'
                              '.backgroundColor')
        assert paper == background or _luminance(paper) < 0.2 or "0)" in paper, paper  # the theme's, not white
        sidebar = page.get_by_test_id("stSidebar").inner_text()
        for line in ("Backbone: resnet18", "Trainable: layer3, layer4", "BatchNorm: stats"):
            assert line in sidebar, sidebar
        page.screenshot(path=SHOTS / "dark_layers.png", full_page=True)
        browser.close()


def test_an_unexpected_error_shows_no_details_in_the_browser_and_is_logged(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text('import streamlit as st\nst.title("Broken")\nraise RuntimeError("secret-detail in /srv/x")\n')
    log = tmp_path / "server.log"
    with serve(tmp_path / "home", str(script), log, **PROCESS_MODE) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_test_id("stException")).to_be_visible(timeout=60_000)
        shown = page.get_by_test_id("stException").inner_text()
        browser.close()
    assert "secret-detail" not in shown and "Traceback" not in shown and "/srv/x" not in shown
    assert "secret-detail in /srv/x" in log.read_text()  # the operator still sees it


def test_a_run_trains_on_through_a_restart_of_the_server_with_nothing_lost(tmp_path):
    from core.store.runs import RunStore
    from core.training.config import DEMO_OPTIM, RunConfig, demo_comparison

    home = tmp_path / "home"
    store = RunStore(home)
    cfg = RunConfig(**{**demo_comparison()[1].__dict__, "epochs": 300, "optim": DEMO_OPTIM})
    run_id = store.create(cfg, "restart")
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            with serve(home, "streamlit_app.py", **PROCESS_MODE) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                click_burst(page, url, epochs=300)
                wait_for(lambda: store.metrics.recorded_steps(run_id) >= 20, "training did not start")
                # While it trains, the curves are drawn as SVG, and Streamlit's Markdown keeps the drawing.
                expect(page.locator(".freezelab-live-curves polyline").first).to_be_attached(timeout=30_000)
                assert page.get_by_test_id("stPlotlyChart").count() == 0
                # The runs table moves several times a second (the view redraws in place between the page's
                # timer ticks, two seconds apart).
                # Streamlit's header, which would say "Running…" all along (the view's fragment runs), is hidden.
                shown, header = page.evaluate("""async () => {
                    const seen = new Set(), header = new Set();
                    for (let i = 0; i < 80; i++) {  // four seconds: two of the page's timer ticks
                        seen.add(document.querySelector('[data-testid=stMarkdown] table')?.textContent);
                        const status = document.querySelector('[data-testid=stStatusWidget]');
                        header.add(status ? getComputedStyle(status).display : 'absent');
                        await new Promise(r => setTimeout(r, 50));
                    }
                    return [seen.size, [...header].sort()];
                }""")
                assert shown >= 8, f"the table showed {shown} states in four seconds"
                # Whenever Streamlit's status widget is there (a fragment run in progress), it is hidden; when
                # it shows is Streamlit's own timing, so its absence throughout is not a failure.
                assert set(header) <= {"none", "absent"}, header
            # The server is stopped (SIGTERM) mid-burst: the run trains on in the trainer.
            seen = store.metrics.recorded_steps(run_id)
            wait_for(lambda: store.metrics.recorded_steps(run_id) >= seen + 10, "training stopped with the server")
            assert store.status(run_id)[0] == "running"
            with serve(home, "streamlit_app.py", **PROCESS_MODE) as url:  # a new server shows it training, and stops it
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/train")
                expect(page.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
                keyed_button(page, "train.stop").click()
                wait_for(lambda: store.status(run_id)[0] == "stopped", "the run did not stop")
                recorded = store.metrics.recorded_steps(run_id)
                assert store.checkpoints.load(run_id)["counters"]["step"] == recorded  # nothing lost
                expect(keyed_button(page, "train.burst")).to_be_enabled(timeout=60_000)
                keyed_button(page, "train.burst").click()  # two epochs more, from mid-epoch
                wait_for(lambda: store.status(run_id)[0] == "paused", "training did not go on")
                assert store.metrics.recorded_steps(run_id) > recorded
            browser.close()
    finally:
        trainer.shut_down(home)
    log = store.metrics.step_log()
    assert log[log.run_id == run_id].step.tolist() == list(range(1, store.metrics.recorded_steps(run_id) + 1))


def test_the_lesson_in_chromium_predict_run_reveal_every_step(app_url):
    """A student takes all seven steps as a browser does (the trainer process, the app's default): predict, press
    Run, read the reveal. The time from each click to its reveal is written to artifacts/lesson_times.json
    (docs/benchmarks.md quotes it); nothing here asserts a time."""
    import json
    import time

    from core import lesson

    SHOTS.mkdir(parents=True, exist_ok=True)
    times = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(f"{app_url}/lesson")
        expect(page.get_by_text("Step 1 of 7")).to_be_visible(timeout=60_000)
        for i, step in enumerate(lesson.STEPS):
            expect(page.get_by_text(f"Step {i + 1} of 7")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("What happened.")).to_have_count(0, timeout=60_000)  # the last step's is gone
            page.locator(f".st-key-lesson-predict-{step.key}").get_by_text(step.choices[0], exact=True).click()
            expect(page.get_by_text("Your prediction:")).to_be_visible(timeout=30_000)
            run = keyed_button(page, f"lesson.run.{step.key}")
            began = time.monotonic()
            if run.count():  # a step that reuses the race's runs may reveal at once
                expect(run).to_be_enabled(timeout=30_000)
                began = time.monotonic()
                run.click()
            expect(page.get_by_text("What happened.")).to_be_visible(timeout=180_000)
            times[step.key] = round(time.monotonic() - began, 1)
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            _no_error_box(page)
            page.screenshot(path=SHOTS / f"lesson_{i + 1}_{step.key}.png", full_page=True)
            if i < len(lesson.STEPS) - 1:
                keyed_button(page, "lesson.next_step").click()
        browser.close()
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "lesson_times.json").write_text(json.dumps(times, indent=1))
    assert list(times) == list(lesson.STEP_KEYS)


def test_ten_students_press_run_at_once_and_each_gets_a_reveal(app_url):
    """A class: ten browsers (ten sessions) predict and press the race's Run within a second of each other; the
    trainer serves them in turns. Each one's time from its click to its reveal goes to
    artifacts/lesson_class_times.json (docs/benchmarks.md quotes the median and the slowest); nothing here
    asserts a time."""
    import json
    import statistics
    import time

    students = 10
    with sync_playwright() as p:
        browser = launch_chromium(p)
        pages = [browser.new_context(viewport={"width": 1200, "height": 900}).new_page() for _ in range(students)]
        for page in pages:
            page.goto(f"{app_url}/lesson")
        for page in pages:
            expect(page.get_by_text("Step 1 of 7")).to_be_visible(timeout=120_000)
            page.locator(".st-key-lesson-predict-race").get_by_text("From scratch", exact=True).click()
        for page in pages:
            expect(keyed_button(page, "lesson.run.race")).to_be_enabled(timeout=60_000)
        clicked = {}
        for i, page in enumerate(pages):
            keyed_button(page, "lesson.run.race").click()
            clicked[i] = time.monotonic()
        revealed = {}
        end = time.monotonic() + 600
        while len(revealed) < students:
            assert time.monotonic() < end, f"{students - len(revealed)} students saw no reveal"
            for i, page in enumerate(pages):
                if i not in revealed and page.get_by_text("What happened.").count():
                    revealed[i] = round(time.monotonic() - clicked[i], 1)
            time.sleep(0.2)
        for page in pages:
            _no_error_box(page)
        browser.close()
    times = sorted(revealed.values())
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "lesson_class_times.json").write_text(json.dumps(
        {"students": students, "seconds": times, "median": statistics.median(times), "slowest": times[-1]}))
    assert len(times) == students
