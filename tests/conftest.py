"""Shared fixtures. Nothing here downloads: the network is mocked for every test."""

from __future__ import annotations

import dataclasses
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch.hub

CIFAR_JPG = Path(os.environ.get("FREEZELAB_CIFAR_JPG", Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpg"))
needs_cifar_jpg = pytest.mark.skipif(
    not (CIFAR_JPG / "train").is_dir(),
    reason=f"the CIFAR-10 JPEG subset is not at {CIFAR_JPG} (set FREEZELAB_CIFAR_JPG to point at it)",
)


SLOW_KINDS = ("browser", "ray", "process")  # each of these markers makes a test slow too (pyproject.toml)


def pytest_collection_modifyitems(items) -> None:
    """The fast tier (`-m "not slow"`) leaves out whatever starts a browser, Ray or a process, marked or not."""
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


def small_run(key: str, **kw):
    """A RunConfig of one of the demo net's presets on 20 digits per class, batch 20: a few seconds on a CPU."""
    from core.data.datasets import DataConfig
    from core.freezing import recipes_for
    from core.training.config import OptimConfig, RunConfig

    blocks = ["stem", "layer1", "layer2", "layer3", "layer4"]  # the demo net's
    return RunConfig.from_recipe(recipes_for(blocks)[key], data=DataConfig(per_class=20, val_per_class=40),
                                 optim=OptimConfig(batch_size=20), **kw)


def wait_for(predicate, why: str = "timed out", timeout: float = 120.0) -> None:
    """Poll `predicate` until it holds; fail the test, saying `why`, after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, why
        time.sleep(0.05)


def ctrl_c_after_the_first_epoch(*args: str) -> tuple[int, str, str]:
    """Run `python -m core ARGS` in this test's home, press Ctrl-C once its first epoch is stored (as a terminal
    does: to the whole foreground process group), and return (exit status, stdout, stderr)."""
    import signal
    import subprocess
    import sys

    from core.store.runs import RunStore

    command = subprocess.Popen([sys.executable, "-m", "core", *args], cwd=Path(__file__).resolve().parents[1],
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = RunStore()
        end = time.monotonic() + 240
        while not (store.runs().epochs > 0).any():
            assert command.poll() is None and time.monotonic() < end, command.stderr.read()
            time.sleep(0.1)
        os.killpg(command.pid, signal.SIGINT)
        out, err = command.communicate(timeout=240)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
    return command.returncode, out, err


class NetworkCalls(list):
    """The URLs code tried to open; every attempt fails as it would on a machine with no network."""


class SlowLine:
    """A mocked network that serves `size` zero bytes to urllib (not a real weights file: a checksum refuses
    it), `delay` seconds per read, holding after the first read until `release` is set when `hold`."""

    def __init__(self, monkeypatch, size: int, delay: float = 0.0, hold: bool = False):
        import threading

        self.size, self.delay, self.hold = size, delay, hold
        self.release = threading.Event()
        monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: self._Response(self))

    class _Response:
        def __init__(self, line: SlowLine):
            self.line, self.sent = line, 0
            self.headers = {"Content-Length": str(line.size)}

        def read(self, n: int) -> bytes:
            if self.sent and self.line.hold:
                self.line.release.wait(30)
            time.sleep(self.line.delay)
            n = min(n, self.line.size - self.sent)
            self.sent += n
            return b"\0" * n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> NetworkCalls:
    calls = NetworkCalls()

    def refuse(url, *args, **kwargs):
        calls.append(getattr(url, "full_url", url))
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)  # torch.hub imported the name itself
    try:  # timm's weights come from the Hugging Face hub (an optional install): reads from its cache only
        import huggingface_hub
    except ImportError:
        return calls
    from_cache = huggingface_hub.hf_hub_download

    def hub_download(repo_id, filename, *args, local_files_only=False, **kwargs):
        if local_files_only:
            return from_cache(repo_id, filename, *args, local_files_only=True, **kwargs)
        calls.append(f"https://huggingface.co/{repo_id}/{filename}")
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_download)
    return calls


@pytest.fixture(autouse=True)
def isolated_homes(tmp_path_factory, monkeypatch) -> Path:
    """A fresh $FREEZELAB_HOME and $TORCH_HOME per test, and no other FreezeLab setting of the machine or of
    another test: every FREEZELAB_* variable cleared, then the settings read again at their next use
    (core/runtime/settings.py keeps them for the process)."""
    from core.runtime import settings

    root = tmp_path_factory.mktemp("homes")
    for variable in [v for v in os.environ if v.startswith("FREEZELAB_") and v != "FREEZELAB_CIFAR_JPG"]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("FREEZELAB_HOME", str(root / "freezelab"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("HF_HOME", str(root / "huggingface"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # The in-process page tests train in a thread of their own process; tests/test_trainer.py, the browser tests
    # and the benchmark's (a real server) use the trainer process, the app's default.
    monkeypatch.setenv("FREEZELAB_TRAINER", "thread")
    settings.reset()
    yield root
    settings.reset()  # monkeypatch restores the variables after this: the next reader reads them again


@pytest.fixture
def use_settings(monkeypatch):
    """`use_settings(share=(folder,), trainer="process", ...)`: from now on in this test, these settings
    (core/runtime/settings.py's field names) beside the current ones: set in the environment, where processes this
    one starts read them too, and read again at their next use here."""
    from core.runtime import settings

    def use(**values) -> settings.Settings:
        chosen = dataclasses.replace(settings.Settings.from_environ(os.environ), **values)
        for variable, value in chosen.to_environ().items():
            monkeypatch.setenv(variable, value)
        settings.reset()
        return settings.settings()

    return use


@pytest.fixture(autouse=True)
def warm_ups_end_with_their_test():
    """A page test starts the app's warm-up (a daemon thread building runs in torch). One still inside torch when
    the interpreter ends aborts the whole process (rc 134, "terminate called without an active exception"), after
    every test passed: each test waits for the warm-ups it started."""
    import threading

    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("freezelab-warm-up"):
            thread.join(120)
