"""Comparisons that give every setting a fair chance: each recipe trains at a learning rate suited to what
it trains, backed here by a grid on the demo, and the range test finds rates for other setups."""

import math

import pytest

from core.data.datasets import DataConfig, load_data
from core.freezing import RECIPE_LR, recipes_for
from core.models.backbones import block_names
from core.training import lr_find
from core.training.config import DEMO_EPOCHS, DEMO_OPTIM, RunConfig, demo_comparison
from core.training.events import EpochEnd
from core.training.loop import run_burst, start_run

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig())


def _final_accuracy(cfg: RunConfig, data) -> float:
    return [e for e in run_burst(start_run(cfg, data), epochs=cfg.epochs) if isinstance(e, EpochEnd)][-1].val_acc


@pytest.mark.slow
@pytest.mark.parametrize("key", list(RECIPE_LR))
def test_each_recipe_is_within_three_points_of_its_best_learning_rate(digits, key):
    recipe = recipes_for(block_names("demo"))[key]
    base = RunConfig.from_recipe(recipe, data=digits.config, optim=DEMO_OPTIM, epochs=DEMO_EPOCHS)
    assert base.phases[0].lr == RECIPE_LR[key]  # the recipe carries its own rate

    def at(lr: float) -> float:  # the same budget, the first phase at `lr` (a second phase keeps its own)
        return _final_accuracy(base.with_start_lr(lr), digits)

    grid = {lr: at(lr) for lr in GRID}
    own = grid[RECIPE_LR[key]] if RECIPE_LR[key] in grid else at(RECIPE_LR[key])
    assert own >= max(grid.values()) - 0.03, (key, own, grid)


def test_the_demo_gives_each_run_its_own_rate_and_the_same_budget():
    configs = demo_comparison()
    assert [c.phases[0].lr for c in configs] == [RECIPE_LR[k] for k in ("feature_extraction", "fine_tune_top",
                                                                           "from_scratch")]
    assert len({(c.data, c.epochs, c.seed, c.optim.batch_size) for c in configs}) == 1


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_range_test_sweeps_up_until_the_loss_blows_up_and_suggests_below_its_minimum(digits):
    cfg = RunConfig.from_recipe(recipes_for(block_names("demo"))["fine_tune_all"], data=digits.config, optim=DEMO_OPTIM)
    table = lr_find.lr_range_test(cfg, digits, start=1e-5, end=1.0, steps=60)
    ratios = (table.lr / table.lr.shift()).dropna()
    assert table.lr.iloc[0] == pytest.approx(1e-5) and ratios.round(9).nunique() == 1 and ratios.iloc[0] > 1
    assert len(table) < 60  # stopped once the loss ran away, before the end of the range
    best = table.loc[table.smoothed.idxmin()]
    assert best.smoothed < table.smoothed.iloc[0]  # somewhere in the range it learned
    assert lr_find.suggest(table) == pytest.approx(best.lr / 10)
    assert all(math.isfinite(v) for v in table.loss)
    with pytest.raises(ValueError, match="start < end"):
        lr_find.lr_range_test(cfg, digits, start=1.0, end=0.1)
