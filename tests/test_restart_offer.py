"""Restart from step 0 is offered for a run a burst stopped because its checkpoint was missing: the store keeps
that reason by kind (RunProblem), the snapshot carries it, and the live view's button follows it, never the words
of the run's message."""

from streamlit.testing.v1 import AppTest

from core.execution.jobs import JobManager
from core.store.runs import RunStore
from core.store.status import RunProblem, RunStatus
from tests.conftest import small_run


def _lost_checkpoint(store: RunStore) -> str:
    """A run trained one epoch of four, whose checkpoint is then deleted; a burst then finds it missing."""
    first = JobManager(store)
    run_id = first.create_run(small_run("fine_tune_top", epochs=4))
    first.start([run_id], epochs=1)
    first.wait(60)
    store.checkpoints.path(run_id).unlink()
    return run_id


def test_a_burst_that_finds_the_checkpoint_missing_says_so_by_kind_in_the_store_and_the_snapshot(tmp_path):
    run_id = _lost_checkpoint(RunStore(tmp_path))
    again = JobManager(RunStore(tmp_path))  # a new process: nothing in memory
    again.start([run_id], epochs=1)
    again.wait(60)
    assert again.snapshot(run_id).status == RunStatus.STOPPED
    assert again.snapshot(run_id).problem is RunProblem.CHECKPOINT_MISSING  # the snapshot of the burst that found it
    assert again.store.problem(run_id) is RunProblem.CHECKPOINT_MISSING
    assert JobManager(RunStore(tmp_path)).snapshot(run_id).problem is RunProblem.CHECKPOINT_MISSING  # read back
    again.start([run_id], epochs=1, restart=True)
    again.wait(60)
    assert again.snapshot(run_id).status == RunStatus.PAUSED and again.store.metrics.recorded_steps(run_id) == 5
    assert again.snapshot(run_id).problem is RunProblem.NONE and again.store.problem(run_id) is RunProblem.NONE


def _live_view(run_ids: list[str]) -> None:
    from ui import live_view

    live_view.show(run_ids, busy=False, key="k")


def test_the_live_view_offers_a_restart_for_the_typed_reason_and_not_for_the_words():
    store = RunStore()
    lost = _lost_checkpoint(store)
    burst = JobManager(store)
    burst.start([lost], epochs=1)  # finds it missing: stopped, with the reason
    burst.wait(60)
    wordy = store.create(small_run("fine_tune_top", epochs=4))  # stopped, its message saying the old words
    store.set_status(wordy, RunStatus.STOPPED, "its checkpoint is missing or unreadable, said a user's note")

    at = AppTest.from_function(_live_view, args=([lost, wordy],), default_timeout=120).run()
    assert not at.exception, at.exception
    assert [b.key for b in at.button] == [f"k.restart.{lost}"]  # one offer: the run whose reason is the kind
    assert len(at.warning) == 1 and "checkpoint is missing" in at.warning[0].value
    assert any("said a user's note" in c.value for c in at.caption)  # the other's message is shown, as words
