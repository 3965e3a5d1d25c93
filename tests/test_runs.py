import io

import pandas as pd
import pytest

from core.data.datasets import DataConfig
from core.freezing import FreezePlan, recipes_for
from core.models.backbones import HeadConfig, ModelConfig
from core.store.runs import RunStore, config_from_json, config_to_json
from core.training.config import OptimConfig, RunConfig
from core.training.events import BurstEnd, CacheStatus, EpochEnd, PhaseSwitch, StepEnd

BLOCKS = ["stem", "layer1", "layer2", "layer3", "layer4"]


def _rich_config() -> RunConfig:
    recipe = recipes_for(BLOCKS)["two_phase"]
    cfg = RunConfig.from_recipe(recipe, data=DataConfig(source="folder", path="/x", classes=("a", "b"), flip=True),
                                model=ModelConfig("resnet18", "file:/w.pt", HeadConfig("flatten", (128, 64), 0.5)),
                                optim=OptimConfig(name="sgd", lr=0.1), epochs=7, patience=3)
    plan = FreezePlan.freeze_to(BLOCKS, 2, bn="affine", lr_mult=(("layer2", 0.1),), truncate_after="layer3")
    return RunConfig(cfg.data, cfg.model, (cfg.phases[0], type(cfg.phases[0])(plan, epochs=None, lr=1e-5)),
                     cfg.optim, cfg.epochs, label="rich")


def test_configs_round_trip_through_json():
    cfg = _rich_config()
    again = config_from_json(config_to_json(cfg))
    assert again == cfg
    assert isinstance(again.phases[1].plan.lr_mult[0], tuple) and again.model.head.hidden == (128, 64)


def test_store_round_trips_runs_and_metrics(tmp_path):
    store = RunStore(tmp_path)
    cfg = _rich_config()
    run_id = store.create(cfg, params=100, trainable=10)
    assert store.config(run_id) == cfg
    assert store.status(run_id) == ("created", "")
    store.metrics.record(run_id, [
        CacheStatus(0, True, 5, "all frozen"),
        StepEnd(1, 0.5, 2.0, 1e-3, 100.0, 0.1),
        StepEnd(2, 1.0, 1.5, 1e-3, 110.0, 0.2),
        EpochEnd(2, 1, 1.7, 0.4, 1.6, 0.45, 1e-3, 105.0, 0.2),
        PhaseSwitch(2, 1, 1, tuple(BLOCKS), 1e-5),
        StepEnd(3, 1.5, 1.2, 1e-5, 90.0, 0.3),
        EpochEnd(4, 2, 1.2, 0.6, 1.1, 0.65, 1e-5, 95.0, 0.4),
        BurstEnd(4, 2, "budget"),
    ])
    store.set_status(run_id, "paused")
    curves = store.metrics.curves([run_id])
    assert list(curves.epoch) == [1, 2] and list(curves.val_acc) == [0.45, 0.65]
    assert list(curves.label) == ["rich", "rich"] and list(curves.lr) == [1e-3, 1e-5]
    steps = store.metrics.curves([run_id], kind="step")
    assert list(steps.loss) == [2.0, 1.5, 1.2]
    events = store.metrics.events(run_id)
    assert list(events.kind) == ["cache", "phase", "burst"]
    assert events.detail[1]["lr"] == 1e-5 and events.detail[0]["reason"] == "all frozen"
    table = store.runs()
    row = table.set_index("id").loc[run_id]
    assert row.status == "paused" and row.backbone == "resnet18" and row.weights == "file:/w.pt"
    assert row.val_acc == 0.65 and row.best_val_acc == 0.65 and row.epochs == 2 and row.steps == 4
    assert row.trainable == 10 and row.params == 100
    exported = pd.read_csv(io.StringIO(store.metrics.export_csv([run_id])))
    assert list(exported.val_loss) == [1.6, 1.1]

    store.metrics.forget_after(run_id, 2)
    assert list(store.metrics.curves([run_id]).epoch) == [1]
    assert list(store.metrics.events(run_id).kind) == ["cache", "phase"]
    with pytest.raises(ValueError, match="Unknown status"):
        store.set_status(run_id, "sleeping")


def test_delete_removes_rows_and_checkpoint_and_interrupted_runs_are_marked(tmp_path):
    store = RunStore(tmp_path)
    keep, drop = store.create(RunConfig(label="keep")), store.create(RunConfig(label="drop"))
    store.metrics.record(drop, [StepEnd(1, 0.1, 1.0, 1e-3, 1.0, 0.1)])
    path = store.checkpoints.save(drop, {"x": 1})
    assert store.checkpoints.load(drop) == {"x": 1} and path.exists()
    store.set_status(keep, "running")
    store.delete(drop)
    assert list(store.runs().id) == [keep]
    assert store.metrics.curves([drop], kind="step").empty and not path.exists()
    assert store.leases.mark_interrupted() == 1
    assert store.status(keep)[0] == "interrupted"
    with pytest.raises(KeyError):
        store.config(drop)
    # A second store on the same file sees the same runs (one SQLite file, several connections).
    assert list(RunStore(tmp_path).runs().label) == ["keep"]


def test_a_damaged_store_is_named_left_alone_and_can_be_set_aside(tmp_path):
    import pytest

    from core.store.database import StoreDamaged

    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)  # a header, then nonsense
    before = path.read_bytes()
    with pytest.raises(StoreDamaged) as err:
        RunStore(tmp_path)
    assert str(path) in str(err.value) and "left as it is" in str(err.value)
    assert path.read_bytes() == before  # untouched
    aside = RunStore.set_aside(tmp_path)
    assert aside.read_bytes() == before and not path.exists()
    fresh = RunStore(tmp_path)
    assert fresh.runs().empty


def test_a_run_whose_stored_config_is_damaged_is_listed_not_fatal(tmp_path):
    import sqlite3

    import pytest

    from core.store.runs import ConfigUnreadable

    store = RunStore(tmp_path)
    good, bad = store.create(RunConfig(label="good")), store.create(RunConfig(label="bad"))
    with sqlite3.connect(store.path) as con:  # plant the fault: half a JSON object
        con.execute("UPDATE runs SET config = '{\"data\": {' WHERE id = ?", (bad,))
    table = store.runs().set_index("id")
    assert table.loc[good, "readable"] and not table.loc[bad, "readable"]
    assert table.loc[bad, "backbone"] == "unreadable" and table.loc[good, "backbone"] == "demo"
    with pytest.raises(ConfigUnreadable, match=f"run {bad} cannot be read"):
        store.config(bad)
    store.delete(bad)
    assert list(store.runs().id) == [good]


def test_the_curves_version_moves_exactly_when_what_curves_reads_changes(tmp_path):
    """The live chart re-reads the store only when this key moves: a write it missed would freeze the chart,
    a key that moved on every poll would re-read for nothing."""
    store = RunStore(tmp_path)
    run_id, other = store.create(_rich_config()), store.create(_rich_config())
    seen = [store.metrics.curves_version([run_id])]
    store.metrics.record(other, [StepEnd(1, 0.5, 9.0, 1e-3, 100.0, 0.1)])
    assert store.metrics.curves_version([run_id]) == seen[-1]  # another run's steps are not this chart's
    store.metrics.record(run_id, [StepEnd(1, 0.5, 2.0, 1e-3, 100.0, 0.1), StepEnd(2, 1.0, 1.5, 1e-3, 110.0, 0.2)])
    seen.append(store.metrics.curves_version([run_id]))
    assert store.metrics.curves_version([run_id]) == seen[-1]  # nothing written: the same key, no re-read
    store.metrics.forget_after(run_id, 1)
    seen.append(store.metrics.curves_version([run_id]))
    # The redone step fills the very rows the forgotten one held (same count, same newest row id).
    store.metrics.record(run_id, [StepEnd(2, 1.0, 1.4, 1e-3, 110.0, 0.2)])
    seen.append(store.metrics.curves_version([run_id]))
    assert len(set(seen)) == len(seen)  # every change moved the key, the redo included
    assert list(store.metrics.curves([run_id], kind="step").loss) == [2.0, 1.4]
