"""Your own network as a backbone: named by the operator as FILE.py:FUNCTION, validated, trained around its blocks;
never named by a link."""

import os
import re
from pathlib import Path

import pytest
import torch

from core import links
from core.__main__ import main
from core.models import backbones, own
from core.models.backbones import ModelConfig
from core.models.network import build_model
from core.store.runs import RunStore

EXAMPLE = Path(__file__).parent / "models" / "own_model.py"


@pytest.fixture(autouse=True)
def forget_own_models(monkeypatch):
    """Each test registers into a registry of its own: a name registered here is not left for other tests."""
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    monkeypatch.setenv(own.MODEL_FILES_ENV, "")  # restored afterwards, even where the CLI sets it


def test_a_factory_returning_a_module_gets_blocks_where_its_resolution_halves_and_trains():
    name = own.register(f"{EXAMPLE}:tiny_cnn")
    assert name == "own_model.tiny_cnn".join(("own:", "")) and own.register(f"{EXAMPLE}:tiny_cnn") == name
    assert backbones.block_names(name) == ("stem", "stage1", "stage2", "stage3")
    net = build_model(ModelConfig(name, weights="none"), num_classes=3)
    assert net.image_size == 28 and net(torch.rand(2, 3, 28, 28)).shape == (2, 3)
    owned = [p for b in net.blocks.values() for p in b.parameters()]
    assert len({id(p) for p in owned}) == len(owned) == 14  # 4 convolutions' and 3 BatchNorms' two each, once


def test_a_factory_that_names_its_blocks_keeps_them():
    name = own.register(f"{EXAMPLE}:tiny_cnn_named")
    assert backbones.block_names(name) == ("early", "late")
    net = build_model(ModelConfig(name, weights="none"), num_classes=4)
    assert net.block_names == ["early", "late"] and net(torch.rand(1, 3, 28, 28)).shape == (1, 4)


@pytest.mark.parametrize(("reference", "says"), [
    ("missing.py:f", "No model file at"),
    (f"{EXAMPLE}", "Name a model as path/to/model.py:factory"),
    (f"{EXAMPLE}:nothing_here", "has no function 'nothing_here'"),
    (f"{EXAMPLE}:not_a_model", "returns str, not a torch.nn.Module"),
    (f"{EXAMPLE}:blocks_that_do_not_chain", "blocks do not run one after another at 28 px (at first"),
])
def test_a_bad_model_file_is_refused_in_one_sentence(reference, says):
    with pytest.raises(own.ModelFileRefused, match=re.escape(says)) as err:
        own.register(reference)
    assert "\n" not in str(err.value)


STALLING = """
import threading

from torch import nn

calls = 0


def forever():
    threading.Event().wait()  # never returns


def once():
    # returns when registered; each later call (building a run's model) never returns
    global calls
    calls += 1
    if calls > 1:
        threading.Event().wait()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
    return model, {"only": model}
"""


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_a_factory_or_file_that_never_returns_is_refused_naming_it_and_the_caller_goes_on(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setattr(own, "SECONDS_ALLOWED", 0.5)
    stalling = tmp_path / "stalling.py"
    stalling.write_text(STALLING)
    with pytest.raises(own.ModelFileRefused, match=re.escape(f"{stalling}'s forever() did not finish within 0.5 s")):
        own.register(f"{stalling}:forever")
    name = own.register(f"{stalling}:once")
    with pytest.raises(own.ModelFileRefused, match=re.escape(f"{stalling}'s once() did not finish within 0.5 s")):
        build_model(ModelConfig(name, weights="none"), num_classes=3)
    (tmp_path / "hangs_on_import.py").write_text("import threading\nthreading.Event().wait()\n")
    with pytest.raises(own.ModelFileRefused, match=r"hangs_on_import\.py's import did not finish within 0\.5 s"):
        own.register(f"{tmp_path / 'hangs_on_import.py'}:f")
    assert main(["train", "--model-file", f"{stalling}:forever", "--epochs", "1"], prog="freezelab") == 2
    err = capsys.readouterr().err
    assert "forever() did not finish" in err and err.count("\n") == 1


def test_the_cli_trains_the_operators_network_named_by_its_file(capsys):
    assert main(["train", "--model-file", f"{EXAMPLE}:tiny_cnn", "--epochs", "1", "--per-class", "10",
                 "--preset", "fine_tune_top", "--weights", "none"], prog="freezelab") == 0
    runs = RunStore().runs()
    assert list(runs.backbone) == ["own:own_model.tiny_cnn"] and runs.val_acc.notna().all()
    assert os.environ[own.MODEL_FILES_ENV] == ""  # registered in this process; the command line writes no variable
    assert main(["train", "--model-file", "nope.py:f"], prog="freezelab") == 2
    assert "No model file at" in capsys.readouterr().err


def test_a_link_cannot_name_code_to_run():
    opened, problems = links.from_query({"backbone": f"own:{EXAMPLE.stem}.tiny_cnn"})
    assert opened.model.backbone == "demo" and problems  # not registered by the operator here: refused
    with pytest.raises(ValueError, match="named by the operator"):
        backbones.get_spec("own:own_model.tiny_cnn")
    opened, problems = links.from_query({"backbone": f"own:{EXAMPLE}:tiny_cnn"})
    assert opened.model.backbone == "demo" and problems


def test_a_process_started_with_the_variable_registers_what_it_names_and_only_that(monkeypatch):
    """The app's trainer and the command line call register_from_environment before building a run's model."""
    with pytest.raises(ValueError, match="named by the operator"):
        backbones.get_spec("own:own_model.tiny_cnn")
    monkeypatch.setenv(own.MODEL_FILES_ENV, f"{EXAMPLE}:tiny_cnn;{EXAMPLE}:tiny_cnn_named")
    assert own.register_from_environment() == ["own:own_model.tiny_cnn", "own:own_model.tiny_cnn_named"]
    assert backbones.get_spec("own:own_model.tiny_cnn").family == "your own"


def test_the_app_offers_the_operators_network_and_says_why_a_bad_one_is_not(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.runtime import settings
    from ui import resources

    root = Path(__file__).resolve().parents[1]
    for named, check in ((f"{EXAMPLE}:tiny_cnn", "offered"), (f"{EXAMPLE}:not_a_model", "refused")):
        monkeypatch.setenv(own.MODEL_FILES_ENV, named)
        settings.reset()  # a new server here: it reads its settings
        resources.operator_models.clear()  # once per server
        at = AppTest.from_file(str(root / "streamlit_app.py"), default_timeout=120).run()
        at.switch_page("app_pages/layers.py").run()
        assert not at.exception
        if check == "offered":
            assert "own:own_model.tiny_cnn · your own" in at.selectbox(key="layers.backbone").options
        else:
            assert "returns str, not a torch.nn.Module" in " ".join(e.value for e in at.error)
    resources.operator_models.clear()


@pytest.mark.process
def test_the_apps_trainer_process_trains_the_operators_network_it_was_started_with(monkeypatch):
    """The server registers the network from $FREEZELAB_MODEL_FILES; the trainer it starts, a process of its own,
    registers it from the same variable, and trains it. A trainer started without the variable refuses it."""
    from conftest import wait_for
    from core.data.datasets import DataConfig
    from core.execution import trainer_client as trainer
    from core.freezing import recipes_for
    from core.runtime import settings
    from core.training.config import OptimConfig, RunConfig
    from core.training.rules import ConfigInvalid

    monkeypatch.setenv(trainer.MODE_ENV, "process")
    monkeypatch.setenv(own.MODEL_FILES_ENV, f"{EXAMPLE}:tiny_cnn")
    name = own.register_from_environment()[0]
    cfg = RunConfig.from_recipe(recipes_for(backbones.block_names(name))["fine_tune_top"], epochs=1,
                                data=DataConfig(per_class=10, val_per_class=10), model=ModelConfig(name, "none"),
                                optim=OptimConfig(batch_size=10))
    home = Path(os.environ["FREEZELAB_HOME"])
    outcomes = []
    for variable in (f"{EXAMPLE}:tiny_cnn", ""):  # the app's start, then one without the operator's word
        monkeypatch.setenv(own.MODEL_FILES_ENV, variable)  # what the trainer inherits when it is spawned
        settings.reset()  # a new server: it reads its settings, and hands them to the trainer it starts
        client = trainer.TrainerClient(RunStore(home), threads=1)
        try:
            run_id = client.create_run(cfg)
            client.start([run_id], epochs=1)
            wait_for(lambda c=client, r=run_id: not c.is_busy(r))
            snap = client.snapshot(run_id)
            outcomes.append((str(snap.status), snap.message))
            assert trainer.ask(home, "ready") not in (None, os.getpid())  # trained in the trainer's process
        except ConfigInvalid as err:  # refused at the trainer's door, before anything is stored
            outcomes.append(("refused", str(err)))
        finally:
            trainer.shut_down(home)
    assert outcomes[0] == ("finished", ""), outcomes[0]
    assert outcomes[1][0] == "refused" and "named by the operator" in outcomes[1][1], outcomes[1]
    assert len(RunStore(home).runs()) == 1  # only the run the first trainer trained


@pytest.mark.ray
def test_a_ray_sweep_trains_the_operators_network_its_driver_registered():
    """A Ray worker (maybe on another machine) has neither the driver's registry nor, there, its environment: each
    trial carries the reference of the network it trains. The variable is empty here, as on such a worker."""
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional install (requirements-extras.txt)")
    from core.data.datasets import DataConfig
    from core.execution import ray_engine
    from core.freezing import recipes_for
    from core.training.config import OptimConfig, RunConfig

    name = own.register(f"{EXAMPLE}:tiny_cnn_named")
    assert os.environ[own.MODEL_FILES_ENV] == ""
    plans = recipes_for(backbones.block_names(name))
    configs = [RunConfig.from_recipe(plans[key], epochs=1, data=DataConfig(per_class=10, val_per_class=10),
                                     model=ModelConfig(name, "none"), optim=OptimConfig(batch_size=10))
               for key in ("fine_tune_top", "fine_tune_all")]
    store = RunStore()
    run_ids = ray_engine.run_sweep(store, configs, "own-sweep", cpus=2)
    assert [store.status(r) for r in run_ids] == [("finished", "")] * 2
    assert store.runs().set_index("id").loc[run_ids].val_acc.notna().all()


@pytest.mark.ray
def test_a_ray_trial_whose_model_file_is_gone_fails_saying_why(tmp_path):
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional install (requirements-extras.txt)")
    import shutil

    from core.data.datasets import DataConfig
    from core.execution import ray_engine
    from core.freezing import recipes_for
    from core.training.config import OptimConfig, RunConfig

    moved = shutil.copy(EXAMPLE, tmp_path / "moved_model.py")
    name = own.register(f"{moved}:tiny_cnn")
    cfg = RunConfig.from_recipe(recipes_for(backbones.block_names(name))["fine_tune_top"], epochs=1,
                                data=DataConfig(per_class=10, val_per_class=10), model=ModelConfig(name, "none"),
                                optim=OptimConfig(batch_size=10))
    Path(moved).unlink()  # moved away after the driver registered it: the worker cannot import it
    store = RunStore()
    [run_id] = ray_engine.run_sweep(store, [cfg], "own-sweep", cpus=1)
    status, message = store.status(run_id)
    assert status == "failed" and f"No model file at {moved}" in message and "error.txt" in message
