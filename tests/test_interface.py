"""The one interface to training (core/execution/interface.py): the trainer answers exactly its calls, the
client forwards each, and a sweep started through it is covered by is_training and stop_training."""

import threading

import pytest

from core.execution import trainer_client, trainer_server
from core.execution.interface import TRAINING_CALLS, Training
from core.execution.jobs import JobManager
from core.store.runs import RunStore
from core.training.config import RunConfig


def test_the_trainer_answers_exactly_the_interfaces_training_calls(tmp_path):
    assert set(trainer_server.CALLS) == {*TRAINING_CALLS, "shut_down"}
    client = trainer_client.TrainerClient(RunStore(tmp_path))  # abstract methods left would refuse to instantiate
    for call in TRAINING_CALLS:
        assert callable(getattr(client, call)) and getattr(type(client), call) is not getattr(Training, call)
    served = trainer_server._Served(JobManager(RunStore(tmp_path)), threading.Event(), key=b"k" * 32)
    assert served.call("snapshots", (), {}) == {}
    with pytest.raises(ValueError, match="does not answer 'wait'"):  # the manager has it; the interface does not
        served.call("wait", (), {})


def test_is_training_and_stop_training_cover_a_sweep_started_through_the_interface(tmp_path):
    manager = JobManager(RunStore(tmp_path))
    run_id = manager.create_run(RunConfig(label="in a sweep"), group="sweep-1")
    other = manager.create_run(RunConfig(label="not in it"))
    began = threading.Event()

    def sweep(stop: threading.Event) -> None:  # as a Ray sweep does: trains until asked to stop
        began.set()
        stop.wait(30)

    thread = manager.start_sweep("sweep-1", sweep)
    began.wait(5)
    assert manager.is_training([run_id]) and not manager.is_training([other])
    manager.stop_training([run_id])
    thread.join(5)
    assert not thread.is_alive() and not manager.is_training([run_id])


def test_the_training_mode_is_read_from_the_environment_and_a_wrong_one_is_said(use_settings):
    use_settings(trainer="thread")
    assert not trainer_client.in_own_process()
    use_settings(trainer="")
    assert trainer_client.in_own_process()  # the app's default
    use_settings(trainer="threads")
    with pytest.raises(ValueError, match="must be 'process' or 'thread'"):
        trainer_client.in_own_process()
