"""A trained run's model leaving FreezeLab: each format, read back as another program would, predicts what the
run's model predicts on its validation images, and the manifest says what the store says."""

import importlib.util
import io
import json
import subprocess
import sys
import zipfile

import pytest
import torch

from core.__main__ import main
from core.data.datasets import to_float
from core.execution.jobs import JobManager
from core.insight.analysis import predict
from core.store import model_export as X
from core.store.runs import RunStore
from core.store.trained_models import TrainedModels
from core.training.config import demo_comparison

ONNX_MISSING = [m for m in X.ONNX_NEEDS if importlib.util.find_spec(m) is None]
FORMATS = [pytest.param(f, marks=pytest.mark.skipif(
    f is X.ModelFormat.ONNX and bool(ONNX_MISSING),
    reason=f"ONNX export is an optional install (pip install -e '.[onnx]'); missing: {', '.join(ONNX_MISSING)}"))
    for f in X.ModelFormat]


@pytest.fixture
def trained():
    """One demo run (fine-tuning the top blocks), one epoch, in the store."""
    manager = JobManager(RunStore())
    run_id = manager.create_run(demo_comparison(epochs=1)[1], "exported")
    manager.start([run_id], epochs=1)
    manager.wait(120)
    return manager.store, run_id


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_predicts_what_the_run_predicts_and_its_manifest_matches_the_store(trained, tmp_path, fmt):
    store, run_id = trained
    models = TrainedModels(store, torch.device("cpu"))
    model, data = models.model_at(run_id)
    path = X.export_model(store, run_id, tmp_path / "out", fmt, models)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([fmt.file, X.MANIFEST])
    run_model, info = X.load_exported(path.parent)
    images = to_float(data.val_x)
    got, want = run_model(images).softmax(1), predict(model, data.val_x)
    assert torch.equal(got.argmax(1), want.argmax(1))
    assert torch.allclose(got, want, atol=1e-5)
    row = store.runs().set_index("id").loc[run_id]
    assert info["run_id"] == run_id and info["final_val_acc"] == pytest.approx(row.val_acc)
    assert info["classes"] == data.classes and info["backbone"] == "demo" and info["format"] == fmt.value
    assert (info["input"]["height"], info["input"]["width"]) == tuple(data.val_x.shape[-2:])
    assert info["normalisation"]["mean"] == pytest.approx(model.mean.flatten().tolist())
    assert info["step"] == store.checkpoints.load(run_id)["counters"]["step"]


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_torch_export_runs_with_torch_alone(trained, tmp_path):
    """No FreezeLab in the program that loads it: importing `core` is made to fail there."""
    store, run_id = trained
    path = X.export_model(store, run_id, tmp_path, X.ModelFormat.TORCH_EXPORT)
    model, data = TrainedModels(store, torch.device("cpu")).model_at(run_id)
    torch.save(to_float(data.val_x[:50]), tmp_path / "images.pt")
    script = ("import sys, json, torch; sys.modules['core'] = None\n"
              f"m = torch.export.load({str(path)!r}).module()\n"
              f"x = torch.load({str(tmp_path / 'images.pt')!r}, weights_only=True)\n"
              "print(json.dumps(m(x).argmax(1).tolist()))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == predict(model, data.val_x[:50]).argmax(1).tolist()


def test_the_zip_holds_the_folder_and_a_run_without_checkpoint_is_refused_in_a_sentence(trained):
    store, run_id = trained
    zipped = zipfile.ZipFile(io.BytesIO(X.export_zip(store, run_id, "state_dict")))
    assert sorted(zipped.namelist()) == [f"freezelab-{run_id}/{X.MANIFEST}", f"freezelab-{run_id}/model.pt"]
    assert json.loads(zipped.read(f"freezelab-{run_id}/{X.MANIFEST}"))["run_id"] == run_id
    fresh = store.create(demo_comparison()[0], "untrained")
    with pytest.raises(X.ExportUnavailable, match="no checkpoint yet"):
        X.export_zip(store, fresh, "state_dict")


def test_the_cli_exports_and_names_what_it_wrote_or_why_not(trained, tmp_path, capsys):
    store, run_id = trained
    assert main(["export-model", run_id, "--out", str(tmp_path / "m")], prog="freezelab") == 0
    said = capsys.readouterr().out
    assert str(tmp_path / "m" / "model.pt") in said and X.MANIFEST in said
    assert json.loads((tmp_path / "m" / X.MANIFEST).read_text())["label"] == store.label(run_id)
    assert main(["export-model", "nosuchrun", "--out", str(tmp_path / "n")], prog="freezelab") == 2
    err = capsys.readouterr().err
    assert "No run nosuchrun" in err and "freezelab runs list" in err and not (tmp_path / "n").exists()


def test_a_run_stopped_before_its_first_epoch_ended_exports_with_no_accuracy_to_claim(tmp_path):
    manager = JobManager(RunStore())
    run_id = manager.create_run(demo_comparison(epochs=1)[1], "early")
    manager.start([run_id], steps=2)  # a checkpoint, no epoch: no validation accuracy yet
    manager.wait(120)
    path = X.export_model(manager.store, run_id, tmp_path, X.ModelFormat.STATE_DICT)
    info = json.loads((path.parent / X.MANIFEST).read_text())
    assert info["final_val_acc"] is None and info["step"] == 2


# --- Writing only where it was told (issue 45) ------------------------------------------------------------------

BRANCHY = '''
from collections import OrderedDict
from torch import nn

IMAGE_SIZE = 28


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        return x.relu() if x.mean() > 0 else -x  # a branch on the data: torch.export cannot trace it


def branchy():
    model = nn.Sequential(Branchy(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    return model, OrderedDict(first=model[0], second=model[1:])
'''


@pytest.fixture
def branchy_run(tmp_path, monkeypatch):
    """A run of the operator's own network with a data-dependent branch, one epoch on ten digits per class; the
    registry is this test's own (the network is forgotten afterwards)."""
    from core.data.datasets import DataConfig
    from core.models import backbones, own
    from core.models.backbones import ModelConfig
    from core.training.config import RunConfig

    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    monkeypatch.setenv(own.MODEL_FILES_ENV, "")
    (tmp_path / "branchy.py").write_text(BRANCHY)
    name = own.register(f"{tmp_path / 'branchy.py'}:branchy")
    cfg = RunConfig(model=ModelConfig(name, weights="none"), data=DataConfig(per_class=10, val_per_class=10),
                    epochs=1)
    manager = JobManager(RunStore())
    run_id = manager.create_run(cfg, "branchy")
    manager.start([run_id], epochs=1)
    manager.wait(120)
    assert manager.store.checkpoints.load(run_id) is not None
    return manager.store, run_id, name


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_links_already_in_the_folder_are_replaced_never_followed(trained, tmp_path):
    store, run_id = trained
    outside, out = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    out.mkdir()
    for name in ("victim.pt", "victim.json"):
        (outside / name).write_text("keep me")
    (out / "model.pt").symlink_to(outside / "victim.pt")
    (out / X.MANIFEST).symlink_to(outside / "victim.json")
    (out / "notes.txt").write_text("the operator's")
    path = X.export_model(store, run_id, out, "state_dict")
    assert [(outside / n).read_text() for n in ("victim.pt", "victim.json")] == ["keep me", "keep me"]
    assert path == out / "model.pt" and not path.is_symlink() and not (out / X.MANIFEST).is_symlink()
    assert _names(out) == sorted(["model.pt", X.MANIFEST, "notes.txt"])  # no temporary file left either
    _, info = X.load_exported(out)
    assert info["run_id"] == run_id and (out / "notes.txt").read_text() == "the operator's"


def test_an_own_network_not_given_here_is_refused_in_a_sentence_and_nothing_is_made(branchy_run, tmp_path):
    from core.models import backbones

    store, run_id, name = branchy_run
    del backbones._REGISTRY[name]  # a process the operator did not name the file to
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for out in (tmp_path / "new" / "deeper", kept):
        with pytest.raises(X.ExportUnavailable, match=r"own network own:branchy\.branchy.*FREEZELAB_MODEL_FILES") \
                as refused:
            X.export_model(store, run_id, out, "state_dict")
        assert "\n" not in str(refused.value)
    assert not (tmp_path / "new").exists() and _names(kept) == ["notes.txt"]


def test_a_network_torch_export_cannot_trace_is_refused_and_leaves_nothing_half_written(branchy_run, tmp_path,
                                                                                        capsys):
    store, run_id, _ = branchy_run
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for out in (tmp_path / "new" / "deeper", kept):
        with pytest.raises(X.ExportUnavailable, match=r"cannot be written as torch_export.*export it as state_dict"):
            X.export_model(store, run_id, out, "torch_export")
    assert not (tmp_path / "new").exists() and _names(kept) == ["notes.txt"]
    assert "def forward" not in capsys.readouterr().err  # torch's partial graph is not printed at the user
    assert X.export_model(store, run_id, kept, "state_dict").is_file()  # the format that does not trace works


def test_the_cli_says_each_refusal_in_one_line_and_exits_2(branchy_run, tmp_path, capsys):
    from core.models import backbones

    _, run_id, name = branchy_run
    assert main(["export-model", run_id, "--out", str(tmp_path / "a"), "--format", "torch_export"],
                prog="freezelab") == 2
    err = capsys.readouterr().err
    assert "cannot be written as torch_export" in err and err.count("\n") == 1 and not (tmp_path / "a").exists()
    del backbones._REGISTRY[name]
    assert main(["export-model", run_id, "--out", str(tmp_path / "b")], prog="freezelab") == 2
    err = capsys.readouterr().err
    assert "own network own:branchy.branchy" in err and err.count("\n") == 1 and not (tmp_path / "b").exists()


def test_a_damaged_checkpoint_is_refused_in_a_sentence_and_nothing_is_made(trained, tmp_path):
    store, run_id = trained
    store.checkpoints.path(run_id).write_bytes(b"PK\x03\x04 not a checkpoint any more")
    with pytest.raises(X.ExportUnavailable, match=rf"^Run {run_id}'s checkpoint cannot be read \(") as refused:
        X.export_model(store, run_id, tmp_path / "out", "state_dict")
    assert "\n" not in str(refused.value) and not (tmp_path / "out").exists()
