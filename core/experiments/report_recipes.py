"""The reports' recipes: the configurations of the transfer-learning reports FreezeLab grew from (student
reports and tutorials on CIFAR-10 with Keras; see ../shared/DESIGN.md), each one click (or
`python -m core train --report-recipe KEY`) away, with the figure the report gave shown beside the user's own.

A recipe is one run or a few compared (VGG16 frozen against truncated); each run is a schedule of
phases (freezing.Phase) on a backbone with the report's head, optimiser, budget and input size. Figures
are the reports' validation accuracy on all 50,000 CIFAR-10 training images; where a report gave none,
none is shown. Where a report left a detail out (a Dense layer's width, an input size), the choice made
here is said in the recipe's `notes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from core.data.datasets import DataConfig, cifar10_on_disk
from core.freezing import RECIPE_LR, FreezePlan, Phase
from core.models.backbones import HeadConfig, ModelConfig, block_names, get_spec, list_backbones
from core.models.weights import torchvision_checkpoint
from core.store.runs import RunStore
from core.training.config import OptimConfig, RunConfig

KERAS_ADAM_LR = 1e-3  # Keras' Adam default, which the reports kept


@dataclass(frozen=True)
class Reported:
    """A figure a report gave: validation accuracy `acc` `when` (after `epoch` epochs; None: at the end)."""
    when: str
    acc: float
    epoch: int | None = None


@dataclass(frozen=True)
class ReportedRun:
    label: str
    phases: tuple[Phase, ...]
    reported: tuple[Reported, ...] = ()


@dataclass(frozen=True)
class ReportRecipe:
    key: str
    title: str
    summary: str
    backbone: str
    head: HeadConfig
    runs: Callable[[Sequence[str]], tuple[ReportedRun, ...]]  # the runs, given the backbone's blocks
    epochs: int
    image_size: int
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=KERAS_ADAM_LR, batch_size=32))
    patience: int | None = None
    notes: str = ""
    needs: str = ""  # an optional install the backbone comes from

    @property
    def available(self) -> bool:
        return self.backbone in list_backbones()

    def reported_runs(self) -> tuple[ReportedRun, ...]:
        return self.runs(block_names(self.backbone))

    def data(self, per_class: int | None = None, val_per_class: int | None = None) -> DataConfig:
        """CIFAR-10 at the recipe's input size, as the reports trained (all images unless limited)."""
        return DataConfig(source="cifar10", per_class=per_class, val_per_class=val_per_class,
                          image_size=self.image_size)

    def configs(self, data: DataConfig | None = None, weights: str = "pretrained", epochs: int | None = None,
                seed: int = 0, feature_cache: bool = True) -> list[RunConfig]:
        """The recipe's runs on `data` (default: its CIFAR-10), with data, weights, budget and seed shared."""
        if not self.available:
            raise ValueError(f"Recipe {self.key!r} needs the {self.backbone} backbone, which comes with {self.needs}: "
                             f"pip install -e '.[{self.needs}]'")
        data = data or self.data()
        if data.image_size < self.image_size:
            data = replace(data, image_size=self.image_size)  # the architecture's minimum, at least
        model = ModelConfig(self.backbone, weights, self.head)
        return [RunConfig(data, model, run.phases, self.optim, epochs or self.epochs, seed, self.patience,
                          feature_cache=feature_cache, label=run.label) for run in self.reported_runs()]


def _vgg_frozen_vs_truncated(blocks: Sequence[str]) -> tuple[ReportedRun, ...]:
    return (ReportedRun("VGG16, all five blocks frozen", (Phase(FreezePlan.freeze()),),
                        (Reported("at the end", 0.846),)),
            ReportedRun("VGG16, first three blocks only (truncated), frozen",
                        (Phase(FreezePlan.freeze(truncate_after=blocks[2])),), (Reported("at the end", 0.892),)))


RECIPES: dict[str, ReportRecipe] = {r.key: r for r in (
    ReportRecipe(
        "irv2_two_phase", "InceptionResNetV2, frozen then unfrozen at 1e-5",
        "Flatten, Dense, Dropout head; Adam; early stopping. 4 epochs with the base frozen, then every layer "
        "unfrozen at learning rate 1e-5.",
        "inception_resnet_v2", HeadConfig(pool="flatten", hidden=(256,), dropout=0.5),
        lambda blocks: (ReportedRun("InceptionResNetV2, 4 epochs frozen then unfrozen at 1e-5", (
            Phase(FreezePlan.freeze(), epochs=4, lr=KERAS_ADAM_LR), Phase(FreezePlan.unfreeze(blocks), lr=1e-5)),
            (Reported("after the 4 frozen epochs", 0.84, epoch=4), Reported("after unfreezing", 0.94))),),
        epochs=10, image_size=75, patience=3, needs="timm",
        notes="The Dense width (256) and the dropout (0.5) are FreezeLab's choice; 75 px is the smallest input "
              "InceptionResNetV2 accepts, chosen for a laptop."),
    ReportRecipe(
        "vgg16_truncated", "VGG16: every block frozen, or only the first three kept",
        "Feature extraction on all five VGG16 blocks, against a backbone cut after block 3 (frozen) with the "
        "head on its output.",
        "vgg16", HeadConfig(pool="flatten", hidden=(128,)), _vgg_frozen_vs_truncated, epochs=10, image_size=32,
        notes="The report does not give its head: both runs use the Flatten, Dense 128 head of the VGG16 "
              "feature-extraction report. 32 px is CIFAR-10's own size."),
    ReportRecipe(
        "vgg16_dense128", "VGG16 feature extraction, Flatten and Dense 128",
        "Every VGG16 block frozen; a Flatten, Dense 128 head trains.",
        "vgg16", HeadConfig(pool="flatten", hidden=(128,)),
        lambda blocks: (ReportedRun("VGG16 frozen, Flatten + Dense 128", (Phase(FreezePlan.freeze()),)),),
        epochs=10, image_size=32),
    ReportRecipe(
        "resnet50_last10", "ResNet50, last 10 layers trainable, GAP and Dense 128",
        "Only the last 10 parametrised layers of ResNet50 train (Keras' `layers[-10:]`), with a global "
        "average pooling, Dense 128 head.",
        "resnet50", HeadConfig(pool="avg", hidden=(128,)),
        lambda blocks: (ReportedRun("ResNet50, last 10 layers trainable",
                                    (Phase(FreezePlan(last_layers=10), lr=RECIPE_LR["fine_tune_top"]),)),),
        epochs=10, image_size=64,
        notes="FreezeLab counts layers with parameters, so 10 here may differ from Keras' count, which includes "
              "activations; the rate is FreezeLab's for fine-tuning top layers."),
    ReportRecipe(
        "mobilenet_frozen", "MobileNet frozen, new last layer",
        "MobileNetV2's every block frozen; only a new classifier after global average pooling trains.",
        "mobilenet_v2", HeadConfig(),
        lambda blocks: (ReportedRun("MobileNetV2 frozen, new last layer",
                                    (Phase(FreezePlan.freeze(), lr=RECIPE_LR["feature_extraction"]),)),),
        epochs=10, image_size=64,
        notes="The rate is FreezeLab's for a head alone."),
    ReportRecipe(
        "low_lr_vs_frozen", "Fine-tune the transferred layers at a low rate, or keep them frozen",
        "ResNet50 with its transferred layers frozen (the head alone trains), against every layer training "
        "at a low learning rate; each at the rate suited to what it trains.",
        "resnet50", HeadConfig(),
        lambda blocks: (
            ReportedRun("ResNet50, transferred layers frozen",
                        (Phase(FreezePlan.freeze(), lr=RECIPE_LR["feature_extraction"]),)),
            ReportedRun("ResNet50, transferred layers fine-tuned at a low rate",
                        (Phase(FreezePlan.unfreeze(blocks), lr=RECIPE_LR["fine_tune_all"]),))),
        epochs=10, image_size=64,
        notes="Rates are FreezeLab's (tests/test_fairness.py): a fresh head alone takes a high rate, "
              "pretrained layers a low one."),
)}


def downloads(recipe: ReportRecipe, on_cifar: bool = True, weights: str = "pretrained") -> list[str]:
    """What a recipe's run would download first on this machine, in words ([] when it runs offline): CIFAR-10
    when it trains on it and it is not here, and the backbone's ImageNet weights when pretrained and not cached."""
    if not recipe.available:
        return [f"the {recipe.needs} install"]
    needed = [] if not on_cifar or cifar10_on_disk() else ["CIFAR-10 (170 MB)"]
    if weights == "pretrained":
        source = get_spec(recipe.backbone).weights_from
        if source == "timm":  # fetched from the Hugging Face hub: no cache this module can see
            needed.append(f"{recipe.backbone}'s weights (Hugging Face)")
        elif source == "torchvision" and not torchvision_checkpoint(get_spec(recipe.backbone).source_name)[1].exists():
            needed.append(f"{recipe.backbone}'s ImageNet weights")
    return needed


def offline_first(recipes: dict[str, ReportRecipe]) -> list[str]:
    """The recipes' keys, those that can run on this machine first (available, then needing no download as
    the report set them up, then needing no optional install), so a page opens on one that runs here."""
    return sorted(recipes, key=lambda k: (not recipes[k].available, bool(downloads(recipes[k])),
                                          bool(recipes[k].needs)))


def listing() -> pd.DataFrame:
    """One row per recipe: key, title, backbone (and whether it is installed), runs, what was reported."""
    rows = []
    for r in RECIPES.values():
        runs = r.reported_runs() if r.available else ()
        figures = "; ".join(f"{f.acc:.1%} {f.when}" + (f" ({run.label})" if len(runs) > 1 else "")
                            for run in runs for f in run.reported)
        rows.append({"key": r.key, "title": r.title, "backbone": r.backbone + ("" if r.available else
                                                                            f" (needs {r.needs})"),
                     "runs": len(runs) or "—", "epochs": r.epochs, "image_size": r.image_size,
                     "reported": figures or ("—" if r.available else "install to see")})
    return pd.DataFrame(rows)


def beside_reported(recipe: ReportRecipe, store: RunStore, run_ids: list[str]) -> pd.DataFrame:
    """The user's runs of `recipe` beside the report's figures: one row per reported figure (or per run
    where the report gave none), with the user's validation accuracy at the same point."""
    curves = store.metrics.curves(run_ids)
    rows = []
    for run_id, run in zip(run_ids, recipe.reported_runs(), strict=True):
        mine = curves[curves.run_id == run_id]
        for figure in run.reported or (None,):
            epoch = None if figure is None else figure.epoch
            at = mine if epoch is None else mine[mine.epoch == epoch]
            rows.append({"run": run.label, "when": "at the end" if figure is None else figure.when,
                         "reported": None if figure is None else figure.acc,
                         "yours": float(at.val_acc.iloc[-1]) if len(at) else None,
                         "your epochs": int(mine.epoch.max()) if len(mine) else 0})
    return pd.DataFrame(rows)
