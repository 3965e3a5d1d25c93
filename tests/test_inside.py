"""Inside the network, on real training: drift, gradient flow and BatchNorm recorded per block; probes,
forgetting, cost against depth and the audit's flags computed over real models."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from core.data.datasets import DataConfig, load_data
from core.freezing import FreezePlan, Phase, apply, recipes_for
from core.insight import inside
from core.models.backbones import ModelConfig
from core.models.network import build_model
from core.store.runs import RunStore
from core.training import block_stats
from core.training.config import OptimConfig, RunConfig, demo_comparison
from core.training.events import BlockStats
from core.training.loop import checkpoint, make_optimizer, restore_run, run_burst, start_run

BLOCKS = ("stem", "layer1", "layer2", "layer3", "layer4")


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(per_class=20, val_per_class=40))


def _cfg(plan: FreezePlan, **kw) -> RunConfig:
    return RunConfig(DataConfig(per_class=20, val_per_class=40), phases=(Phase(plan),),
                     optim=kw.pop("optim", OptimConfig(batch_size=20)), **kw)


def _stats(state, epochs: int, tmp_path) -> pd.DataFrame:
    """Train, record the events in a store, and read the per-block table back."""
    store = RunStore(tmp_path)
    run_id = store.create(state.config)
    store.metrics.record(run_id, list(run_burst(state, epochs=epochs)))
    return store.metrics.block_stats([run_id])


def test_drift_is_zero_exactly_where_frozen_and_gradients_stop_at_the_boundary(digits, tmp_path):
    state = start_run(_cfg(FreezePlan.freeze_to(BLOCKS, 3), epochs=2), digits)  # layer3, layer4 and head train
    stats = _stats(state, 2, tmp_path)
    assert list(stats.block[:6]) == [*BLOCKS, "head"] and sorted(set(stats.epoch)) == [1, 2]
    for block, rows in stats.groupby("block"):
        trains = block in ("layer3", "layer4", "head")
        assert (rows.drift > 0).all() if trains else (rows.drift == 0).all(), block
        assert (rows.grad_norm > 0).all() if trains else rows.grad_norm.isna().all(), block
    assert stats[stats.block == "head"].bn_drift.isna().all()  # no BatchNorm in the head


def test_batchnorm_drift_follows_the_policy(digits, tmp_path):
    drift = {}
    for policy in ("frozen", "stats", "affine"):
        state = start_run(_cfg(FreezePlan.freeze_to(BLOCKS, -1, bn=policy), epochs=1), digits)
        stats = _stats(state, 1, tmp_path / policy)
        frozen = stats[stats.block.isin(BLOCKS[:-1])]
        drift[policy] = (frozen.bn_drift.max(), frozen.drift.max(), frozen.grad_norm.isna().all())
    assert drift["frozen"] == (0.0, 0.0, True)
    assert drift["stats"][0] > 0 and drift["stats"][1:] == (0.0, True)  # statistics move, no weight does
    assert drift["affine"][0] == 0.0 and drift["affine"][1] > 0 and not drift["affine"][2]  # γ, β train


def test_recording_survives_a_checkpoint_mid_epoch(digits):
    cfg = _cfg(FreezePlan.freeze_to(BLOCKS, -2), epochs=3)
    whole = [e for e in run_burst(start_run(cfg, digits), epochs=2) if isinstance(e, BlockStats)]
    state = start_run(cfg, digits)
    first = [e for e in run_burst(state, steps=7) if isinstance(e, BlockStats)]
    saved = checkpoint(state)
    resumed = restore_run(cfg, saved, digits)
    rest = [e for e in run_burst(resumed, steps=3) if isinstance(e, BlockStats)]
    resumed_stats = first + rest
    assert [(e.step, e.epoch, e.blocks) for e in resumed_stats] == [(e.step, e.epoch, e.blocks) for e in whole]
    for got, want in zip(resumed_stats, whole, strict=True):  # pytest.approx compares flat sequences only
        for measured in ("drift", "bn_drift", "grad_norm"):
            assert getattr(got, measured) == pytest.approx(getattr(want, measured)), (got.epoch, measured)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@pytest.mark.parametrize(("backbone", "size", "batch"), [("demo", 28, 20), ("resnet18", 32, 8)])
def test_bytes_saved_for_backward_fall_as_blocks_freeze(digits, backbone, size, batch):
    data = digits if backbone == "demo" else load_data(DataConfig(per_class=2, val_per_class=2, image_size=size))
    cost = inside.freeze_cost(ModelConfig(backbone, "none"), data, batch, repeats=1)
    saved = cost.saved_bytes.tolist()
    assert all(a > b for a, b in itertools.pairwise(saved)), saved
    assert cost.saved_backbone_bytes.iloc[-1] == 0 and cost.saved_backbone_bytes.iloc[0] > 0
    assert cost.saved_head_bytes.nunique() == 1  # the head saves the same whatever is frozen
    params = cost.trainable_params.tolist()
    assert all(a > b for a, b in itertools.pairwise(params))
    assert (cost.step_s > 0).all() and list(cost.frozen_blocks) == list(range(len(cost)))
    assert (cost.step_spread_s >= 0).all()


def test_the_cost_is_said_faster_only_where_the_difference_beats_the_spread(digits):
    cost = inside.freeze_cost(ModelConfig("demo", "none"), digits, 20, repeats=5)
    words = inside.cost_in_words(cost)
    assert f"{cost.saved_bytes.iloc[-1] / 2**20:,.1f} MB" in words  # memory: exact, always said
    # The same table with the times made clearly apart, then made equal within their spread.
    apart = cost.assign(step_s=[1.0 - 0.1 * k for k in cost.frozen_blocks], step_spread_s=0.01)
    assert "measurably faster than with none frozen at k = 1, 2, 3, 4, 5" in inside.cost_in_words(apart)
    # One block frozen read 0.14 s against none's 0.08 s: with spreads of 0.04 s each, that is noise.
    close = cost.assign(step_s=[0.08, 0.14, 0.09, 0.08, 0.07, 0.06], step_spread_s=0.04)
    said = inside.cost_in_words(close)
    assert "measurably faster" not in said and "measured slower" not in said
    assert "At k = 1, 2, 3, 4, 5 the difference in time is within the measurement's spread" in said


def test_a_probe_on_the_last_block_beats_one_on_the_stem(digits):
    model = build_model(ModelConfig("demo"), digits.num_classes)  # pretrained on digits 0-4
    probes = inside.linear_probes(model, digits).set_index("block").accuracy
    assert list(probes.index) == list(BLOCKS)
    assert probes["layer4"] > probes["stem"] + 0.05, probes.to_dict()


def test_feature_extraction_forgets_nothing_and_fine_tuning_forgets(digits):
    task = inside.source_task(demo_comparison()[0])
    assert task is not None and task.classes == ("0", "1", "2", "3", "4")
    source = load_data(task.data)
    results = {}
    for key, lr in (("feature_extraction", 1e-3), ("fine_tune_all", 1e-2)):
        recipe = recipes_for(BLOCKS)[key]
        cfg = RunConfig.from_recipe(recipe, data=digits.config, epochs=3, optim=OptimConfig(lr=lr, batch_size=20))
        cfg = dataclasses.replace(cfg, phases=(dataclasses.replace(cfg.phases[0], lr=lr),))
        state = start_run(cfg, digits)
        before = inside.source_accuracy(task, cfg, state.model.state_dict(), source)
        list(run_burst(state, epochs=3))
        after = inside.source_accuracy(task, cfg, state.model.state_dict(), source)
        results[key] = (before, after)
    (acc0, pred0), (acc1, pred1) = results["feature_extraction"]
    assert acc0 >= 0.95 and acc1 == acc0 and np.array_equal(pred0, pred1)  # bit for bit
    (acc0, _), (acc1, _) = results["fine_tune_all"]
    assert acc1 < acc0 - 0.2, (acc0, acc1)
    assert inside.source_task(RunConfig(model=ModelConfig("demo", "none"))) is None


def test_the_audit_flags_each_planted_mistake(digits, tmp_path):
    x = digits.train_x[:20].float() / 255
    # 1. BatchNorm of frozen blocks back in training mode (the classic `model.train()` mistake).
    net = apply(build_model(ModelConfig("demo"), 5), FreezePlan.freeze())
    initial = block_stats.snapshot(net)
    for m in net.modules():
        torch.nn.Module.train(m, True)  # bypasses the plan's eval mode
    net(x)
    found = inside.audit_flags(net, initial=initial)
    assert {f.block for f in found} == set(BLOCKS) and "BatchNorm statistics" in found[0].problem
    # 2. A block unfrozen after the optimizer was made.
    net = apply(build_model(ModelConfig("demo"), 5), FreezePlan.freeze())
    opt = make_optimizer(net, OptimConfig())
    apply(net, FreezePlan.freeze_to(BLOCKS, -1))
    assert [(f.block, "missing" in f.problem) for f in inside.audit_flags(net, opt)] == [("layer4", True)]
    # 3. Frozen parameters handed to the optimizer.
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=1e-4)
    found = inside.audit_flags(net, opt)
    assert {f.block for f in found} == {"stem", "layer1", "layer2", "layer3"}
    assert all("weight decay" in f.problem for f in found)
    # 4. A trainable block whose gradient never arrives (its output is cut off from the loss).
    cfg = _cfg(FreezePlan.freeze_to(BLOCKS, -1), epochs=1, feature_cache=False)
    state = start_run(cfg, digits)
    state.model.blocks["layer4"].register_forward_hook(lambda m, i, out: out * 0 + out.detach())
    stats = _stats(state, 1, tmp_path)
    found = inside.audit_flags(state.model, state.optimizer, state.initial, stats)
    assert [(f.block, "zero" in f.problem) for f in found] == [("layer4", True)]
    # 5. A run resumed under another plan than it was saved with.
    state = start_run(_cfg(FreezePlan.freeze(), epochs=2), digits)
    list(run_burst(state, steps=3))
    saved = checkpoint(state)
    apply(state.model, FreezePlan.freeze(bn="stats"))
    found = inside.run_flags(state, saved)
    assert [f.block for f in found] == ["model"] and "bn differ" in found[0].problem


@pytest.mark.parametrize("key", list(recipes_for(BLOCKS)))
def test_the_audit_flags_nothing_on_any_preset(digits, tmp_path, key):
    cfg = RunConfig.from_recipe(recipes_for(BLOCKS, warmup_epochs=1)[key], data=digits.config, epochs=2,
                                optim=OptimConfig(batch_size=20))
    state = start_run(cfg, digits)
    stats = _stats(state, 2, tmp_path)  # two-phase switches after the first epoch
    saved = checkpoint(state)
    assert inside.run_flags(restore_run(cfg, saved, digits), saved, stats) == []


def test_what_the_drift_and_gradient_maps_say_of_frozen_blocks_holds_for_every_policy_shown(digits):
    """The BatchNorm comparison trained for a few steps: under `frozen` and `stats` the frozen blocks' weights
    do not move and get no gradient; under `affine` they do, and the words say so for that run alone."""
    from core.training.config import bn_comparison

    runs = {}
    for cfg in bn_comparison(digits.config, ModelConfig(), BLOCKS, epochs=1, optim=OptimConfig(batch_size=20)):
        state = start_run(cfg, digits)
        runs[cfg.label] = (cfg.phases[0].plan.bn, next(e for e in run_burst(state, epochs=1)
                                                      if isinstance(e, BlockStats)))
    policies = {name: policy for name, (policy, _) in runs.items()}
    drift_words = inside.frozen_blocks_in_words(policies, "drift")
    grad_words = inside.frozen_blocks_in_words(policies, "gradient")
    for name, (policy, stats) in runs.items():
        frozen = [i for i, b in enumerate(stats.blocks) if b in BLOCKS[:-1]]
        moved = any(stats.drift[i] for i in frozen)
        graded = any(stats.grad_norm[i] for i in frozen)
        assert moved == graded == (policy == "affine"), (name, stats.drift, stats.grad_norm)
        said_apart = f"except in {name} (BatchNorm `affine`)"
        assert (said_apart in drift_words) == moved and (said_apart in grad_words) == graded
    stats_run = next(n for n, p in policies.items() if p == "stats")
    assert f"In {stats_run} (BatchNorm `stats`) frozen blocks' running statistics move" in drift_words
