"""FreezeLab installed as a package, not run from its folder: the wheel carries the whole app (entry script, pages,
bundled net, Streamlit settings), and `freezelab app` serves it from any folder with those settings."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks.app_driver import launch_chromium, unavailable
from conftest import wait_for
from core.execution import trainer_client as trainer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.process  # builds a wheel and starts the app from it


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, unpacked into a folder of its own (its dependencies are this
    environment's: only FreezeLab's own files come from the wheel)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, timeout=300)
    (wheel,) = out.glob("freezelab-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def _listening(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port` (from /proc: IPv4, hex as the kernel writes it)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_wheel_carries_the_whole_app(installed):
    for part in ("streamlit_app.py", "app_pages/start.py", "app_pages/lesson.py", "ui/live_view.py",
                 "core/models/assets/zoo/demo-digits04/model.pt", "ui/streamlit_settings/config.toml", "LICENSE"):
        assert next(installed.rglob(Path(part).name), None) is not None, part
    meta = next(installed.glob("freezelab-*.dist-info")) / "METADATA"
    text = meta.read_text()
    assert "Requires-Python: >=3.11\n" in text
    assert "Requires-Dist: torch>=2.4\n" in text and "Requires-Dist: torchvision>=0.19\n" in text  # no upper bound


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_freezelab_app_from_another_folder_serves_the_app_with_its_settings(installed, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed), "FREEZELAB_HOME": str(home), trainer.MODE_ENV: "process"}
    where = subprocess.run([sys.executable, "-c", "import core, streamlit_app; print(core.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(installed), where  # the installed copy, not this folder
    proc = subprocess.Popen([sys.executable, "-m", "core", "app", "--server.port", str(port)], cwd=elsewhere, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listening(port), "the app did not start", timeout=60)
        # Its settings applied from a folder with no .streamlit/: bound to this machine only.
        assert _listening(port) <= {"0100007F", "00000000000000000000000001000000"}, _listening(port)
        if why := unavailable():
            pytest.skip(f"served; the page itself is not checked: {why}")
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            expect(page.get_by_role("button", name="Run the demo comparison")).to_be_visible(timeout=60_000)
            page.goto(f"http://127.0.0.1:{port}/layers")  # a page found by its path inside the installed package
            expect(page.get_by_role("heading", name="Layers")).to_be_visible(timeout=60_000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
        trainer.shut_down(home)
