import json
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.models import zoo
from core.models.backbones import ModelConfig
from core.models.network import build_model


@pytest.mark.slow
def test_pretrain_writes_a_zoo_entry_that_loads(capsys):
    assert main(["pretrain", "--epochs", "2", "--name", "tiny"]) == 0
    folder = zoo.entry_dir("tiny")
    assert folder is not None and folder.parent == zoo.roots()[-1]  # the user's zoo
    manifest = json.loads((folder / zoo.MANIFEST).read_text())
    assert manifest["command"] == "python -m core pretrain --epochs 2 --name tiny"
    assert manifest["epochs"] == 2 and manifest["heldout_images"] == 500
    assert manifest["source_accuracy"] > 0.8  # two epochs already learn digits far above chance (0.2)
    net = build_model(ModelConfig("demo", weights="zoo:tiny"), num_classes=2)
    saved = torch.load(folder / zoo.CHECKPOINT, weights_only=True)["state_dict"]
    assert torch.equal(net.blocks["stem"][0].weight, saved["blocks.stem.0.weight"])
    assert "held-out accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_backbones_command_lists_the_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "demo" in out and "ImageNet" in out


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_train_runs_the_demo_comparison_end_to_end(capsys):
    from core.store.runs import RunStore

    assert main(["train", "--epochs", "2", "--per-class", "10"]) == 0
    out = capsys.readouterr().out
    for label in ("Feature extraction", "Fine-tune the top 2 blocks", "From scratch"):
        assert label in out
    runs = RunStore().runs()
    assert len(runs) == 3 and set(runs.status) == {"finished"} and set(runs.epochs) == {2}
    fe = runs.set_index("label").loc["Feature extraction"]
    assert fe.trainable == 645 and fe.params > 300_000  # the head only: 128 * 5 + 5


def test_train_and_lr_find_refuse_an_unknown_preset_naming_the_choices(capsys):
    for command in ("train", "lr-find"):
        with pytest.raises(SystemExit) as ended:
            main([command, "--preset", "freeze_half"])
        assert ended.value.code == 2
        err = capsys.readouterr().err
        assert "invalid choice: 'freeze_half'" in err and "'fine_tune_top'" in err


def test_lr_find_prints_the_sweep_and_a_suggestion(capsys):
    assert main(["lr-find", "--preset", "feature_extraction", "--steps", "20", "--per-class", "10"]) == 0
    out = capsys.readouterr().out
    suggested = float(out.split("suggested learning rate for Feature extraction: ")[1].split()[0])
    assert 1e-7 < suggested < 1.0 and "the preset's own: 0.01" in out


def test_train_flags_make_the_plan_the_layers_page_would(capsys):
    from core.freezing import FreezePlan
    from core.store.runs import RunStore

    assert main(["train", "--trainable", "layer4", "--bn", "stats", "--lr-mult", "layer4=0.5", "--head-hidden", "16",
                 "--head-dropout", "0.1", "--epochs", "1", "--per-class", "5"]) == 0
    store = RunStore()
    (run_id,) = store.runs().id
    cfg = store.config(run_id)
    assert cfg.label == "Current plan: layer4 train · BN stats · lr 0.001"  # what it trains, in its name
    assert store.status(run_id)[0] == "finished"
    assert cfg.phases[0].plan == FreezePlan(trainable=("layer4",), bn="stats", lr_mult=(("layer4", 0.5),))
    assert cfg.model.head.hidden == (16,) and cfg.model.head.dropout == 0.1
    capsys.readouterr()
    assert main(["train", "--trainable", "layer9"]) == 2
    assert "demo has no block 'layer9'; its blocks are stem, layer1" in capsys.readouterr().err
    assert main(["train", "--lr-mult", "layer4"]) == 2
    assert "A learning-rate multiplier is BLOCK=FACTOR" in capsys.readouterr().err


def test_runs_commands_list_show_export_and_delete(capsys, tmp_path):
    from core.store.runs import RunStore

    assert main(["train", "--preset", "feature_extraction", "--epochs", "1", "--per-class", "5"]) == 0
    (run_id,) = RunStore().runs().id
    capsys.readouterr()
    assert main(["runs", "list"]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["runs", "show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "Feature extraction" in shown and "val_acc" in shown and '"backbone": "demo"' in shown
    assert main(["runs", "export-csv", "--out", str(tmp_path / "c.csv")]) == 0
    assert run_id in (tmp_path / "c.csv").read_text()
    assert main(["runs", "show", "nope"]) == 2 and "No run nope" in capsys.readouterr().err
    assert main(["runs", "delete", run_id]) == 0
    assert RunStore().runs().empty


@pytest.mark.slow
def test_runs_resume_carries_a_run_on_from_its_checkpoint_to_the_curve_it_would_have_drawn_unbroken(capsys):
    from core import freezing
    from core.data.datasets import DataConfig
    from core.execution.jobs import JobManager
    from core.models.backbones import block_names
    from core.store.runs import RunStore
    from core.store.status import RunProblem
    from core.training.config import DEMO_OPTIM, comparison

    (cfg,) = comparison(freezing.recipes_for(block_names("demo")), ["fine_tune_top"], data=DataConfig(per_class=5),
                        optim=DEMO_OPTIM, epochs=3)
    manager = JobManager(RunStore())  # the thread count `runs resume` trains with: the curves are bit for bit
    paused, straight, lost = (manager.create_run(cfg) for _ in range(3))
    manager.start([paused, lost], epochs=1)  # one epoch of three: both 'paused' at their burst's end
    manager.start([straight], epochs=3)
    manager.wait()
    store = manager.store
    store.checkpoints.path(lost).unlink()  # a lost file: its one stored epoch is not silently dropped
    capsys.readouterr()

    assert main(["runs", "resume", paused, lost]) == 0
    err = capsys.readouterr().err
    assert store.status(paused)[0] == "finished" and len(store.metrics.curves([paused])) == 3
    columns = ["step", "epoch", "train_loss", "val_loss", "val_acc"]
    assert store.metrics.curves([paused])[columns].equals(store.metrics.curves([straight])[columns])
    assert store.status(lost)[0] == "stopped" and "checkpoint is missing" in err
    assert store.problem(lost) is RunProblem.CHECKPOINT_MISSING and len(store.metrics.curves([lost])) == 1

    assert main(["runs", "resume", lost, "--restart", "--epochs", "2"]) == 0
    assert store.status(lost)[0] == "paused" and store.metrics.curves([lost]).epoch.tolist() == [1, 2]
    assert main(["runs", "resume", lost, "--epochs", "0"]) == 2
    assert "lasts 1 to 500 epochs, not 0" in capsys.readouterr().err
    assert main(["runs", "resume", straight]) == 2
    assert f"{straight} (Fine-tune the top 2 blocks) is finished: only created, paused" in capsys.readouterr().err


@pytest.mark.process
def test_ctrl_c_stops_training_with_every_run_saved_and_runs_resume_carries_them_on():
    from conftest import ctrl_c_after_the_first_epoch
    from core.store.runs import RunStore

    status, _, err = ctrl_c_after_the_first_epoch("train", "--epochs", "50", "--per-class", "10")
    store = RunStore()
    runs = store.runs().set_index("id")
    assert status == 0 and "stopping: each run ends the step it is in" in err
    assert len(runs) == 3 and set(runs.status) == {"stopped"}
    stopped_at = {r: store.metrics.recorded_steps(r) for r in runs.index}
    for run_id, step in stopped_at.items():  # each saved where it stopped
        assert step > 0 and store.checkpoints.load(run_id)["counters"]["step"] == step
    before = store.metrics.curves(list(runs.index), kind="step")
    assert main(["runs", "resume", *runs.index, "--epochs", "1"]) == 0
    assert set(store.runs().set_index("id").loc[runs.index].status) == {"paused"}
    after = store.metrics.curves(list(runs.index), kind="step")
    for run_id, step in stopped_at.items():  # on from there: the steps before it kept, new ones after it
        kept = after[(after.run_id == run_id) & (after.step <= step)].reset_index(drop=True)
        assert not kept.empty and kept.equals(before[before.run_id == run_id].reset_index(drop=True))
        assert after[after.run_id == run_id].step.max() > step


@pytest.mark.slow
def test_a_run_made_in_the_app_trains_again_from_its_json_on_the_command_line(capsys, tmp_path):
    """The app's demo comparison, then one of its runs again through `runs show --config` and `train --config`
    at the app's thread count: the same metrics, bit for bit."""
    import os
    import time

    from core.store.runs import RunStore
    from tests.test_pages import _run

    at = _run("streamlit_app.py")
    at.button(key="start.demo").click()
    _run("", at)
    store = RunStore()
    end = time.monotonic() + 120
    while set(store.runs().status) != {"finished"}:
        assert time.monotonic() < end
        time.sleep(0.1)
    runs = store.runs().set_index("label")
    app_run = runs.loc["Fine-tune the top 2 blocks", "id"]
    capsys.readouterr()
    assert main(["runs", "show", app_run, "--config"]) == 0
    (tmp_path / "run.json").write_text(capsys.readouterr().out)
    assert main(["train", "--config", str(tmp_path / "run.json"),
                 "--threads", str(max(1, (os.cpu_count() or 1) - 1))]) == 0
    again = next(r for r in store.runs().id if r not in set(runs.id))
    assert store.config(again) == store.config(app_run)
    columns = ["step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    assert len(store.metrics.curves([app_run])) == 6
    assert store.metrics.curves([again])[columns].equals(store.metrics.curves([app_run])[columns])
    (tmp_path / "bad.json").write_text('{"model": 3}')
    assert main(["train", "--config", str(tmp_path / "bad.json")]) == 2
    assert "is not a FreezeLab run config" in capsys.readouterr().err


def test_the_cli_shows_a_download_and_the_device(capsys, monkeypatch, no_network):
    """The CLI's bars say what is downloading while weights arrive (the bytes are not torchvision's file, so
    the checksum refuses them and the run fails, saying so)."""
    from conftest import SlowLine

    SlowLine(monkeypatch, 8 << 20, delay=0.05)  # a slow line: the bars redraw five times a second
    assert main(["train", "--backbone", "resnet18", "--preset", "feature_extraction", "--image-size", "32",
                 "--per-class", "5", "--epochs", "1"]) == 1
    out, err = capsys.readouterr()
    assert "training on CPU" in out
    assert "downloading resnet18-" in err and " of 8.4 MB" in err
    assert "checksum mismatch" in err


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_image_size_follows_the_backbone_unless_given(capsys):
    from core.store.runs import RunStore

    flags = ["--preset", "feature_extraction", "--weights", "none", "--per-class", "2", "--epochs", "1"]
    assert main(["train", "--backbone", "resnet18", *flags]) == 0
    assert main(["train", "--backbone", "resnet18", "--image-size", "32", *flags]) == 0
    assert main(["train", *flags]) == 0  # the demo net
    store = RunStore()
    sizes = [store.config(r).data.image_size for r in reversed(list(store.runs().id))]  # oldest first
    assert sizes == [64, 32, 28]  # resnet18's registry size, the one asked for, the demo net's
    assert "(default: the backbone's own size;" in _help(["train", "--help"])
    sweep = _help(["sweep", "--help"])
    assert "--optimizer {adam,adamw,sgd} (default: adam)" in sweep and "--seed SEED (default: 0)" in sweep


def _help(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(argv)
    return " ".join(out.getvalue().split())  # as one line: argparse wraps the help to the terminal's width


@pytest.mark.parametrize(("argv", "said"), [
    (["lr-find", "--per-class", "5", "--start", "0.1", "--end", "0.01"], "0 < start < end"),
    (["lr-find", "--per-class", "5", "--start", "nan"], "0 < start < end"),
    (["lr-find", "--per-class", "5", "--steps", "0"], "at least 5 steps"),
    (["sweep", "--epochs", "0"], "at least one epoch each"),
    (["sweep", "--seeds", "10000"], "one sweep makes at most 200: at most 28 seeds for demo"),
    (["train", "--data", "folder"], "The image folder is missing: give its path."),
    (["sweep", "--data", "folder", "--path", "/no/such/folder"], "does not exist"),
    (["train", "--backbone", "vgg11", "--image-size", "16"], "vgg11 needs images of at least 32 pixels"),
    (["pretrain", "--data", "folder", "--path", "/no/such/folder"], "does not exist"),
])
def test_a_bad_value_on_the_command_line_ends_in_one_line_and_stores_nothing(capsys, argv, said):
    from core.store.runs import RunStore

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert RunStore().runs().empty


def test_exporting_into_a_missing_folder_says_so(capsys, tmp_path):
    assert main(["runs", "export-csv", "--out", str(tmp_path / "missing" / "runs.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Cannot write {tmp_path / 'missing' / 'runs.csv'}") and "Traceback" not in err


def test_ctrl_c_while_a_sweep_creates_its_runs_stops_creating_and_trains_nothing(capsys):
    import os
    import signal

    from core.cli.common import Invocation
    from core.cli.progress import train
    from core.data.datasets import DataConfig
    from core.execution.jobs import JobManager
    from core.experiments import studies
    from core.models.backbones import ModelConfig
    from core.store.runs import RunStore
    from core.training.config import DEMO_OPTIM

    class Interrupted(JobManager):
        def create_run(self, cfg, group="", **who):
            if len(self.store.runs()) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as a terminal sends it, while runs are made
            return super().create_run(cfg, group, **who)

    configs = studies.depth_sweep(DataConfig(per_class=5), ModelConfig(), DEMO_OPTIM, 1, seeds=3)
    # Python's own Ctrl-C handler, as in a terminal: a shell that starts pytest in the background ignores SIGINT.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_ids = train(Interrupted(RunStore()), configs, "sweep", Invocation())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert 3 <= len(run_ids) < len(configs)
    runs = RunStore().runs()
    assert set(runs.id) == set(run_ids) and set(runs.status) == {"created"}  # kept, none trained
    assert "stopped creating" in capsys.readouterr().err


def test_runs_created_in_the_same_instant_never_share_an_id(tmp_path):
    from core.store.runs import RunStore
    from core.training.config import RunConfig

    class SameInstant(RunStore):
        drawn = iter(["20261204-120000-aaaaaa", "20261204-120000-aaaaaa", "20261204-120000-aaaaab"])

        def _new_id(self):
            return next(self.drawn)

    store = SameInstant(tmp_path)
    assert [store.create(RunConfig()), store.create(RunConfig())] == ["20261204-120000-aaaaaa",
                                                                      "20261204-120000-aaaaab"]


def test_a_ray_address_where_nothing_listens_is_said_at_once_and_stores_nothing(capsys):
    import socket

    from core.store.runs import RunStore

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["sweep", "--engine", "ray", "--address", f"127.0.0.1:{port}", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"Nothing answers at 127.0.0.1:{port}" in err and "Traceback" not in err
    assert RunStore().runs().empty


@pytest.mark.parametrize(("config", "said"), [
    ({"optim": "adam"}, "optim must be an object of name, lr"),
    ({"epochs": "5"}, "epochs must be a whole number, not '5'"),
    ({"epoch": 3, "epochs": 2}, "config has no key 'epoch' (its keys: data, model, phases"),
    ({"optim": {"lr": 0.01, "batchsize": 8}}, "optim has no key 'batchsize'"),
    ({"phases": [{"plan": {"trainable": "layer4"}}]}, "phases[0].plan.trainable must be a list, not 'layer4'"),
    ({"phases": [{"plan": {}, "lr": True}]}, "phases[0].lr must be a number, not True"),
    ({"optim": {"name": "adamx"}}, "optim.name is one of adam, adamw, sgd"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction must be between 0 and 1"),
    ("[" * 100_000 + "]" * 100_000, "nested far deeper than any run config"),
    ([1, 2], "config must be an object of data, model"),
])
def test_a_config_file_is_checked_whole_and_each_problem_named(capsys, tmp_path, config, said):
    from core.store.runs import RunStore

    path = tmp_path / "run.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert RunStore().runs().empty


def test_a_config_no_run_can_train_with_is_never_stored_and_a_stored_one_is_checked_as_read():
    import sqlite3

    from core.store.runs import ConfigUnreadable, RunStore
    from core.training.config import ConfigInvalid, OptimConfig, RunConfig

    store = RunStore()
    with pytest.raises(ConfigInvalid, match=r"optim\.name is one of"):
        store.create(RunConfig(optim=OptimConfig(name="adamx")))
    assert store.runs().empty
    run_id = store.create(RunConfig())
    with sqlite3.connect(store.path) as con:  # a config edited by hand, with a key no config has
        con.execute("UPDATE runs SET config = json_set(config, '$.optim.momentun', 0.5) WHERE id = ?", (run_id,))
    with pytest.raises(ConfigUnreadable, match="optim has no key 'momentun'"):
        store.config(run_id)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_command_line_says_its_version_defaults_and_json_and_ends_quietly_into_head(capsys, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from core.store.runs import RunStore
    from core.training.config import RunConfig

    with pytest.raises(SystemExit):
        main(["--version"], prog="freezelab")
    assert capsys.readouterr().out.startswith("freezelab ")
    assert main(["runs", "show"], prog="freezelab") == 2  # a message names the command as the user typed it
    assert "(`freezelab runs list` shows them)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "(default: 1)" in capsys.readouterr().out  # --seeds' default, said
    store = RunStore()
    run_ids = [store.create(RunConfig(label=f"run {i}")) for i in range(500)]
    assert main(["runs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in listed} == set(run_ids) and listed[0]["val_acc"] is None
    assert main(["runs", "show", run_ids[0], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == run_ids[0] and shown["config"]["label"] == "run 0" and shown["curve"] == []
    # More than a pipe holds, read by `head -1`: the writer meets a closed pipe and ends quietly.
    command = subprocess.Popen([sys.executable, "-m", "core", "runs", "list", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    command.stdout.readline()
    command.stdout.close()
    err = command.stderr.read().decode()
    assert command.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_into_a_file_or_a_pipe_training_says_one_line_per_epoch_not_bars(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-m", "core", "train", "--epochs", "2", "--per-class", "5",
                           "--preset", "feature_extraction"], capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [ln.split(", val_acc")[0] for ln in lines if ": epoch " in ln] == [
        "Feature extraction: epoch 1 of 2", "Feature extraction: epoch 2 of 2"]
    assert "\r" not in done.stderr and "epoch/s" not in done.stderr  # no bar redrawn into a log


def _loads_torch(code: str) -> bool:
    """Whether running `code` in a fresh interpreter, in the project's folder, imports torch."""
    import subprocess
    import sys
    from pathlib import Path

    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1] == "True"


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_help_version_and_runs_list_answer_without_loading_torch():
    from core.store.runs import RunStore
    from core.training.config import demo_comparison

    store = RunStore()
    run_ids = [store.create(cfg) for cfg in demo_comparison()]  # listing reads and checks each config whole
    asked = "from core.cli import main\ntry:\n    main({argv})\nexcept SystemExit:\n    pass"
    for argv in (["--help"], ["--version"], ["train", "--help"], ["runs", "list"], ["runs", "list", "--json"]):
        assert not _loads_torch(asked.format(argv=argv)), argv
    assert _loads_torch(asked.format(argv=["runs", "delete", run_ids[0]]))  # the probe sees it where it loads



@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_json_summaries_of_train_and_sweep_keep_stdout_for_the_json(capsys):
    from core.store.runs import RunStore
    from core.training.config import demo_comparison

    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # an empty store is an empty list, not a sentence
    assert main(["train", "--per-class", "2", "--epochs", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)  # nothing else on stdout
    assert [r["label"] for r in summary["runs"]] == [cfg.label for cfg in demo_comparison()]
    assert all(r["status"] == "finished" and 0 <= r["val_acc"] <= 1 for r in summary["runs"])
    assert "training on CPU" in err and summary["store"].endswith("runs.sqlite")
    assert main(["sweep", "--per-class", "2", "--epochs", "1", "--json", "--same-lr", "--lr", "0.02"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert len(sweep["runs"]) == len(sweep["by_frozen_blocks"]) == 7  # 0 to 5 of 5 blocks frozen, and the control
    store = RunStore()  # --same-lr, a switch as on `train`: every setting at --lr, the control too
    assert {store.config(r["id"]).phases[0].lr for r in sweep["runs"]} == {0.02}


def test_the_help_gives_its_examples_in_the_words_the_user_typed():
    assert "python -m core train --config run.json" in _help(["--help"])  # main's default: `python -m core`
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["--help"], prog="freezelab")
    assert "freezelab train --config run.json" in out.getvalue() and "python -m core train" not in out.getvalue()


def test_each_runs_subcommand_offers_only_its_own_options():
    listing = _help(["runs", "list", "--help"])
    assert "--json" in listing and not any(f in listing for f in ("--restart", "--epochs", "--out", "--config"))
    resuming = _help(["runs", "resume", "--help"])
    assert "--restart" in resuming and "--epochs" in resuming and "--json" not in resuming
    assert "--out" in _help(["runs", "export-csv", "--help"]) and "--config" in _help(["runs", "show", "--help"])
    with pytest.raises(SystemExit) as ended:  # an option of another subcommand is refused, not ignored
        main(["runs", "list", "--restart"])
    assert ended.value.code == 2


def test_report_recipes_are_named_as_such_and_the_old_names_are_gone(capsys):
    from core.store.runs import RunStore

    assert main(["train", "--report-recipe", "no_such_recipe"], prog="freezelab") == 2
    assert "Unknown report recipe 'no_such_recipe'; `freezelab report-recipes` lists them." in capsys.readouterr().err
    assert "--report-recipe KEY" in _help(["train", "--help"])
    for old in (["recipes"], ["train", "--recipe", "vgg16_dense128"]):
        with pytest.raises(SystemExit):
            main(old)
    assert RunStore().runs().empty


EXAMPLE = Path(__file__).parent / "models" / "own_model.py"


def test_the_app_hands_what_it_shares_to_its_server_in_the_servers_environment_not_its_own(tmp_path, monkeypatch):
    """The operator's flags reach the Streamlit server (and its trainer) as settings in the environment handed to
    them; this process's own is left as it was (the command line writes no os.environ)."""
    import os

    from core.models import backbones, own
    from core.runtime import settings, shares

    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))  # registered here, for this test only
    monkeypatch.setenv(settings.TRAINER, "thread")
    monkeypatch.setenv(shares.SHARE_ENV, "/srv/images")  # shared already: kept, the flag's folder beside it
    monkeypatch.delenv(own.MODEL_FILES_ENV, raising=False)
    settings.reset()
    started = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: started.update(argv=argv, env=env))
    before = dict(os.environ)
    assert main(["app", "--share", str(tmp_path), "--model-file", f"{EXAMPLE}:tiny_cnn", "--teacher-code", "plum",
                 "--max-model-size", "20", "--server.port", "8599"]) == 0
    assert dict(os.environ) == before
    env = started["env"]
    assert env[shares.SHARE_ENV] == f"/srv/images{os.pathsep}{tmp_path.resolve()}"
    assert env[own.MODEL_FILES_ENV] == f"{EXAMPLE.resolve()}:tiny_cnn"
    server = settings.Settings.from_environ(env)  # what the server and its trainer act on
    assert server.teacher_code == "plum" and server.max_model_m == 20 and server.trainer == "thread"
    assert started["argv"][-2:] == ["--server.port", "8599"]
    assert "own:own_model.tiny_cnn" in backbones.list_backbones()  # checked here, before the server starts


@pytest.mark.process
def test_the_trainer_the_app_starts_trains_the_operators_network_though_this_process_never_named_it(monkeypatch):
    """`freezelab app --model-file` starts the trainer with the network in its environment: a run of it trains
    in that trainer, which this process's environment never named."""
    import os

    from conftest import wait_for
    from core.data.datasets import DataConfig
    from core.execution import trainer_client
    from core.freezing import recipes_for
    from core.models import backbones, own
    from core.models.backbones import ModelConfig
    from core.runtime import settings
    from core.store.runs import RunStore
    from core.training.config import OptimConfig, RunConfig

    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    monkeypatch.setenv(settings.TRAINER, "process")
    monkeypatch.delenv(own.MODEL_FILES_ENV, raising=False)
    settings.reset()
    started = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: started.update(env=env))  # no server started here
    home = RunStore().root

    def answering():
        try:
            return trainer_client.ask(home, "ready")
        except OSError:
            return None

    try:
        assert main(["app", "--model-file", f"{EXAMPLE}:tiny_cnn"]) == 0
        assert own.MODEL_FILES_ENV not in os.environ
        wait_for(answering, "the trainer the app started never answered")
        trainer_pid = answering()
        for variable, value in started["env"].items():  # the server's settings, which its trainer shares
            monkeypatch.setenv(variable, value)
        settings.reset()
        name = "own:own_model.tiny_cnn"
        cfg = RunConfig.from_recipe(recipes_for(backbones.block_names(name))["fine_tune_top"], epochs=1,
                                    data=DataConfig(per_class=10, val_per_class=10), model=ModelConfig(name, "none"),
                                    optim=OptimConfig(batch_size=10))
        client = trainer_client.TrainerClient(RunStore(home), threads=1)
        run_id = client.create_run(cfg)
        client.start([run_id], epochs=1)
        wait_for(lambda: not client.is_busy(run_id))
        snap = client.snapshot(run_id)
        assert (str(snap.status), snap.message) == ("finished", "")
        assert answering() == trainer_pid  # trained by the trainer the app started, not one started since
    finally:
        trainer_client.shut_down(home)
