"""Background workers: runs interleave, stop, fail alone, and resume after a restart."""

import itertools
import shutil
import threading
import time

import pytest
import torch

from conftest import small_run, wait_for
from core.data.datasets import DataConfig
from core.execution import jobs
from core.execution.jobs import JobManager
from core.runtime.shares import Caller
from core.store.runs import RunStore, config_to_json
from core.store.trained_models import TrainedModels
from core.training.config import RunConfig
from core.training.loop import evaluate


def test_two_runs_interleave_and_both_curves_advance(tmp_path):
    manager = JobManager(RunStore(tmp_path), slice_steps=2)
    frozen = manager.create_run(small_run("feature_extraction", epochs=3))
    tuned = manager.create_run(small_run("fine_tune_top", epochs=3))
    manager.start([frozen, tuned], epochs=2)
    manager.wait(120)
    curves = manager.store.metrics.curves([frozen, tuned])
    assert curves.groupby("run_id").epoch.max().to_dict() == {frozen: 2, tuned: 2}
    order = list(manager.store.metrics.step_log().run_id)
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 4  # slices of 2 steps, 10 steps each: the runs took turns
    for run_id in (frozen, tuned):
        snap = manager.snapshot(run_id)
        assert snap.status == "paused" and snap.step == 10 and snap.progress == 1.0
        assert manager.store.status(run_id)[0] == "paused"
        assert manager.store.checkpoints.path(run_id).is_file()
    assert manager.snapshot(frozen).cache_on and manager.snapshot(tuned).cache_on
    assert manager.snapshot(frozen).last_epoch["epoch"] == 2

    # The next burst carries on to the end of the run.
    manager.start([frozen, tuned], epochs=5)
    manager.wait(120)
    assert manager.store.metrics.curves([frozen]).epoch.max() == 3 and manager.store.status(frozen)[0] == "finished"


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_runs_prepared_ahead_are_adopted_and_train_exactly_as_fresh_ones(tmp_path):
    """The app builds the demo's runs before the click: a run created with such a config takes the ready state
    (model and feature cache built) and its curve, cache status included, is a fresh start's, bit for bit."""
    configs = [small_run("feature_extraction", epochs=2), small_run("from_scratch", epochs=2)]
    curves, events = {}, {}
    for ahead in (False, True):
        manager = JobManager(RunStore(tmp_path / str(ahead)), threads=1)
        if ahead:
            manager.prepare_ahead(configs)
            ready = dict(manager._ahead)
        run_ids = [manager.create_run(cfg) for cfg in configs]
        manager.start(run_ids, epochs=2)
        manager.wait(120)
        curves[ahead] = manager.store.metrics.curves(run_ids).drop(columns=["run_id", "seconds", "images_per_sec"])
        events[ahead] = [manager.store.metrics.events(r).query("kind == 'cache'")[["step", "detail"]].to_dict("records")
                         for r in run_ids]
        if ahead:  # taken by the runs: the very states built ahead trained
            assert not manager._ahead
            assert [manager._states[r] is ready[json].result()[0] for r, json in
                    zip(run_ids, [config_to_json(c) for c in configs], strict=True)] == [True, True]
            manager.prepare_ahead(configs)  # asked again (by a server, after the trainer warmed up by itself)
            assert not manager._ahead  # built once: no second set competes with the runs that took the first
    assert curves[True].equals(curves[False])
    assert events[True] == events[False] and [len(e) for e in events[True]] == [1, 1]  # on, then off, at step 0


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_two_workers_train_side_by_side(tmp_path):
    manager = JobManager(RunStore(tmp_path), slice_steps=1)
    a = manager.create_run(small_run("feature_extraction", epochs=4))
    b = manager.create_run(small_run("from_scratch", epochs=4))
    manager.start([a], epochs=4)
    manager.start([b], epochs=4)
    wait_for(lambda: manager.snapshot(a).step > 0 and manager.snapshot(b).step > 0)
    with pytest.raises(RuntimeError, match="training already"):
        manager.start([a], steps=1)
    manager.wait(120)
    assert {manager.snapshot(r).status for r in (a, b)} == {"finished"}


def test_stop_then_resume_after_a_restart(tmp_path):
    store = RunStore(tmp_path)
    manager = JobManager(store, slice_steps=1)
    run_id = manager.create_run(small_run("from_scratch", epochs=20))
    manager.start([run_id], epochs=20)
    wait_for(lambda: manager.snapshot(run_id).step >= 3)
    manager.stop([run_id])
    manager.wait(60)
    stopped_at = manager.snapshot(run_id).step
    assert manager.snapshot(run_id).status == "stopped" and 3 <= stopped_at < 100
    assert store.status(run_id)[0] == "stopped"

    # A new process: the run comes back from its checkpoint and goes on from the same step.
    again = JobManager(RunStore(tmp_path), slice_steps=50)
    assert again.snapshot(run_id).status == "stopped"
    again.start([run_id], steps=7)
    again.wait(60)
    steps = again.store.metrics.curves([run_id], kind="step").step.tolist()
    assert steps == list(range(1, stopped_at + 8))


def test_a_failing_run_fails_alone_with_its_reason(tmp_path):
    from PIL import Image

    manager = JobManager(RunStore(tmp_path))
    folder = tmp_path / "missing"
    for kind in ("a", "b"):  # a folder that is there when the run is made (it is checked then) ...
        (folder / kind).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / kind / "x.png")
    bad = manager.create_run(RunConfig(data=DataConfig(source="folder", path=str(folder))))
    shutil.rmtree(folder)  # ... and gone when it trains
    good = manager.create_run(small_run("feature_extraction", epochs=1))
    manager.start([bad, good], epochs=1)
    manager.wait(60)
    status, message = manager.store.status(bad)
    assert status == "failed" and "does not exist" in message
    assert manager.snapshot(bad).status == "failed"
    assert manager.store.status(good)[0] == "finished"


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(RunConfig())
    store.set_status(run_id, "running")
    JobManager(store)
    assert store.status(run_id)[0] == "interrupted"


def test_each_burst_keeps_weights_for_later_analysis(tmp_path):
    manager = JobManager(RunStore(tmp_path))
    models = TrainedModels(manager.store)  # reads them back, as the pages do, without training
    run_id = manager.create_run(small_run("fine_tune_top", epochs=4))
    assert models.model_at(run_id) is None and not models.has_checkpoint(run_id)  # nothing trained yet
    for _ in range(2):
        manager.start([run_id], epochs=1)
        manager.wait(60)
    assert manager.store.checkpoints.steps(run_id) == [0, 5, 10]  # the start and each epoch's end
    assert models.has_checkpoint(run_id)
    start, _ = models.model_at(run_id, step=0)
    assert torch.equal(start.blocks["layer4"].conv1.weight, models.model_at(run_id, step=0)[0].blocks["layer4"]
                       .conv1.weight)
    first, data = models.model_at(run_id, step=5)
    last, _ = models.model_at(run_id)
    assert not first.training and data.num_classes == 5
    assert not torch.equal(first.blocks["layer4"].conv1.weight, last.blocks["layer4"].conv1.weight)
    assert torch.equal(first.blocks["stem"][0].weight, last.blocks["stem"][0].weight)  # frozen all along
    live = manager.snapshot(run_id)
    assert live.last_epoch["val_acc"] == pytest.approx(evaluate(last, data.val_x, data.val_y)[1])
    with pytest.raises(KeyError, match="no weights at step 7"):
        models.model_at(run_id, step=7)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_runs_evicted_from_memory_resume_exactly_and_can_be_deleted(tmp_path, monkeypatch):
    reference = JobManager(RunStore(tmp_path / "ref"))
    ref_id = reference.create_run(small_run("fine_tune_top", epochs=3))
    reference.start([ref_id], epochs=2)
    reference.wait(60)

    monkeypatch.setattr(jobs, "MAX_LIVE_RUNS", 1)
    manager = JobManager(RunStore(tmp_path / "evict"))
    a = manager.create_run(small_run("fine_tune_top", epochs=3))
    b = manager.create_run(small_run("feature_extraction", epochs=3))
    for run_id in (a, b, a):  # b's burst pushes a out of memory; a's second epoch comes from its checkpoint
        manager.start([run_id], epochs=1)
        manager.wait(60)
    assert manager.live_runs() == [a]
    columns = ["step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert manager.store.metrics.curves([a])[columns].equals(reference.store.metrics.curves([ref_id])[columns])

    manager.delete(b)
    assert list(manager.store.runs().id) == [a] and not manager.store.checkpoints.path(b).exists()
    manager.start([a], steps=1000)
    with pytest.raises(RuntimeError, match="Stop the run"):
        manager.delete(a)
    manager.stop([a])
    manager.wait(60)


def test_the_event_log_marks_where_bursts_ended_not_slices(tmp_path):
    manager = JobManager(RunStore(tmp_path), slice_steps=3)
    run_id = manager.create_run(small_run("fine_tune_top", epochs=4))
    manager.start([run_id], steps=12)  # four slices of three steps
    manager.wait(60)
    manager.start([run_id], epochs=1)  # the rest of the third epoch: three more steps, one slice
    manager.wait(60)
    events = manager.store.metrics.events(run_id)
    bursts = events[events.kind == "burst"]
    assert bursts.step.tolist() == [12, 15]
    assert [d["reason"] for d in bursts.detail] == ["budget", "budget"]
    assert manager.store.metrics.step_log().step.tolist() == list(range(1, 16))


def test_weights_are_kept_at_every_epoch_end_within_one_burst(tmp_path):
    manager = JobManager(RunStore(tmp_path), slice_steps=3)  # slices end off the epoch boundaries
    run_id = manager.create_run(small_run("fine_tune_top", epochs=3))
    manager.start([run_id], epochs=3)
    manager.wait(60)
    assert manager.store.checkpoints.steps(run_id) == [0, 5, 10, 15]
    stats = manager.store.metrics.block_stats([run_id])
    assert sorted(set(stats.step)) == [5, 10, 15]
    from core.training.block_stats import drift

    models = TrainedModels(manager.store)
    at_5, start = models.model_at(run_id, step=5)[0], models.model_at(run_id, step=0)[0]
    recorded = stats[(stats.step == 5) & (stats.block == "layer4")].drift.item()
    assert recorded > 0 and drift(at_5, start.state_dict())["layer4"][0] == pytest.approx(recorded, rel=1e-5)


def test_a_checkpoint_that_cannot_be_written_ends_the_burst_in_words_and_frees_the_run(tmp_path, monkeypatch):
    import errno

    manager = JobManager(RunStore(tmp_path))
    run_id = manager.create_run(small_run("fine_tune_top", epochs=4))
    manager.start([run_id], epochs=1)
    manager.wait(60)
    before = manager.store.checkpoints.path(run_id).read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manager.store.checkpoints, "save", disk_full)
    manager.start([run_id], epochs=1)
    manager.wait(60)
    status, message = manager.store.status(run_id)
    assert status == "stopped" and "No space left on device" in message and "previous one is kept" in message
    assert not manager.is_busy(run_id) and manager.store.checkpoints.path(run_id).read_bytes() == before
    monkeypatch.undo()
    manager.start([run_id], epochs=1)  # space again: it trains on from where it was, in memory
    manager.wait(60)
    assert manager.store.status(run_id)[0] == "paused" and manager.store.checkpoints.load(run_id)["counters"][
        "step"] == 15


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_run_without_its_checkpoint_is_never_restarted_without_the_users_word(tmp_path, damage):
    from core.store.status import RunProblem

    first = JobManager(RunStore(tmp_path))
    run_id = first.create_run(small_run("fine_tune_top", epochs=4))
    first.start([run_id], epochs=1)
    first.wait(60)
    path = first.store.checkpoints.path(run_id)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:100])  # truncated
    again = JobManager(RunStore(tmp_path))  # a new process: nothing in memory
    again.start([run_id], epochs=1)
    again.wait(60)
    status, message = again.store.status(run_id)
    assert status == "stopped" and again.store.problem(run_id) is RunProblem.CHECKPOINT_MISSING and "5 steps" in message
    assert again.store.metrics.recorded_steps(run_id) == 5  # history kept
    again.start([run_id], epochs=1, restart=True)
    again.wait(60)
    assert again.store.status(run_id)[0] == "paused" and again.store.metrics.step_log().step.tolist() == [1, 2, 3, 4, 5]


_TRAINER = """
import sys, time
from core.data.datasets import DataConfig
from core.freezing import recipes_for
from core.execution.jobs import JobManager
from core.runtime.shares import Caller
from core.store.runs import RunStore, config_to_json
from core.training.config import OptimConfig, RunConfig
blocks = ["stem", "layer1", "layer2", "layer3", "layer4"]
cfg = RunConfig.from_recipe(recipes_for(blocks)["fine_tune_all"], data=DataConfig(per_class=20, val_per_class=40),
                            optim=OptimConfig(batch_size=20), epochs=400)
manager = JobManager(RunStore(), slice_steps=5, checkpoint_every_s=0)
run_id = manager.create_run(cfg)
manager.start([run_id], epochs=400)
print(run_id, flush=True)
time.sleep(600)
"""


@pytest.mark.process
def test_two_processes_share_a_store_and_a_killed_one_loses_at_most_its_checkpoint_interval(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "FREEZELAB_HOME": str(tmp_path)}
    trainer = subprocess.Popen([sys.executable, "-c", _TRAINER], cwd=Path(__file__).resolve().parents[1], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        run_id = trainer.stdout.readline().strip()
        store = RunStore(tmp_path)
        wait_for(lambda: store.metrics.recorded_steps(run_id) >= 30, timeout=120)
        # A second process on the same store leaves the first one's run alone and will not train it.
        other = JobManager(RunStore(tmp_path))
        assert other.store.status(run_id)[0] == "running"
        with pytest.raises(RuntimeError, match=f"pid {trainer.pid}"):
            other.start([run_id], steps=5)
        assert other.store.status(run_id)[0] == "running"
        trainer.send_signal(signal.SIGKILL)  # mid-burst, no chance to clean up
        trainer.wait(30)
    finally:
        trainer.kill()
    recorded = store.metrics.recorded_steps(run_id)
    saved = store.checkpoints.load(run_id)["counters"]["step"]
    assert recorded - saved <= 5  # a checkpoint every slice: at most one slice lost
    other.start([run_id], steps=5)  # its owner is gone: the run is free, and resumes from its checkpoint
    other.wait(60)
    steps = other.store.metrics.step_log()
    mine = steps[steps.run_id == run_id].step.tolist()
    assert mine == list(range(1, saved + 6))  # the lost steps were redone, nothing else
    assert other.store.status(run_id)[0] == "paused"


def test_a_refused_start_claims_nothing(tmp_path):
    store = RunStore(tmp_path)
    free, held = store.create(small_run("feature_extraction")), store.create(small_run("feature_extraction"))
    other = "elsewhere:1:abcdef"  # another live process, on another host
    store.leases.heartbeat(other)
    assert store.leases.claim(held, other) is None
    manager = JobManager(RunStore(tmp_path))
    with pytest.raises(RuntimeError, match="pid 1 on elsewhere"):
        manager.start([free, held], steps=1)
    assert store.status(free)[0] == "created" and store.status(held)[0] == "running"
    manager.start([free], steps=1)  # the free one was left free
    manager.wait(60)
    assert store.status(free)[0] == "paused"


def test_turns_alternate_between_sessions_not_between_bursts():
    """Three bursts of one session against one of another: the lone session still gets every other turn (a
    plain lock would give it a quarter, or nothing while the others keep re-taking it)."""

    turns, taken = jobs.Turns(), []
    gate = threading.Barrier(4)

    def burst(session: str, n: int) -> None:
        gate.wait()
        for _ in range(n):
            with turns.turn(session):
                taken.append(session)
                time.sleep(0.002)

    threads = [threading.Thread(target=burst, args=("a", 40)) for _ in range(3)]
    threads.append(threading.Thread(target=burst, args=("b", 40)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(taken) == 160
    first = taken[:60]  # while every burst still has turns to take
    assert 0.45 <= first.count("b") / len(first) <= 0.55
    assert taken[-40:].count("a") == 40  # then a's bursts, which b no longer waits beside, use the device alone


def test_two_sessions_bursts_share_the_device(tmp_path):
    store = RunStore(tmp_path)
    manager = JobManager(store, slice_steps=2)
    mine = manager.create_run(small_run("feature_extraction", epochs=4), "g1", by=Caller.browser("alice"))
    theirs = manager.create_run(small_run("fine_tune_top", epochs=4), "g2", by=Caller.browser("bob"))
    manager.start([mine], epochs=4)
    manager.start([theirs], epochs=4)
    manager.wait(120)
    assert store.session(mine) == "alice" and store.session(theirs) == "bob"
    order = [r for r in store.metrics.step_log().run_id if r in (mine, theirs)]
    assert order.count(mine) == order.count(theirs) == 20
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 8  # turns alternate while both train; neither waits for the other to finish


def test_a_download_shows_its_progress_before_the_first_step_then_fails_in_words(tmp_path, monkeypatch, no_network):
    """ImageNet weights arriving: the run's snapshot says what is downloading and how far it is (the Train page
    and the CLI show it), instead of 'running, step 0'. The stand-in bytes are not torchvision's file, so
    the checksum refuses them and the run fails saying so."""
    from conftest import SlowLine
    from core.models.backbones import ModelConfig

    line = SlowLine(monkeypatch, 3 << 20, hold=True)
    manager = JobManager(RunStore(tmp_path))
    cfg = RunConfig(data=DataConfig(per_class=5, val_per_class=5, image_size=32), model=ModelConfig("resnet18"))
    run_id = manager.create_run(cfg)
    manager.start([run_id], steps=1)
    wait_for(lambda: manager.snapshot(run_id).preparing.startswith("downloading"))  # after decoding the digits
    fraction, words = manager.snapshot(run_id).preparation
    assert words.startswith("downloading resnet18-") and words.endswith("1.0 of 3.1 MB")
    assert abs(fraction - 1 / 3) < 0.01 and manager.snapshot(run_id).step == 0
    line.release.set()
    manager.wait(60)
    snap = manager.snapshot(run_id)
    assert snap.status == "failed" and "checksum mismatch" in snap.message and snap.preparation is None


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_finished_run_lengthened_carries_on_to_the_curve_a_longer_run_draws(tmp_path):
    """In memory, and restored from its checkpoint by another manager: +1 epoch on a finished 2-epoch run
    gives what a 3-epoch run gives."""
    reference = JobManager(RunStore(tmp_path / "ref"))
    ref_id = reference.create_run(small_run("fine_tune_top", epochs=3))
    reference.start([ref_id], epochs=3)
    reference.wait(60)
    want = reference.store.metrics.curves([ref_id]).val_loss.tolist()
    for fresh_manager in (False, True):
        manager = JobManager(RunStore(tmp_path / f"run{fresh_manager}"))
        run_id = manager.create_run(small_run("fine_tune_top", epochs=2))
        manager.start([run_id], epochs=5)
        manager.wait(60)
        assert manager.store.status(run_id)[0] == "finished"
        if fresh_manager:  # the run is read back from its checkpoint, as after a restart
            manager = JobManager(manager.store)
        assert manager.lengthen([run_id], 1) == [run_id] and manager.store.config(run_id).epochs == 3
        assert manager.store.status(run_id)[0] == "paused"
        manager.start([run_id], epochs=1)
        manager.wait(60)
        assert manager.store.status(run_id)[0] == "finished"
        assert manager.store.metrics.curves([run_id]).val_loss.tolist() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="extension lasts 1 to 500 epochs"):
        manager.lengthen([run_id], 0)
