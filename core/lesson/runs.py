"""What the lesson trains: three sets of runs (the race, the BatchNorm policies, the depth sweep), each a function
of the setup, and the part each run of a set plays, read from what it trains — never from its label, which its
owner may change.

    configs = RACE.configs()                        # on the offline demo; RACE.configs(data, model) on a setup
    by_part = RACE.cast(store, run_ids)              # {"Feature extraction": id, "Fine-tune the top 2 blocks": id, ...}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.data.datasets import DataConfig
from core.experiments import studies
from core.freezing import recipes_for
from core.lesson.reveals import RACE_CHOICES
from core.models.backbones import ModelConfig, block_names
from core.store.runs import RunStore
from core.training.config import (
    DEMO_COMPARISON,
    DEMO_OPTIM,
    RunConfig,
    bn_comparison,
    comparison,
    demo_comparison,
    recipe_kind,
)

LESSON_EPOCHS = 4  # the race's budget: long enough for the three to part, short enough to watch (seconds)
BATCHNORM_EPOCHS = 3
DEPTH_EPOCHS, DEPTH_SEEDS = 2, 2


@dataclass(frozen=True)
class RunSet:
    """A set of runs one Run button trains, and the part each of its runs plays (unique within the set)."""
    key: str  # names the set: its runs' group starts with `lesson-<key>-`
    build: Callable[[DataConfig, ModelConfig], list[RunConfig]]  # its configs on a setup's data and backbone
    part: Callable[[RunConfig], str]  # the part a run plays, from what it trains
    told: str = ""  # how a later step that shows these runs again names them on its Run button
    sweep: bool = False  # a sweep: the Experiments page opens on it

    def configs(self, data: DataConfig | None = None, model: ModelConfig | None = None) -> list[RunConfig]:
        """The set's runs on the offline demo by default (small, so each reveal comes in seconds), or on another
        setup's data and backbone."""
        return self.build(data or DataConfig(), model or ModelConfig())

    @property
    def group_prefix(self) -> str:
        return f"lesson-{self.key}"

    def cast(self, store: RunStore, run_ids: list[str]) -> dict[str, str]:
        """Each run's id by the part it plays, in the order of `run_ids` (its stored config says the part)."""
        return {self.part(store.config(r)): r for r in run_ids}


def _race(data: DataConfig, model: ModelConfig) -> list[RunConfig]:
    """The demo comparison's three recipes, each at its own suited rate."""
    if (data, model) == (DataConfig(), ModelConfig()):
        return demo_comparison(epochs=LESSON_EPOCHS)
    return comparison(recipes_for(block_names(model.backbone)), DEMO_COMPARISON, data=data, model=model,
                      optim=DEMO_OPTIM, epochs=LESSON_EPOCHS)


# A race run's part by its recipe kind (training.config.recipe_kind, the colours' key too). On a backbone of two
# blocks, fine-tuning the top two is fine-tuning all of them.
RACE_PARTS = {"feature_extraction": RACE_CHOICES[0], "fine_tune_top": RACE_CHOICES[1],
              "fine_tune_all": RACE_CHOICES[1], "from_scratch": RACE_CHOICES[2]}


def _race_part(cfg: RunConfig) -> str:
    kind = recipe_kind(cfg)
    if kind not in RACE_PARTS:
        raise ValueError(f"A {kind.replace('_', ' ')} run plays no part in the lesson's race.")
    return RACE_PARTS[kind]


def _batchnorm(data: DataConfig, model: ModelConfig) -> list[RunConfig]:
    return bn_comparison(data, model, block_names(model.backbone), epochs=BATCHNORM_EPOCHS, optim=DEMO_OPTIM)


def _depth(data: DataConfig, model: ModelConfig) -> list[RunConfig]:
    return studies.depth_sweep(data, model, DEMO_OPTIM, DEPTH_EPOCHS, DEPTH_SEEDS)


def _depth_part(cfg: RunConfig) -> str:
    return f"{studies.setting_of(studies.frozen_depth(cfg))} · seed {cfg.seed}"


RACE = RunSet("race", _race, _race_part, told="the race's three runs")
BATCHNORM = RunSet("batchnorm", _batchnorm, lambda cfg: cfg.phases[0].plan.bn)  # its policy in the frozen blocks
DEPTH = RunSet("depth", _depth, _depth_part, sweep=True)
RUN_SETS = {s.key: s for s in (RACE, BATCHNORM, DEPTH)}


def lesson_configs(runs: str, data: DataConfig | None = None, model: ModelConfig | None = None) -> list[RunConfig]:
    """The configs of the lesson's set `runs` (a key of RUN_SETS) on the demo, or on a setup's data and backbone."""
    if runs not in RUN_SETS:
        raise KeyError(f"The lesson trains no run set {runs!r}; its sets are {', '.join(RUN_SETS)}.")
    return RUN_SETS[runs].configs(data, model)
