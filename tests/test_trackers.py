"""Export to experiment trackers, read back with each tracker's own reader: MLflow's client on a local file
store, TensorBoard's EventAccumulator on the log folder. Each test skips, saying why, without the library."""

import importlib.util
import math
import re
from pathlib import Path

import pytest

from core.__main__ import main
from core.execution.jobs import JobManager
from core.insight import trackers
from core.runtime import paths
from core.store.runs import RunStore
from core.training.config import demo_comparison

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="MLflow is an optional install (pip install -e '.[mlflow]')")
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="TensorBoard is an optional install (pip install -e '.[tensorboard]')")


@pytest.fixture
def trained():
    """Two demo runs (feature extraction and fine-tuning the top blocks), two epochs each, in the store."""
    manager = JobManager(RunStore())
    run_ids = [manager.create_run(cfg, "tracked") for cfg in demo_comparison(epochs=2)[:2]]
    manager.start(run_ids, epochs=2)
    manager.wait(120)
    return manager.store, run_ids


def test_flat_params_name_every_leaf_of_a_config_with_a_dotted_key():
    cfg = demo_comparison()[1]
    flat = trackers.flat_params(cfg)
    assert flat["model.backbone"] == "demo" and flat["phases.0.plan.trainable"] == "layer3,layer4"
    assert flat["phases.0.lr"] == cfg.phases[0].lr and flat["data.per_class"] == 20
    assert flat["phases.0.plan.truncate_after"] == "None" and flat["data.classes"] == ""


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@needs_mlflow
def test_mlflow_export_reads_back_params_metrics_with_steps_tags_and_the_checkpoint(trained, tmp_path):
    from mlflow.tracking import MlflowClient

    store, run_ids = trained
    target = tmp_path / "mlruns"
    first = trackers.to_mlflow(store, run_ids, target)
    again = trackers.to_mlflow(store, run_ids, target)  # replaces the first export, never doubles it
    client = MlflowClient(tracking_uri=trackers.mlflow_uri(target))
    experiment = client.get_experiment_by_name(trackers.EXPERIMENT)
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in found) == sorted(again) and not set(first) & set(again)
    for run_id, mlflow_id in zip(run_ids, again, strict=True):
        run = client.get_run(mlflow_id)
        cfg = store.config(run_id)
        assert run.data.tags[trackers.RUN_TAG] == run_id and run.data.tags["label"] == cfg.label
        assert run.data.params["model.backbone"] == "demo"
        assert run.data.params["phases.0.plan.trainable"] == ",".join(cfg.phases[0].plan.trainable)
        curve = store.metrics.curves([run_id])
        history = client.get_metric_history(mlflow_id, "val_acc")
        assert [(m.step, m.value) for m in history] == list(zip(curve.step, curve.val_acc, strict=True))
        steps = client.get_metric_history(mlflow_id, "step_loss")
        assert len(steps) == len(store.metrics.curves([run_id], kind="step")) == 10
        assert run.info.status == "FINISHED"
        artifacts = [a.path for a in client.list_artifacts(mlflow_id, "checkpoint")]
        assert artifacts == ["checkpoint/checkpoint.pt"]


@needs_tensorboard
def test_tensorboard_export_reads_back_scalars_and_hparams(trained, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    store, run_ids = trained
    folders = trackers.to_tensorboard(store, run_ids, tmp_path / "tb")
    trackers.to_tensorboard(store, run_ids, tmp_path / "tb")  # again: the folders are replaced, not appended to
    for run_id, folder in zip(run_ids, folders, strict=True):
        events = EventAccumulator(str(folder))
        events.Reload()
        curve = store.metrics.curves([run_id])
        got = [(e.step, e.value) for e in events.Scalars("epoch/val_acc")]
        assert [s for s, _ in got] == list(curve.step)
        assert all(math.isclose(v, want, rel_tol=1e-6) for (_, v), want in zip(got, curve.val_acc, strict=True))
        assert len(events.Scalars("step/loss")) == 10
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["model.backbone"].string_value == "demo"
        assert hparams["label"].string_value == store.label(run_id)
        assert math.isclose(events.Scalars("hparam/val_acc")[0].value, curve.val_acc.iloc[-1], rel_tol=1e-6)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@needs_mlflow
@needs_tensorboard
def test_the_export_command_writes_both(trained, tmp_path, capsys):
    _, run_ids = trained
    assert main(["export", "--mlflow", str(tmp_path / "ml"), "--tensorboard", str(tmp_path / "tb"),
                 "--runs", run_ids[0]]) == 0
    out = capsys.readouterr().out
    assert "mlflow ui --backend-store-uri file://" in out and "tensorboard --logdir" in out
    assert len(list((tmp_path / "tb").iterdir())) == 1
    assert main(["export", "--runs", run_ids[0]]) == 2  # no destination
    assert main(["export", "--mlflow", str(tmp_path / "ml"), "--runs", "no-such-run"]) == 2
    assert "No run no-such-run" in capsys.readouterr().err


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@needs_tensorboard
def test_compare_page_exports_the_selected_runs(trained, tmp_path):
    from tests.test_pages import _run

    at = _run("app_pages/compare.py")
    at.text_input(key="compare.tensorboard.target").set_value(str(tmp_path / "tb"))  # outside what is shared
    at.button(key="compare.tensorboard.export").click()
    _run("", at)
    assert any("exports from a browser only into" in e.value for e in at.error)
    assert not (tmp_path / "tb").exists()
    inside = paths.home() / "tb"
    at.text_input(key="compare.tensorboard.target").set_value(str(inside))
    at.button(key="compare.tensorboard.export").click()
    _run("", at)
    assert any("runs exported" in s.value for s in at.success)
    assert len(list(inside.iterdir())) == len(at.multiselect(key="compare.selected").value) == 2


@needs_mlflow
def test_a_tracking_server_that_refuses_is_said_in_one_sentence(trained, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    def refuse(self, *args, **kwargs):  # what a server answers when it refuses: a RestException
        from mlflow.exceptions import RestException
        raise RestException({"error_code": "PERMISSION_DENIED", "message": "no writes for you"})

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", refuse)
    store, run_ids = trained
    with pytest.raises(trackers.ExportFailed, match=re.escape("MLflow at http://127.0.0.1:9 refused the export: "
                                                             "PERMISSION_DENIED: no writes for you")):
        trackers.export("mlflow", store, run_ids, "http://127.0.0.1:9")
    assert main(["export", "--mlflow", "http://127.0.0.1:9", "--runs", run_ids[0]]) == 2
    assert "refused the export" in capsys.readouterr().err


def test_exporting_onto_a_file_or_an_unwritable_folder_is_one_line(trained, tmp_path, capsys):
    _, run_ids = trained
    (tmp_path / "a-file").write_text("not a folder")
    for target in (tmp_path / "a-file", Path("/proc/freezelab/tb")):  # /proc: no folder can be made, even by root
        for tracker in ("tensorboard", "mlflow"):
            if importlib.util.find_spec(tracker) is None:
                continue
            code = main(["export", f"--{tracker}", str(target), "--runs", run_ids[0]])
            err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
            assert code == 2 and "Traceback" not in err and err.startswith("Nothing more was exported to"), err


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@needs_mlflow
def test_mlflow_export_with_the_model_logs_one_that_predicts_as_the_run(trained, tmp_path):
    import mlflow
    import mlflow.pytorch
    import torch

    from core.data.datasets import to_float
    from core.insight.analysis import predict
    from core.store.trained_models import TrainedModels

    store, run_ids = trained
    target = tmp_path / "mlruns"
    exported = trackers.to_mlflow(store, run_ids[:1], target, with_model=True)
    mlflow.set_tracking_uri(trackers.mlflow_uri(target))
    logged = mlflow.pytorch.load_model(f"runs:/{exported[0]}/model")
    model, data = TrainedModels(store, torch.device("cpu")).model_at(run_ids[0])
    with torch.no_grad():
        got = logged(to_float(data.val_x)).softmax(1)  # a module as exported in eval mode
    assert torch.allclose(got, predict(model, data.val_x), atol=1e-6)
    assert mlflow.get_run(exported[0]).data.tags["classes"] == ",".join(data.classes)
    plain = trackers.to_mlflow(store, run_ids[:1], tmp_path / "plain")  # without: no model logged
    mlflow.set_tracking_uri(trackers.mlflow_uri(tmp_path / "plain"))
    with pytest.raises(Exception):  # noqa: B017 - MLflow's own error type for a missing artifact varies
        mlflow.pytorch.load_model(f"runs:/{plain[0]}/model")
