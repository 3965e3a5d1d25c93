"""Training bursts on real data (the offline digits; CIFAR-10 JPEGs when present)."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from conftest import CIFAR_JPG, needs_cifar_jpg
from core.data.datasets import DataConfig, load_data
from core.freezing import RECIPE_LR, FreezePlan, Phase, audit, recipes_for
from core.insight.fairness import held_equal
from core.models.backbones import HeadConfig, ModelConfig
from core.training.config import OptimConfig, RunConfig, demo_comparison
from core.training.events import BurstEnd, CacheStatus, EpochEnd, PhaseSwitch, StepEnd
from core.training.loop import checkpoint, refresh_cache, restore_run, run_burst, start_run

BLOCKS = ["stem", "layer1", "layer2", "layer3", "layer4"]
RECIPES = recipes_for(BLOCKS)


@pytest.fixture(scope="module")
def digits():
    """Digits 5-9, 20 training images per class: the demo's target task."""
    return load_data(DataConfig(per_class=20, val_per_class=40))


def _cfg(key="fine_tune_top", **kw) -> RunConfig:
    kw.setdefault("optim", OptimConfig(lr=1e-3, batch_size=20))
    kw.setdefault("data", DataConfig(per_class=20, val_per_class=40))
    return RunConfig.from_recipe(RECIPES[key], **kw)


def _metrics(events) -> list[tuple]:
    """Everything a burst measured, except wall-clock figures."""
    out = []
    for e in events:
        if isinstance(e, StepEnd):
            out.append(("step", e.step, e.epoch, e.loss, e.lr))
        elif isinstance(e, EpochEnd):
            out.append(("epoch", e.step, e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.lr))
    return out


def _bn(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_blocks_are_bit_identical_after_a_burst(digits):
    state = start_run(_cfg("fine_tune_top", feature_cache=False), digits)
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    list(run_burst(state, steps=15))
    after = state.model.state_dict()
    for key, value in before.items():
        frozen = key.startswith(("blocks.stem", "blocks.layer1", "blocks.layer2"))
        if frozen or key in ("mean", "std"):
            assert torch.equal(value, after[key]), f"frozen {key} changed"
    assert not torch.equal(before["blocks.layer4.conv1.weight"], after["blocks.layer4.conv1.weight"])
    assert not torch.equal(before["blocks.layer3.bn1.running_mean"], after["blocks.layer3.bn1.running_mean"])


def test_batchnorm_statistics_of_frozen_blocks_move_only_under_the_stats_policy(digits):
    for policy, should_move in (("frozen", False), ("stats", True), ("affine", False)):
        plan = FreezePlan.freeze_to(BLOCKS, -1, bn=policy)
        state = start_run(RunConfig(digits.config, phases=(Phase(plan),), optim=OptimConfig(batch_size=20)), digits)
        bns = _bn(state.model.blocks["layer1"])
        stats = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
        affine = [m.weight.detach().clone() for m in bns]
        conv = state.model.blocks["layer1"].conv1.weight.detach().clone()
        list(run_burst(state, steps=5))
        moved = any(not torch.equal(m.running_mean, s[0]) for m, s in zip(bns, stats, strict=True))
        assert moved == should_move, policy
        assert all(torch.equal(m.weight, a) for m, a in zip(bns, affine, strict=True)) == (policy != "affine")
        assert torch.equal(state.model.blocks["layer1"].conv1.weight, conv)


@pytest.mark.parametrize("key", ["feature_extraction", "fine_tune_top"])
def test_cached_and_uncached_training_give_the_same_curve(digits, key):
    runs = {}
    for cache in (True, False):
        state = start_run(_cfg(key, feature_cache=cache, epochs=3), digits)
        events = list(run_burst(state, epochs=3))
        status = next(e for e in events if isinstance(e, CacheStatus))
        assert status.on == cache
        runs[cache] = _metrics(events)
    assert len(runs[True]) == len(runs[False]) == 3 * 5 + 3
    for cached, plain in zip(runs[True], runs[False], strict=True):
        assert cached[:3] == plain[:3]
        assert cached[3:] == pytest.approx(plain[3:], rel=1e-5, abs=1e-6)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_pooled_cache_matches_the_uncached_curve_and_is_chosen_only_when_exact(digits):
    """Feature extraction under a pooling head caches one vector per image; any other plan keeps the maps."""
    def cached_run(key, **kw):
        state = start_run(_cfg(key, epochs=3, **kw), digits)
        return state, _metrics(run_burst(state, epochs=3))

    pooled, curve = cached_run("feature_extraction")
    assert pooled.cache.pooled and pooled.cache.train.shape == (100, 128)  # layer4's 128 channels, pooled
    _, plain = cached_run("feature_extraction", feature_cache=False)
    for cached, uncached in zip(curve, plain, strict=True):
        assert cached[:3] == uncached[:3]
        assert cached[3:] == pytest.approx(uncached[3:], rel=1e-5, abs=1e-6)

    flatten = ModelConfig(head=HeadConfig(pool="flatten"))
    maps, _ = cached_run("feature_extraction", model=flatten)  # Flatten keeps every position: no pooling to cache
    assert not maps.cache.pooled and maps.cache.train.shape == (100, *maps.model.feature_shape())
    partial, _ = cached_run("fine_tune_top")  # layer3 and layer4 train between the cache and the pooling
    assert not partial.cache.pooled and partial.cache.blocks == 3 and partial.cache.train.dim() == 4


def test_a_cache_over_the_memory_bound_is_memory_mapped_from_disk_and_leaves_no_file(digits):
    from core.training.feature_cache import cache_dir

    curves = {}
    for bound in (1024, 0):
        state = start_run(_cfg("fine_tune_top", epochs=2, cache_mb=bound), digits)
        curves[bound] = _metrics(run_burst(state, epochs=2))
        assert state.cache.on_disk == (bound == 0) and state.cache.train.device.type == "cpu"
    assert curves[0] == curves[1024]  # the same float32 rows, read from a mapped file
    assert cache_dir().is_dir() and not list(cache_dir().iterdir())  # unlinked as soon as mapped


def test_cache_says_why_it_is_off_and_follows_the_plan(digits):
    def first_status(**kw) -> CacheStatus:
        state = start_run(_cfg(**kw), digits)
        return next(e for e in run_burst(state, steps=1) if isinstance(e, CacheStatus))

    on = first_status(key="feature_extraction")
    assert on.on and on.blocks == 5 and "computed once" in on.reason
    assert "memory-mapped file" in first_status(key="feature_extraction", cache_mb=0).reason
    off = first_status(key="feature_extraction", cache_mb=0, cache_disk_mb=0)
    assert not off.on and "over the 0 MB memory bound and the 0 MB bound on disk" in off.reason
    assert "switched off" in first_status(key="feature_extraction", feature_cache=False).reason
    augmented = load_data(DataConfig(per_class=20, val_per_class=40, flip=True))
    state = start_run(_cfg("feature_extraction", data=augmented.config), augmented)
    assert "augmentation" in next(e for e in run_burst(state, steps=1) if isinstance(e, CacheStatus)).reason
    scratch = first_status(key="from_scratch")
    assert not scratch.on and "block stem trains" in scratch.reason
    stats = RunConfig(digits.config, phases=(Phase(FreezePlan.freeze(bn="stats")),))
    state = start_run(stats, digits)
    assert "BatchNorm statistics in stem" in next(e for e in run_burst(state, steps=1)
                                                  if isinstance(e, CacheStatus)).reason

    # A new plan invalidates the cache: it is rebuilt for the new frozen prefix.
    state = start_run(_cfg("feature_extraction"), digits)
    list(run_burst(state, steps=1))
    assert state.cache.blocks == 5
    from core.freezing import apply
    apply(state.model, FreezePlan.freeze_to(BLOCKS, 2))
    status = refresh_cache(state)
    assert status.on and status.blocks == 2 and state.cache.blocks == 2
    assert state.cache.train.shape[1:] == state.model.feature_shape(2)


@pytest.mark.slow
def test_two_bursts_of_50_steps_equal_one_of_100(digits):
    cfg = _cfg("fine_tune_top", epochs=30, model=ModelConfig(head=HeadConfig(hidden=(32,), dropout=0.3)))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(digits.config, crop_pad=2))  # RNG in data and head
    augmented = load_data(cfg.data)
    whole = start_run(cfg, augmented)
    one = _metrics(run_burst(whole, steps=100))
    split = start_run(cfg, augmented)
    two = _metrics(run_burst(split, steps=50)) + _metrics(run_burst(split, steps=50))
    assert len(one) == 100 + 20 and one == two
    assert torch.equal(whole.model.head[2].weight, split.model.head[2].weight)


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_stop_leaves_a_state_that_resumes_even_through_a_checkpoint(digits, tmp_path):
    cfg = _cfg("fine_tune_top", epochs=10)
    reference = _metrics(run_burst(start_run(cfg, digits), steps=30))

    state = start_run(cfg, digits)
    count = {"steps": 0}

    def stop_after_13() -> bool:
        count["steps"] += 1
        return count["steps"] > 13

    first = list(run_burst(state, steps=30, should_stop=stop_after_13))
    assert first[-1] == BurstEnd(13, 2, "stopped", "")
    path = tmp_path / "run.pt"
    torch.save(checkpoint(state), path)
    restored = restore_run(cfg, torch.load(path, weights_only=True), digits)
    assert restored.step == 13 and restored.pos == 3
    rest = list(run_burst(restored, steps=17))
    assert _metrics(first) + _metrics(rest) == reference


@pytest.mark.slow
def test_fine_tuning_the_pretrained_net_beats_scratch_and_feature_extraction_trains_only_the_head(digits):
    budget = 30  # optimizer steps, the same for every run
    finals = {}
    for key in ("fine_tune_all", "from_scratch", "feature_extraction"):
        cfg = _cfg(key, epochs=6)
        cfg = dataclasses.replace(cfg, phases=(dataclasses.replace(cfg.phases[0], lr=1e-3),))  # same LR for all
        state = start_run(cfg, digits)
        before = {k: v.clone() for k, v in state.model.state_dict().items()}
        epochs = [e for e in run_burst(state, steps=budget) if isinstance(e, EpochEnd)]
        finals[key] = epochs[-1].val_acc
        if key == "feature_extraction":
            after = state.model.state_dict()
            changed = {k for k in before if not torch.equal(before[k], after[k])}
            assert changed == {k for k in before if k.startswith("head.")}
            table = audit(state.model, state.optimizer)
            assert table.trainable.sum() == table.set_index("block").loc["head", "params"]
    assert finals["fine_tune_all"] >= finals["from_scratch"] + 0.15, finals


def test_two_phase_records_its_switch_and_trains_the_backbone_only_after_it(digits):
    recipe = recipes_for(BLOCKS, warmup_epochs=2)["two_phase"]
    state = start_run(RunConfig.from_recipe(recipe, data=digits.config, epochs=4, optim=OptimConfig(batch_size=20)),
                      digits)
    start = state.model.blocks["layer2"].conv1.weight.detach().clone()
    at_switch = None
    events = []
    for event in run_burst(state, epochs=4):
        events.append(event)
        if isinstance(event, PhaseSwitch):
            at_switch = state.model.blocks["layer2"].conv1.weight.detach().clone()
    switch = [e for e in events if isinstance(e, PhaseSwitch)]
    assert switch == [PhaseSwitch(step=10, epoch=2, phase=1, trainable=tuple(BLOCKS), lr=1e-5)]
    assert torch.equal(at_switch, start)  # frozen during the warm-up
    assert not torch.equal(state.model.blocks["layer2"].conv1.weight, start)  # trained after it
    caches = [e for e in events if isinstance(e, CacheStatus)]
    assert [c.on for c in caches] == [True, False]  # the unfrozen phase cannot use the cache
    lrs = [e.lr for e in events if isinstance(e, EpochEnd)]
    assert lrs[:2] == [RECIPE_LR["two_phase"]] * 2 and lrs[2:] == [1e-5, 1e-5]  # each phase at its own rate


def test_early_stopping_and_divergence_end_the_run_in_words(digits):
    state = start_run(_cfg("feature_extraction", patience=1, epochs=10).with_start_lr(1e-12), digits)
    end = list(run_burst(state, epochs=10))[-1]
    assert end.reason == "early_stopped" and state.epoch == 2 and "1 epochs" in end.message
    assert list(run_burst(state, steps=5))[-1].reason == "early_stopped"  # an ended run stays ended

    wild = _cfg("from_scratch", optim=OptimConfig(name="sgd", batch_size=20)).with_start_lr(1e8)
    state = start_run(wild, digits)
    end = list(run_burst(state, steps=30))[-1]
    assert end.reason == "diverged" and "lower learning rate" in end.message


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_each_optimizer_trains_and_cpu_runs_are_reproducible(digits, name):
    cfg = _cfg("fine_tune_top", optim=OptimConfig(name=name, lr=1e-2 if name == "sgd" else 1e-3, batch_size=20,
                                                  weight_decay=1e-4, cosine=True), epochs=2)
    cfg = cfg.with_start_lr(cfg.optim.lr)  # this test sets the rate per optimizer
    a = _metrics(run_burst(start_run(cfg, digits), epochs=2))
    b = _metrics(run_burst(start_run(cfg, digits), epochs=2))
    assert a == b
    losses = [m[3] for m in a if m[0] == "step"]
    assert all(math.isfinite(v) for v in losses) and min(losses[-3:]) < losses[0]
    assert a[-1][-1] < 1e-3 * 0.5 or name == "sgd"  # cosine decay brought the LR down by the end


def test_bad_run_configs_are_refused(digits):
    with pytest.raises(ValueError, match="length in epochs"):
        start_run(RunConfig(digits.config, phases=(Phase(FreezePlan.freeze()), Phase(FreezePlan.unfreeze(BLOCKS)))),
                  digits)
    with pytest.raises(ValueError, match="steps or epochs"):
        next(run_burst(start_run(RunConfig(digits.config), digits)))
    with pytest.raises(ValueError, match="images were loaded for"):
        start_run(RunConfig(DataConfig(per_class=5)), digits)


@pytest.mark.slow
@needs_cifar_jpg
def test_a_short_run_on_real_cifar10_images():
    data = load_data(DataConfig(source="folder", path=str(CIFAR_JPG), classes=("airplane", "frog"),
                                per_class=100, val_per_class=50, image_size=32, flip=True))
    cfg = RunConfig.from_recipe(recipes_for(BLOCKS)["from_scratch"], data=data.config, epochs=6,
                                optim=OptimConfig(batch_size=25)).with_start_lr(3e-3)
    events = list(run_burst(start_run(cfg, data), epochs=6))
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert len(epochs) == 6 and events[-1].reason == "finished"
    assert epochs[-1].train_loss < epochs[0].train_loss
    assert max(e.val_acc for e in epochs) >= 0.7  # two classes: chance is 0.5


@pytest.mark.slow
def test_runs_replay_exactly_while_another_thread_builds_models_and_randomises_layers(digits):
    """Dropout draws from torch's global RNG; building a seeded model or re-initialising layers elsewhere
    (the app does both while training runs) must neither rewind nor consume a training run's draws."""
    import threading

    from core.insight import attribution
    from core.models.network import build_model
    from core.runtime import rng
    from core.training.loop import model_from_state

    cfg = _cfg("fine_tune_top", epochs=30, model=ModelConfig(head=HeadConfig(hidden=(64,), dropout=0.5)))
    reference = _metrics(run_burst(start_run(cfg, digits), steps=60))

    done = threading.Event()
    weights = start_run(cfg, digits).model.state_dict()
    layer = nn.Linear(64, 64)  # made here: constructing a layer draws from the global RNG too

    def meddle() -> None:
        seed = 0
        while not done.is_set():
            seed += 1
            build_model(ModelConfig("demo", "none"), 5, seed=seed)
            model_from_state(cfg, weights, 5, 28)
            attribution.randomise(layer, seed)
            with rng.seeded(seed):  # any other draw from the global RNG goes through core.runtime.rng too
                torch.rand(100)

    other = threading.Thread(target=meddle, daemon=True)
    other.start()
    try:
        state = start_run(cfg, digits)
        replayed = [m for _ in range(6) for m in _metrics(run_burst(state, steps=10))]
    finally:
        done.set()
        other.join(30)
    assert replayed == reference


def test_checkpoints_carry_every_rng_state(digits):
    state = start_run(_cfg("fine_tune_top"), digits)
    list(run_burst(state, steps=3))
    saved = checkpoint(state)
    assert {"gen", "rng", "cuda_rng"} <= set(saved)
    assert saved["cuda_rng"] is None  # this run is on the CPU
    assert torch.equal(restore_run(state.config, saved, digits).rng, state.rng)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_on_cuda_a_run_resumed_from_its_checkpoint_replays_dropout_and_augmentation_exactly(digits):
    cfg = _cfg("fine_tune_top", epochs=10, model=ModelConfig(head=HeadConfig(hidden=(32,), dropout=0.5)))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(digits.config, flip=True, crop_pad=2))
    augmented, cuda = load_data(cfg.data), torch.device("cuda")
    whole = _metrics(run_burst(start_run(cfg, augmented, device=cuda), steps=20))
    state = start_run(cfg, augmented, device=cuda)
    conv = state.model.blocks["layer1"].conv1.weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
    first = _metrics(run_burst(state, steps=10))
    saved = checkpoint(state)
    assert saved["cuda_rng"] is not None
    rest = _metrics(run_burst(restore_run(cfg, saved, augmented, device=cuda), steps=10))
    assert first + rest == whole


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
@pytest.mark.parametrize("key", ["feature_extraction", "fine_tune_top"])
def test_on_cuda_the_cache_under_bf16_autocast_gives_the_uncached_curve(digits, key):
    """Both paths run the frozen prefix in bf16; they may differ only by the order cuDNN sums in (batches of
    different sizes), far below what a wrong cache would change."""
    runs = {}
    for cache in (True, False):
        state = start_run(_cfg(key, feature_cache=cache, epochs=3), digits, device=torch.device("cuda"))
        events = list(run_burst(state, epochs=3))
        assert next(e for e in events if isinstance(e, CacheStatus)).on == cache
        runs[cache] = _metrics(events)
    for cached, plain in zip(runs[True], runs[False], strict=True):
        assert cached[:3] == plain[:3]
        assert cached[3:] == pytest.approx(plain[3:], rel=5e-2, abs=1e-3)


def test_the_cache_decision_is_the_one_training_follows(digits):
    """The Layers page previews `feature_cache.decide`; training reports the same decision."""
    from core.freezing import apply
    from core.models.network import build_model
    from core.training import feature_cache

    n_images = len(digits.train_x) + len(digits.val_x)
    for kw in ({}, {"cache_mb": 0}, {"cache_mb": 0, "cache_disk_mb": 0}, {"feature_cache": False},
               {"key": "from_scratch"}, {"key": "fine_tune_top", "cache_mb": 1}):
        cfg = _cfg(**kw)
        preview = build_model(cfg.model, 5, 28)  # what the page holds: an architecture with the plan applied
        apply(preview, cfg.phases[0].plan)
        preview.train()
        decision = feature_cache.decide(preview, cfg, n_images)
        status = next(e for e in run_burst(start_run(cfg, digits), steps=1) if isinstance(e, CacheStatus))
        assert (decision.on, decision.blocks, decision.reason) == (status.on, status.blocks, status.reason), kw
    assert not feature_cache.decide(preview, _cfg(cache_mb=0, cache_disk_mb=0), n_images).on


def test_a_burst_target_is_reached_at_its_step_or_epoch(digits):
    from core.training.loop import BurstTarget

    state = start_run(_cfg(), digits)  # 5 steps per epoch
    list(run_burst(state, steps=3))
    by_epochs = BurstTarget.of(state, epochs=2)
    assert (by_epochs.step, by_epochs.epoch, by_epochs.steps) == (None, 2, 7)
    both = BurstTarget.of(state, steps=4, epochs=2)
    assert both.steps == 4 and both.slice(state, 10) == {"steps": 4, "epochs": 2}
    assert by_epochs.slice(state, 5) == {"steps": 5, "epochs": 2}
    list(run_burst(state, **by_epochs.slice(state, 5)))
    assert state.step == 8 and not by_epochs.reached(state)
    list(run_burst(state, **by_epochs.slice(state, 5)))
    assert state.step == 10 and by_epochs.reached(state)
    with pytest.raises(ValueError, match="steps or epochs"):
        BurstTarget.of(state)


def test_a_loss_that_explodes_but_stays_finite_is_divergence(digits):
    cfg = _cfg("from_scratch", optim=OptimConfig(name="adam", batch_size=20), epochs=5).with_start_lr(1e6)
    state = start_run(cfg, digits)
    events = list(run_burst(state, epochs=5))
    losses = [e.loss for e in events if isinstance(e, StepEnd)]
    assert all(math.isfinite(v) for v in losses)  # it never became NaN...
    end = events[-1]
    assert end.reason == "diverged" and state.done == "diverged"  # ...and is still caught
    assert f"at step {state.step + 1}" in end.message and "times its start" in end.message


def test_out_of_bounds_settings_are_refused_naming_the_field(digits):
    with pytest.raises(ValueError, match="patience"):
        start_run(_cfg(patience=0), digits)
    with pytest.raises(ValueError, match="image_size 50000"):
        load_data(DataConfig(image_size=50_000))
    from core.data.datasets import check_fits

    with pytest.raises(ValueError, match=r"image_size 4000 would take .* GB"):
        check_fits(50_000, 4000)  # 2.4 TB: refused before anything is allocated
    check_fits(50_000, 224)  # full CIFAR-10 at 224 px as uint8 (7.5 GB) fits a 24 GB machine


def test_a_comparison_says_what_it_holds_equal_and_where_else_its_runs_differ():
    demo = demo_comparison()
    text = held_equal(demo)
    equal, differ = text.split(" Besides what each trains, they differ in ")
    for aspect in ("data (demo, 20 per class, 28 px)", "backbone (demo)", f"epochs ({demo[0].epochs})",
                   f"batch size ({demo[0].optim.batch_size})", "optimizer (adam)", "seed (0)"):
        assert aspect in equal
    rates = "; ".join(f"{c.label} {c.start_lr:g}" for c in demo)  # each at the rate suited to what it trains
    assert f"learning rate ({rates})" in differ and "learning rate" not in equal
    assert "From scratch none" in differ  # its weights: none to start from
    one_rate = held_equal([c.with_start_lr(1e-3) for c in demo])
    assert "learning rate (0.001)" in one_rate.split(" Besides")[0]
    seeds = held_equal([dataclasses.replace(demo[0], seed=s, label=f"seed {s}") for s in (0, 1)])
    assert seeds.endswith("they differ in seed (seed 0 0; seed 1 1).") and "Held equal: data" in seeds
    assert "differ" not in held_equal([demo[0], dataclasses.replace(demo[0], label="again")])
    # A difference the short words do not show is named by its parts.
    flipped = dataclasses.replace(demo[0], label="flipped", data=dataclasses.replace(demo[0].data, flip=True))
    text = held_equal([demo[0], flipped])
    assert text.endswith("they differ in data (Feature extraction demo, 20 per class, 28 px, flip False; "
                         "flipped demo, 20 per class, 28 px, flip True).")
    dropout = dataclasses.replace(demo[0].model, head=dataclasses.replace(demo[0].model.head, dropout=0.5))
    text = held_equal([demo[0], dataclasses.replace(demo[0], label="dropped", model=dropout)])
    assert "backbone (Feature extraction demo, head.dropout 0.0; dropped demo, head.dropout 0.5)" in text
    assert held_equal(demo[:1]) == ""  # nothing to compare
    assert "BatchNorm in frozen blocks (frozen)" in held_equal(demo)


def test_building_the_feature_cache_counts_as_training_time(digits):
    """A frozen run's cheap epochs come after one pass that builds the cache: its recorded seconds include it,
    so accuracy against training time (Compare) is honest."""
    seconds = {}
    for cache in (True, False):
        state = start_run(_cfg("feature_extraction", feature_cache=cache, epochs=1), digits)
        list(run_burst(state, steps=0))  # builds the cache, trains nothing
        seconds[cache] = state.seconds
        first = next(e for e in run_burst(state, steps=1) if isinstance(e, StepEnd))
        assert first.seconds >= seconds[cache]
    assert seconds[True] > 0 and seconds[False] == 0


def test_a_runs_description_says_what_it_trains():
    from core.models.backbones import ModelConfig
    from core.training.config import describe_training, named_by_what_it_trains

    def cfg(plan, **kw):
        return RunConfig(phases=(Phase(plan, lr=3e-3),), **kw)

    assert describe_training(cfg(FreezePlan(trainable=("layer3", "layer4"), bn="stats"))) == \
        "layer3–layer4 train · BN stats · lr 0.003"
    assert describe_training(cfg(FreezePlan.freeze())) == "head only · lr 0.003"
    assert describe_training(cfg(FreezePlan.unfreeze(BLOCKS), model=ModelConfig(weights="none"))) == \
        "all blocks train · lr 0.003 · random weights"
    assert describe_training(cfg(FreezePlan(trainable=("stem", "layer4")))) == "stem, layer4 train · lr 0.003"
    two = recipes_for(BLOCKS)["two_phase"]
    assert describe_training(RunConfig.from_recipe(two)) == "head only · lr 0.01 for 3 epochs, then all blocks " \
        "train · lr 1e-05"
    named = named_by_what_it_trains([cfg(FreezePlan(trainable=("layer4",)), label="Current plan"),
                                     cfg(FreezePlan(trainable=("layer3", "layer4")), label="Current plan")])
    assert len({c.label for c in named}) == 2 and named[0].label == "Current plan: layer4 train · lr 0.003"


@pytest.mark.parametrize(("phase_lr", "seed", "data_seed"), [(0.0, 0, 0), (-1e-3, 0, 0), (float("nan"), 0, 0),
                                                             (None, -1, 0), (None, 0, -1)])
def test_a_config_with_a_bad_rate_or_seed_is_refused_in_words_before_it_trains(phase_lr, seed, data_seed):
    from core.data.datasets import DataConfig
    from core.training.loop import validate_config

    cfg = RunConfig(DataConfig(seed=data_seed), phases=(Phase(FreezePlan.freeze(), lr=phase_lr),), seed=seed)
    with pytest.raises(ValueError, match=r"learning rate must be a positive number|Seeds are whole numbers"):
        validate_config(cfg)
