"""Experiments: the depth sweep (job manager and Ray), the reports' recipes (timm included), and
pretraining into the zoo followed by transfer from it."""

import json
import math
import threading

import pandas as pd
import pytest
import torch

from conftest import wait_for
from core import freezing
from core.__main__ import main
from core.data.datasets import DataConfig, load_data
from core.execution.jobs import JobManager
from core.experiments import report_recipes, studies
from core.freezing import RECIPE_LR, recipes_for
from core.models import weights, zoo
from core.models.backbones import TIMM_AVAILABLE, ModelConfig, block_names
from core.models.network import build_model
from core.store.runs import RunStore
from core.training.config import DEMO_OPTIM
from core.training.events import EpochEnd, StepEnd
from core.training.loop import run_burst, start_run

needs_timm = pytest.mark.skipif(not TIMM_AVAILABLE, reason="timm is an optional install (requirements-extras.txt): "
                                                           "InceptionResNetV2 is not registered without it")
TINY = DataConfig(per_class=10, val_per_class=20)


# --- the depth sweep ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_sweep_command_stores_one_run_per_depth_and_the_control_with_a_spread_over_two_seeds(capsys):
    assert main(["sweep", "--epochs", "1", "--per-class", "10", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    store = RunStore()
    runs = store.runs()
    blocks = block_names("demo")
    assert len(runs) == 2 * (len(blocks) + 2) and set(runs.status) == {"finished"}  # depths 0..5, the control
    table = studies.sweep_table(store, list(runs.id))
    assert list(table.setting) == [f"{k} frozen" for k in range(len(blocks) + 1)] + [studies.CONTROL]
    assert (table.runs == 2).all() and (table.finished == 2).all()
    assert table.spread.notna().all() and (table.spread >= 0).all()  # two seeds: a spread for every setting
    assert (table.min_val_acc <= table.mean_val_acc).all() and (table.mean_val_acc <= table.max_val_acc).all()
    for run_id in runs.id:  # what each run trains is what its setting says
        cfg = store.config(run_id)
        k = studies.frozen_depth(cfg)
        if k is None:
            assert cfg.model.weights == "none" and cfg.start_lr == RECIPE_LR["from_scratch"]
        else:
            assert cfg.phases[0].plan.trainable == blocks[k:]
            assert cfg.start_lr == freezing.suited_lr(cfg.phases[0].plan, blocks)
    assert "5 frozen" in out and "from scratch" in out and "spread" in out


def test_seeds_change_training_but_not_the_images():
    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=1, seeds=2)
    by_seed = {c.seed: c for c in configs if c.label.startswith("2 of")}
    assert by_seed[0].data == by_seed[1].data and by_seed[0].phases == by_seed[1].phases
    data = load_data(TINY)
    losses = [[e.loss for e in run_burst(start_run(by_seed[s], data), steps=3) if isinstance(e, StepEnd)]
              for s in (0, 1)]
    assert losses[0] != losses[1]  # another head initialisation and data order


def test_a_sweep_can_hold_one_rate_for_every_setting():
    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=1, same_lr=3e-4)
    assert {c.start_lr for c in configs} == {3e-4}
    with pytest.raises(ValueError, match="at least one seed"):
        studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=1, seeds=0)


def _on_the_job_manager(configs, epochs: int, root) -> tuple[RunStore, list[str]]:
    """The same runs trained straight through on the job manager, in a store under `root`, on one thread as
    each Ray trial has: (that store, their ids)."""
    manager = JobManager(RunStore(root), threads=1)
    ids = [manager.create_run(cfg) for cfg in configs]
    manager.start(ids, epochs=epochs)
    manager.wait()
    return manager.store, ids


def _skip_without_ray_tune() -> None:
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional install (requirements-extras.txt); the Ray "
                                           "engine is not tested without it")


@pytest.mark.ray
def test_the_ray_engine_runs_a_two_trial_sweep_into_the_run_store():
    _skip_without_ray_tune()
    from core.execution import ray_engine

    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=2)[-3:-1]  # 5 frozen, scratch
    store = RunStore()
    seen = []
    run_ids = ray_engine.run_sweep(store, configs, "sweep-ray", cpus=2, progress=lambda d, t, w: seen.append(d))
    runs = store.runs().set_index("id").loc[run_ids]
    assert list(runs.status) == ["finished", "finished"] and list(runs.epochs) == [2, 2]
    assert seen[-1] == 4  # two trials, two epochs each
    jobs, ids = _on_the_job_manager(configs, 2, store.root / "jobs")  # the same curves
    for ray_id, job_id in zip(run_ids, ids, strict=True):
        a, b = store.metrics.curves([ray_id]), jobs.metrics.curves([job_id])
        assert a.val_loss.tolist() == pytest.approx(b.val_loss.tolist(), rel=1e-5)
        assert store.checkpoints.steps(ray_id) and store.checkpoints.load(ray_id)["counters"]["epoch"] == 2
        assert len(store.metrics.block_stats([ray_id])) > 0  # the Inside page has what it reads
    assert not list((store.root / "ray").rglob("checkpoint_*"))  # Tune's copies of what the store holds are gone


@pytest.mark.ray
def test_a_stopped_ray_sweep_leaves_every_run_resumable_and_resumed_they_give_the_uninterrupted_curves():
    _skip_without_ray_tune()
    from core.execution import ray_engine

    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=4)[-3:]  # 4, 5 frozen; scratch
    store, stop = RunStore(), threading.Event()
    # One CPU: one trial at a time. Stop is asked after the first epoch stored, while that trial trains its next.
    run_ids = ray_engine.run_sweep(store, configs, "sweep-ray", cpus=1, progress=lambda d, t, w: stop.set(),
                                   stop=stop)
    runs = store.runs().set_index("id").loc[run_ids]
    assert set(runs.status) == {"stopped"}  # none finished, none 'interrupted': every one resumes
    trained = runs[runs.epochs > 0]
    assert len(trained) == 1 and 1 <= trained.epochs.iloc[0] < 4  # the others never began
    assert store.checkpoints.load(trained.index[0])["counters"]["epoch"] == trained.epochs.iloc[0]
    assert not list((store.root / "ray").rglob("checkpoint_*"))
    # Resumed on the job manager (one thread, as each trial had), against the same runs never stopped.
    resumed = JobManager(store, threads=1)
    resumed.start(run_ids, epochs=4)
    resumed.wait()
    assert set(store.runs().set_index("id").loc[run_ids].status) == {"finished"}
    straight, ids = _on_the_job_manager(configs, 4, store.root / "straight")
    for ray_id, job_id in zip(run_ids, ids, strict=True):
        a, b = store.metrics.curves([ray_id]), straight.metrics.curves([job_id])
        assert len(a) == 4 and a.val_loss.tolist() == pytest.approx(b.val_loss.tolist(), rel=1e-5)


@pytest.mark.ray
def test_ray_sweeps_started_together_take_turns_and_one_stopped_while_it_waits_ends_at_once():
    """Two sessions of the app (or a double click) start sweeps at once: Ray is started once per process."""
    _skip_without_ray_tune()
    from core.execution import ray_engine

    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=2)[-3:-1]
    store = RunStore()
    stops = {name: threading.Event() for name in "abc"}
    threads = {name: threading.Thread(target=ray_engine.run_sweep, args=(store, configs, f"sweep-{name}"),
                                      kwargs={"cpus": 1, "stop": stops[name]}) for name in "abc"}
    threads["a"].start()
    wait_for(lambda: len(store.group("sweep-a")) == 2, "the first sweep did not create its runs")
    threads["b"].start()
    threads["c"].start()
    wait_for(lambda: len(store.group("sweep-c")) == 2 and
             {store.status(r) for r in store.group("sweep-c")} == {("running", ray_engine.QUEUED)},
             "the third sweep did not say it waits")
    stops["c"].set()
    threads["c"].join(timeout=5)
    assert not threads["c"].is_alive() and threads["a"].is_alive()  # it ended at once, not after the others
    assert {store.status(r)[0] for r in store.group("sweep-c")} == {"stopped"}
    threads["a"].join()
    threads["b"].join()
    for name in "ab":
        runs = store.runs().set_index("id").loc[store.group(f"sweep-{name}")]
        assert list(runs.status) == ["finished", "finished"] and list(runs.epochs) == [2, 2]
    assert store.runs().set_index("id").loc[store.group("sweep-c")].epochs.isna().all()


_RAY_DRIVER = """
import sys, threading, time
from core.experiments import studies
from core.execution import ray_engine
from core.models.backbones import ModelConfig
from core.data.datasets import DataConfig
from core.store.runs import RunStore
from core.training.config import DEMO_OPTIM
epochs, checkpoint_every_s, ending = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
configs = studies.depth_sweep(DataConfig(per_class=10, val_per_class=20), ModelConfig(), DEMO_OPTIM,
                                  epochs=epochs)[-3:]
store = RunStore()
threading.Thread(target=ray_engine.run_sweep, args=(store, configs, "sweep-ray"),  # in a thread, as in the app
                 kwargs={"cpus": 1, "checkpoint_every_s": checkpoint_every_s}, daemon=True).start()
while not (store.runs().epochs >= 2).any():  # two epochs of the first trial stored
    time.sleep(0.05)
if ending == "exit":
    sys.exit(0)
print("killable", flush=True)
time.sleep(600)
"""


@pytest.mark.ray
@pytest.mark.process
@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_a_ray_sweep_whose_process_ends_leaves_runs_that_resume_to_the_unbroken_curves(ending, tmp_path):
    """The app's server stops mid-sweep (its sweeps run in threads): on exit it stops the sweep first, as Stop
    does, so every run is 'stopped' with its checkpoint; killed, its runs are 'interrupted', and resume from
    the checkpoints the trials sent before (here after every epoch)."""
    _skip_without_ray_tune()
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    epochs = 20
    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=epochs)[-3:]
    said = tmp_path / "driver.err"  # what the driver said, shown if it ends otherwise than asked
    driver = subprocess.Popen([sys.executable, "-c", _RAY_DRIVER, str(epochs), "60" if ending == "exit" else "0",
                               ending], cwd=Path(__file__).parents[1], start_new_session=True,
                              stdout=subprocess.PIPE, stderr=said.open("w"), text=True)
    try:
        if ending == "kill":
            assert "killable\n" in iter(driver.stdout.readline, "")  # after Tune's own lines
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        assert driver.wait(timeout=240) == (0 if ending == "exit" else -signal.SIGKILL), said.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    store = RunStore()
    by_label = {store.label(r): r for r in store.runs().id}
    run_ids = [by_label[cfg.label] for cfg in configs]
    trained = store.runs().set_index("id").query("epochs > 0")
    assert len(trained) == 1 and 2 <= trained.epochs.iloc[0] < epochs  # one CPU: the others never began
    saved_at = store.checkpoints.load(trained.index[0])["counters"]["epoch"]
    resumed = JobManager(store, threads=1)  # one thread, as each trial had
    if ending == "exit":
        assert set(store.runs().status) == {"stopped"} and saved_at == trained.epochs.iloc[0]
    else:
        assert set(store.runs().status) == {"interrupted"} and saved_at >= 1  # not only at its end
    resumed.start(run_ids, epochs=epochs)
    resumed.wait()
    assert set(store.runs().status) == {"finished"}
    straight, ids = _on_the_job_manager(configs, epochs, store.root / "straight")
    for ray_id, job_id in zip(run_ids, ids, strict=True):
        a, b = store.metrics.curves([ray_id]), straight.metrics.curves([job_id])
        assert len(a) == epochs and a.val_loss.tolist() == pytest.approx(b.val_loss.tolist(), rel=1e-5)


@pytest.mark.ray
@pytest.mark.process
def test_ctrl_c_stops_a_ray_sweep_from_the_command_line_and_every_run_resumes_there():
    """A terminal's Ctrl-C reaches the whole foreground process group: the driver and Ray's processes."""
    from conftest import ctrl_c_after_the_first_epoch

    _skip_without_ray_tune()
    status, out, err = ctrl_c_after_the_first_epoch("sweep", "--engine", "ray", "--cpus", "1", "--epochs", "50",
                                                    "--per-class", "10")
    store = RunStore()
    runs = store.runs()
    assert len(runs) == 7 and set(runs.status) == {"stopped"}  # none 'interrupted' with its epochs unsaved
    trained = runs[runs.epochs > 0]
    assert len(trained) == 1 and 1 <= trained.epochs.iloc[0] < 50  # one CPU: the others never began
    assert store.checkpoints.load(trained.id.iloc[0])["counters"]["epoch"] == trained.epochs.iloc[0]
    assert status == 0 and "stopping: each trial ends the epoch it is in" in err
    assert "7 of 7 runs were stopped" in out and studies.UNEQUAL_BUDGETS in out
    # Every run goes on from where it stopped, from the command line too.
    assert main(["runs", "resume", *runs.id, "--epochs", "1"]) == 0
    after = store.runs().set_index("id").loc[runs.id]
    assert set(after.status) == {"paused"} and (after.epochs.to_numpy() == runs.epochs.fillna(0).to_numpy() + 1).all()


# --- the reports' recipes ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("key", list(report_recipes.RECIPES))
def test_every_report_recipe_builds_applies_its_plan_and_head_and_trains_a_step(key):
    recipe = report_recipes.RECIPES[key]
    if not recipe.available:
        pytest.skip(f"{recipe.backbone} comes with {recipe.needs}, an optional install (requirements-extras.txt)")
    tiny = DataConfig(per_class=2, val_per_class=1)
    configs = recipe.configs(tiny, weights="none", epochs=1)
    assert len(configs) == len(recipe.reported_runs()) >= 1
    data = load_data(configs[0].data)
    assert configs[0].data.image_size == recipe.image_size
    for cfg in configs:
        state = start_run(cfg, data)
        model = state.model
        linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in linears] == [*recipe.head.hidden, data.num_classes]
        assert isinstance(model.head[0], torch.nn.Flatten if recipe.head.pool == "flatten" else
                          torch.nn.AdaptiveAvgPool2d)
        plan = cfg.phases[0].plan
        frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
        assert frozen or plan.trainable  # something is frozen unless the plan trains every block
        events = list(run_burst(state, steps=1))
        assert [e for e in events if isinstance(e, StepEnd)] and math.isfinite(events[1].loss)
        after = dict(model.named_parameters())
        assert all(torch.equal(v, after[n]) for n, v in frozen.items())  # frozen stays frozen
        if plan.truncate_after:
            assert model.block_names[-1] == plan.truncate_after


@pytest.mark.slow
def test_recipes_carry_the_reported_figures_and_the_cli_lists_and_runs_them(capsys):
    vgg = report_recipes.RECIPES["vgg16_truncated"]
    assert [f.acc for run in vgg.reported_runs() for f in run.reported] == [0.846, 0.892]
    assert main(["report-recipes"]) == 0
    out = capsys.readouterr().out
    assert "vgg16_truncated" in out and "89.2%" in out and "84.6%" in out
    assert main(["train", "--report-recipe", "vgg16_dense128", "--data", "demo", "--per-class", "2", "--weights",
                 "none", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "beside the report" in out and "VGG16 frozen, Flatten + Dense 128" in out
    store = RunStore()
    run_id = store.runs().id.iloc[0]
    table = report_recipes.beside_reported(report_recipes.RECIPES["vgg16_dense128"], store, [run_id])
    assert table.yours.iloc[0] == pytest.approx(store.metrics.curves([run_id]).val_acc.iloc[-1])
    assert main(["train", "--report-recipe", "no_such_recipe"]) == 2
    assert "python -m core report-recipes" in capsys.readouterr().err


@needs_timm
def test_timm_builds_inception_resnet_v2_without_weights_and_respects_its_minimum_size():
    assert block_names("inception_resnet_v2") == ("stem", "inception_a", "inception_b", "inception_c")
    net = build_model(ModelConfig("inception_resnet_v2", "none"), num_classes=3, image_size=75)
    assert net(torch.rand(2, 3, 75, 75)).shape == (2, 3)
    with pytest.raises(ValueError, match="at least 75 pixels"):
        build_model(ModelConfig("inception_resnet_v2", "none"), num_classes=3, image_size=64)


@needs_timm
def test_timm_pretrained_weights_load_from_the_hub_cache_and_a_missing_file_is_said(isolated_homes, no_network):
    import timm
    from safetensors.torch import save_file

    with pytest.raises(weights.WeightsUnavailable, match="Hugging Face hub"):
        build_model(ModelConfig("inception_resnet_v2", "pretrained"), num_classes=3, image_size=75)
    assert any("huggingface.co/timm/inception_resnet_v2" in url for url in no_network)
    torch.manual_seed(7)
    published = timm.create_model("inception_resnet_v2")  # a stand-in for the published file
    repo = isolated_homes / "huggingface" / "hub" / "models--timm--inception_resnet_v2.tf_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in published.state_dict().items()},
              repo / "snapshots" / "0123abc" / "model.safetensors")
    net = build_model(ModelConfig("inception_resnet_v2", "pretrained"), num_classes=3, image_size=75)
    assert torch.equal(net.blocks["stem"][0].conv.weight, published.conv2d_1a.conv.weight)
    assert torch.equal(net.blocks["inception_c"][-1].conv.weight, published.conv2d_7b.conv.weight)
    assert net.mean.flatten().tolist() == [0.5, 0.5, 0.5]  # the published weights' normalisation


# --- pretraining into the zoo, then transfer ------------------------------------------------------------------


@pytest.mark.slow
def test_pretraining_on_a_class_subset_saves_a_zoo_entry_that_a_transfer_run_loads_and_beats_scratch_with():
    manager = JobManager(RunStore())
    source = DataConfig(task="source", per_class=200, val_per_class=50, crop_pad=2)  # digits 0-4
    pre = manager.create_run(studies.pretrain_config(source, "demo", epochs=3))
    manager.start([pre], epochs=3)
    manager.wait()
    folder = studies.save_to_zoo(manager.store, pre, "digits04-mine")
    manifest = json.loads((folder / zoo.MANIFEST).read_text())
    assert manifest["classes"] == ["0", "1", "2", "3", "4"] and manifest["run_id"] == pre
    assert manifest["source_accuracy"] > 0.8 and len(manifest["history"]) == 3
    target = DataConfig(task="target", per_class=20)  # digits 5-9
    configs = studies.transfer_comparison("digits04-mine", "demo", target, DEMO_OPTIM, epochs=1,
                                              keys=("fine_tune_top", "from_scratch"))
    assert [c.model.weights for c in configs] == ["zoo:digits04-mine", "none"]
    data = load_data(target)
    transfer, scratch = (start_run(c, data) for c in configs)
    saved = torch.load(folder / zoo.CHECKPOINT, weights_only=True)["state_dict"]
    assert torch.equal(transfer.model.blocks["stem"][0].weight, saved["blocks.stem.0.weight"])  # it loads A
    epochs = [[e for e in run_burst(s, epochs=1) if isinstance(e, EpochEnd)] for s in (transfer, scratch)]
    first = [e[0].val_acc for e in epochs]
    assert first[0] > first[1], first
    with pytest.raises(ValueError, match="holds a demo"):
        studies.transfer_comparison("digits04-mine", "resnet18", target, DEMO_OPTIM, epochs=1)
    with pytest.raises(ValueError, match="no checkpoint yet"):
        studies.save_to_zoo(manager.store, manager.create_run(configs[1]), "nothing")


def test_the_sweep_table_reads_nan_for_unfinished_runs_rather_than_failing():
    store = RunStore()
    configs = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=1)
    ids = [store.create(c) for c in configs]
    table = studies.sweep_table(store, ids)
    assert (table.finished == 0).all() and table.mean_val_acc.isna().all()
    assert isinstance(table, pd.DataFrame) and len(table) == len(block_names("demo")) + 2


def test_presets_and_the_depth_sweep_follow_the_batchnorm_policy_they_are_given():
    from core.training.config import comparison

    blocks = ["stem", "layer1", "layer2", "layer3", "layer4"]
    configs = comparison(recipes_for(blocks), ["feature_extraction", "fine_tune_top", "two_phase"], bn="stats")
    assert {p.plan.bn for c in configs for p in c.phases} == {"stats"}
    assert {p.plan.bn for c in comparison(recipes_for(blocks), ["fine_tune_top"]) for p in c.phases} == {"frozen"}
    sweep = studies.depth_sweep(TINY, ModelConfig(), DEMO_OPTIM, epochs=1, bn="affine")
    assert {c.phases[0].plan.bn for c in sweep} == {"affine"}


def _sweep(seeds: int, means: list[float], spreads: list[float]) -> pd.DataFrame:
    settings = [f"{k} frozen" for k in range(len(means) - 1)] + [studies.CONTROL]
    return pd.DataFrame({"setting": settings, "runs": seeds, "finished": seeds, "mean_val_acc": means,
                         "spread": spreads if seeds > 1 else [float("nan")] * len(means)})


def test_a_sweeps_takeaway_says_only_what_its_table_shows():
    # README's sweep on the demo: three seeds per setting.
    means = [0.893, 0.852, 0.881, 0.889, 0.899, 0.749, 0.763]
    spreads = [0.040, 0.056, 0.025, 0.027, 0.016, 0.004, 0.086]
    said = studies.sweep_takeaway(_sweep(3, means, spreads))
    assert said.startswith("Best: 4 frozen (0.899 mean final validation accuracy).")
    assert "Within the seeds' spread of it: 0 frozen, 1 frozen, 2 frozen, 3 frozen;" in said
    assert "Freezing every block (5 frozen) ends 15.0 points below the best." in said
    assert "From scratch ends at 0.763, spread 0.086 over seeds." in said
    one = studies.sweep_takeaway(_sweep(1, means, spreads))
    assert "Within the seeds' spread" not in one and "With one seed there is no spread to judge by" in one
