"""The lesson: seven steps on what freezing does, one idea each. Each step asks a question, takes the student's
prediction before anything runs, trains (or measures) something small, and then reveals what happened in words
written from that run's own numbers, saying whether the prediction held.

    step = STEPS[0]                                  # the race
    configs = lesson_configs(step.runs)              # what its Run button trains
    reveal = race_reveal(final_accuracies(store, run_ids))
    reveal.text, reveal.answers, reveal.verdict(predicted)

Each `*_reveal` takes plain numbers (what the store, or a measurement, holds), so it is tested with fixed numbers;
the `*_from_store` helpers read those numbers for stored runs. Pages only show what these return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.data.datasets import DataConfig, ImageData
from core.experiments import studies
from core.freezing import BN_POLICIES, presets
from core.insight import attribution as A
from core.insight import explain as E
from core.models.backbones import ModelConfig, block_names
from core.store.runs import RunStore
from core.training.config import (
    DEMO_COMPARISON,
    DEMO_OPTIM,
    RunConfig,
    bn_comparison,
    comparison,
    demo_comparison,
)

# -----------------------------------------------------------------------------
# The steps


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    question: str
    choices: tuple[str, ...]  # the predictions offered, before the run
    why: str  # the paragraph after the reveal
    runs: str  # which runs answer it (a key of RUN_SETS, or "" for a measurement)
    deeper: str  # the page that goes further on the same runs
    deeper_what: str  # what that page shows


RACE_CHOICES = ("Feature extraction", "Fine-tune the top 2 blocks", "From scratch")
BOUNDARY_CHOICES = ("Only the top two blocks and the head", "Every block, the first ones most",
                    "Every block a little, the head most")
DEPTH_CHOICES = ("Accuracy falls a little with each block frozen", "Little is lost until the last blocks freeze",
                 "No clear cost: within the seeds' spread")
FORGETTING_CHOICES = ("Fine-tuning forgets digits 0-4 more", "Feature extraction forgets more",
                      "Neither forgets")
MAPS_CHOICES = ("Much the same map", "Clearly different maps")
COST_CHOICES = ("Under 1.5× faster", "1.5× to 3× faster", "Over 3× faster")

STEPS: tuple[Step, ...] = (
    Step("race", "The race",
         "A network pretrained on digits 0-4 learns digits 5-9 from 20 images each, three ways: keep its backbone "
         "frozen and train only a new head; also fine-tune its top two blocks; or start the same architecture "
         "from random weights. Same images, epochs and seed. Which ends highest?", RACE_CHOICES,
         "Feature extraction trains only a new head on features learned for digits 0-4; fine-tuning the top "
         "blocks lets those features adapt to 5-9 as well; from scratch has to learn every feature from these 100 "
         "images. Which wins depends on how well the old features suit the new digits, and, with this few images "
         "and epochs, on the seed too: run the race again on the Train page with another seed or more epochs and "
         "see whether the order holds.", "race", "app_pages/train.py", "the curves, step by step"),
    Step("boundary", "The freeze boundary",
         "In the run that fine-tunes the top two blocks, which blocks' weights will have moved from where they "
         "started?", BOUNDARY_CHOICES,
         "Freezing sets requires_grad to False: no gradient is computed for a frozen block, so the optimizer "
         "never changes it. The boundary is sharp, not gradual: below it nothing moves at all, above it "
         "everything may. The error signal still flows back through the trainable blocks, and stops at the "
         "first frozen one.", "race", "app_pages/inside.py", "drift and gradient heat maps per epoch"),
    Step("batchnorm", "BatchNorm in frozen blocks",
         "A frozen block's weights stay put, but its BatchNorm layers also keep running statistics of their "
         "inputs, and a scale and shift (γ, β). Three runs differ only in what BatchNorm does in the frozen "
         "blocks while the top block trains: nothing (frozen), statistics follow the new data (stats), or γ "
         "and β train (affine). Which ends highest?", tuple(BN_POLICIES),
         "requires_grad does not freeze BatchNorm's running mean and variance: in training mode they follow "
         "each batch. Whether they should depends on how far the new data is from the old; on a small dataset "
         "the noisy statistics of 20-image batches can hurt as much as they help. Which is best is an "
         "empirical question — which is why it is a setting.", "batchnorm", "app_pages/inside.py",
         "BatchNorm drift by block, and the three policies side by side"),
    Step("depth", "How deep to freeze",
         "Freeze the first k blocks and fine-tune the rest, for every k, two seeds each (dots), plus the "
         "network from scratch. How does the final accuracy change as more blocks freeze?", DEPTH_CHOICES,
         "Early layers tend to learn general features (edges, strokes) that transfer, later ones features more "
         "specific to the task they learned (Yosinski et al., 2014), so freezing deeper costs more the further "
         "apart the two tasks are. With two seeds of 20 images per class, a difference smaller than the seeds' "
         "spread says nothing either way: more seeds (the Experiments page) narrow it.",
         "depth", "app_pages/experiments.py", "the sweep's table and spread"),
    Step("forgetting", "What the source task lost",
         "The race's networks were pretrained on digits 0-4. Put the old digits-0-4 head back on each run's "
         "backbone: which one still recognises the old digits?", FORGETTING_CHOICES,
         "Feature extraction never changes the backbone (its BatchNorm statistics stay frozen too), so the old "
         "head on it computes exactly what it did before. Fine-tuning moves the top blocks toward the new task, "
         "and the old head was never trained on the moved features: how much it loses is how much the shared "
         "features changed — catastrophic forgetting, in miniature.", "race",
         "app_pages/inside.py", "source-task accuracy at each kept step"),
    Step("maps", "What the models look at",
         "Ask Grad-CAM where the frozen run and the fine-tuned run look on the same validation image. Will the "
         "two maps agree?", MAPS_CHOICES,
         "The frozen run's last block is the pretrained one, so its map shows what the digits-0-4 network "
         "attends to; fine-tuning changes those features. Two maps can also differ simply because the runs "
         "predict different classes. Check the sanity test before reading a map: a map that barely changes "
         "when the weights are randomised says little about the model.", "race", "app_pages/explain.py",
         "every method, the difference between maps, the sanity check"),
    Step("cost", "What freezing saves",
         "Time one training step on this machine with nothing frozen and with the whole backbone frozen. How "
         "much faster is the frozen step?", COST_CHOICES,
         "A frozen block needs no gradients for its weights and keeps fewer activations for backward, so its "
         "share of the backward pass goes; the forward pass still runs through every block, so the saving is "
         "at most the backward's share of a step. FreezeLab goes further in training: with the backbone frozen "
         "and no augmentation it caches the frozen features, and later epochs skip the backbone entirely.", "",
         "app_pages/inside.py", "cost against depth, memory kept for backward"),
)
STEP_KEYS = tuple(s.key for s in STEPS)


def step(key: str) -> Step:
    return STEPS[STEP_KEYS.index(key)]


# -----------------------------------------------------------------------------
# What each step trains


LESSON_EPOCHS = 4  # the race's budget: long enough for the three to part, short enough to watch (seconds)
DEPTH_EPOCHS, DEPTH_SEEDS = 2, 2


def lesson_configs(runs: str, data: DataConfig | None = None, model: ModelConfig | None = None) -> list[RunConfig]:
    """The runs a set of the lesson trains: on the offline demo by default (small, so each reveal comes in
    seconds), or on another setup's data and backbone (as long as they take there). The race is the demo
    comparison's three recipes, each at its own suited rate."""
    data, model = data or DataConfig(), model or ModelConfig()
    blocks = block_names(model.backbone)
    if runs == "race":
        if (data, model) == (DataConfig(), ModelConfig()):
            return demo_comparison(epochs=LESSON_EPOCHS)
        return comparison(presets(blocks), DEMO_COMPARISON, data=data, model=model, optim=DEMO_OPTIM,
                          epochs=LESSON_EPOCHS)
    if runs == "batchnorm":
        return bn_comparison(data, model, blocks, epochs=3, optim=DEMO_OPTIM)
    if runs == "depth":
        return studies.depth_sweep(data, model, DEMO_OPTIM, DEPTH_EPOCHS, DEPTH_SEEDS)
    raise KeyError(f"The lesson trains no run set {runs!r}.")


RUN_SETS = ("race", "batchnorm", "depth")


# -----------------------------------------------------------------------------
# Reveals


@dataclass(frozen=True)
class Reveal:
    text: str  # what happened, in the runs' numbers
    answers: tuple[str, ...]  # the choices the numbers support (several where the numbers tie)
    numbers: dict = field(default_factory=dict)  # the figures the text states, by name

    def right(self, predicted: str | None) -> bool:
        return predicted in self.answers

    def verdict(self, predicted: str | None) -> str:
        if predicted is None:
            return ""
        if self.right(predicted):
            return f"Your prediction — {predicted.lower()} — held."
        return f"You predicted {predicted.lower()}; the runs say {' or '.join(a.lower() for a in self.answers)}."


def _points(a: float, b: float) -> str:
    """The gap between two accuracies in points, from the values as shown (two decimals), so the words and the
    figures beside them agree."""
    gap = abs(round(a, 2) - round(b, 2)) * 100
    return f"{gap:.0f} point{'' if round(gap) == 1 else 's'}"


def final_accuracies(store: RunStore, run_ids: list[str]) -> dict[str, float]:
    """Each run's final validation accuracy (the run store's `val_acc`, as every table shows it), by label, in
    the order of `run_ids` (runs with no epoch left out)."""
    table = store.runs().set_index("id").reindex(run_ids).dropna(subset=["val_acc"])
    return {row.label: float(row.val_acc) for row in table.itertuples()}


def race_reveal(finals: dict[str, float]) -> Reveal:
    """Which of the race's runs ended highest, and by how much, from their final validation accuracies."""
    ranked = sorted(finals.items(), key=lambda kv: -kv[1])
    (best, top), rest = ranked[0], ranked[1:]
    tie = [label for label, value in rest if round(value, 2) == round(top, 2)]
    said = [f"{best} ended highest, at {top:.2f}"]
    said += [f"{label} {value:.2f} ({_points(top, value)} lower)" for label, value in rest if label not in tie]
    text = ", ".join(said) + "."
    if tie:
        said = [f"{', '.join([best, *tie[:-1]])} and {tie[-1]} ended level, at {top:.2f} to two decimals: on a few "
                "hundred validation images, a tie"]
        said += [f"{label} {value:.2f} ({_points(top, value)} lower)" for label, value in rest if label not in tie]
        text = "; ".join(said) + "."
    return Reveal(text, (best, *tie), dict(finals))


def boundary_reveal(drift: dict[str, float], trainable: tuple[str, ...]) -> Reveal:
    """Which blocks moved (relative weight drift above 0) in a run that trains `trainable` and the head, from
    each block's drift at its last epoch (in forward order, the head last)."""
    moved = [b for b, d in drift.items() if d > 0]
    still = [b for b, d in drift.items() if d == 0]
    said = ", ".join(f"{b} {drift[b]:.1%}" for b in moved)
    text = f"Moved from their starting weights: {said}."
    if still:
        text += f" {', '.join(still)} moved exactly 0: not a little, nothing."
    blocks = [b for b in drift if b != "head"]
    if set(moved) == {*trainable, "head"}:
        answer = BOUNDARY_CHOICES[0]
    elif blocks and drift[blocks[0]] > 0 and drift[blocks[0]] >= max(drift[b] for b in blocks):
        answer = BOUNDARY_CHOICES[1]
    else:
        answer = BOUNDARY_CHOICES[2]
    return Reveal(text, (answer,), dict(drift))


def last_drift(store: RunStore, run_id: str) -> dict[str, float]:
    """A run's weight drift per block (the head last) at its last recorded epoch."""
    stats = store.block_stats([run_id])
    last = stats[stats.epoch == stats.epoch.max()]
    return {row.block: float(row.drift) for row in last.itertuples()}


def batchnorm_reveal(finals: dict[str, float], frozen_bn_drift: dict[str, float]) -> Reveal:
    """Which BatchNorm policy ended highest (finals by policy) and how far the frozen blocks' running
    statistics moved under each (mean BatchNorm drift over the frozen blocks, by policy)."""
    race = race_reveal(finals)
    moved = "; ".join(f"{policy}: {d:.1%}" for policy, d in frozen_bn_drift.items())
    text = (f"{race.text} The frozen blocks' running statistics moved — {moved} — so only the policy that lets "
            "them follow the data changes what a frozen block computes.")
    return Reveal(text, race.answers, {**finals, **{f"bn_drift {p}": d for p, d in frozen_bn_drift.items()}})


def bn_policy_numbers(store: RunStore, run_ids: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """(final accuracy, mean BatchNorm drift of the frozen blocks at the last epoch), each by policy."""
    finals, drifts = {}, {}
    for run_id in run_ids:
        cfg = store.config(run_id)
        plan = cfg.phases[0].plan
        accuracy = final_accuracies(store, [run_id])
        if not accuracy:
            continue
        finals[plan.bn] = next(iter(accuracy.values()))
        stats = store.block_stats([run_id])
        last = stats[(stats.epoch == stats.epoch.max()) & ~stats.block.isin([*plan.trainable, "head"])]
        drifts[plan.bn] = float(last.bn_drift.mean()) if last.bn_drift.notna().any() else 0.0
    return finals, drifts


def depth_reveal(mean_by_depth: dict[int, float], spread: float, scratch: float) -> Reveal:
    """How accuracy changed with the number of frozen blocks (mean over seeds, by k; `spread` the seeds' standard
    deviation, averaged over the depths) against the from-scratch control: the whole drop, and how much of it
    the last two blocks account for. A drop within twice the spread is no clear cost."""
    ks = sorted(mean_by_depth)
    first, last = mean_by_depth[ks[0]], mean_by_depth[ks[-1]]
    drop = first - last
    listed = ", ".join(f"k={k}: {mean_by_depth[k]:.2f}" for k in ks)
    text = (f"Mean final accuracy by frozen blocks — {listed}; from scratch {scratch:.2f}. Seeds of one setting "
            f"differ by {spread:.2f} (standard deviation, on average).")
    if drop <= 2 * spread:
        answer = DEPTH_CHOICES[2]
        text += (f" Freezing every block changed the mean by {_points(first, last)}, within twice that spread: "
                 "these runs cannot tell the depths apart.")
    else:
        late = mean_by_depth[ks[-3]] - last if len(ks) >= 3 else drop
        share = late / drop
        answer = DEPTH_CHOICES[1] if share >= 0.6 else DEPTH_CHOICES[0]
        text += (f" Freezing every block cost {_points(first, last)}; freezing the last two alone accounts for "
                 f"{share:.0%} of that.")
    return Reveal(text, (answer,), {"drop": drop, "spread": spread, "scratch": scratch,
                                    **{f"k={k}": v for k, v in mean_by_depth.items()}})


def depth_numbers(store: RunStore, run_ids: list[str]) -> tuple[dict[int, float], float, float]:
    """(mean final accuracy by frozen depth, the seeds' standard deviation averaged over depths, the from-scratch
    control's mean) of a depth sweep's runs."""
    runs = studies.sweep_runs(store, run_ids)
    done = runs[runs.val_acc.notna()]
    frozen = done[done.depth.notna()]
    by_depth = frozen.groupby("depth").val_acc
    means = {int(k): float(v) for k, v in by_depth.mean().items()}
    spread = float(by_depth.std().mean()) if len(frozen) > len(means) else 0.0
    scratch = done[done.depth.isna()].val_acc.mean()
    return means, spread, float(scratch) if pd.notna(scratch) else math.nan


def forgetting_reveal(source_before: dict[str, float], source_after: dict[str, float]) -> Reveal:
    """What each run kept of the source task (accuracy on held-out digits 0-4 with the source head, at its start
    and at its end), by label."""
    lost = {label: source_before[label] - source_after[label] for label in source_after}
    said = "; ".join(f"{label} {source_before[label]:.2f} → {source_after[label]:.2f}" for label in source_after)
    text = f"Accuracy on held-out digits 0-4 with the old head, before → after: {said}."
    fe = next((v for k, v in lost.items() if k.startswith("Feature extraction")), 0.0)
    ft = next((v for k, v in lost.items() if k.startswith("Fine-tune")), 0.0)
    if max(fe, ft) <= 0.01:
        answer = FORGETTING_CHOICES[2]
    else:
        answer = FORGETTING_CHOICES[0] if ft > fe else FORGETTING_CHOICES[1]
    return Reveal(text, (answer,), {f"lost {k}": v for k, v in lost.items()})


SAME_MAP = 0.5  # two maps are "much the same" when both their rank correlation and their top-10% overlap reach it


def maps_reveal(spearman: float, overlap: float, sanity: dict[str, str]) -> Reveal:
    """Whether two runs' maps of one image and one class agree: the Spearman rank correlation of their pixels and
    the share of their top 10% pixels they have in common must both reach SAME_MAP; with each map's sanity
    verdict (by label)."""
    answer = MAPS_CHOICES[0] if min(spearman, overlap) >= SAME_MAP else MAPS_CHOICES[1]
    text = (f"Explaining the image's true class, the two maps' rank correlation is {spearman:.2f} (1: the same "
            f"ordering of pixels) and they share {overlap:.0%} of their hottest tenth of pixels; this lesson calls "
            f"two maps much the same when both reach {SAME_MAP}. "
            + " ".join(f"{label}: {verdict}" for label, verdict in sanity.items()))
    return Reveal(text, (answer,), {"spearman": spearman, "overlap": overlap})


@dataclass
class Maps:
    image: torch.Tensor  # the uint8 validation image explained
    true_class: str
    maps: dict[str, np.ndarray]  # by run label: Grad-CAM of the true class, scaled to [0, 1] for display
    spearman: float  # of the maps as computed
    overlap: float  # the share of their top 10% pixels in common
    sanity: dict[str, str]  # by run label: the sanity check's verdict


def maps_of(models: dict[str, nn.Module], data: ImageData, index: int = 0) -> Maps:
    """Grad-CAM maps of validation image `index`'s true class for each model (by label; two), how alike they are,
    and each one's sanity check over that image and the next two."""
    cfg = A.AttributionConfig()
    image, target = data.val_x[index], int(data.val_y[index])
    explained = E.explain_runs(models, image, cfg, target)
    maps = {label: run.result.maps[0].numpy() for label, run in explained.items()}
    first, second = maps.values()
    images, targets = E.sanity_images(image, target, "true", data)
    sanity = {label: A.sanity_check(model, images, cfg, targets).verdict for label, model in models.items()}
    shown = {label: A.normalize(m) for label, m in maps.items()}
    alike = A.similarity(first, second)
    return Maps(image, data.classes[target], shown, alike["spearman"], alike["top_k_overlap"], sanity)


def cost_reveal(step_s_none_frozen: float, step_s_all_frozen: float, spread_s: float, accuracy_gap: float | None
                ) -> Reveal:
    """How much faster a step was with every block frozen than with none (medians, with the measurements'
    summed interquartile spread), beside what the race says freezing cost in accuracy (points, or None)."""
    ratio = step_s_none_frozen / step_s_all_frozen
    answer = COST_CHOICES[0] if ratio < 1.5 else COST_CHOICES[1] if ratio <= 3 else COST_CHOICES[2]
    text = (f"A step took {step_s_none_frozen * 1000:.1f} ms with nothing frozen and {step_s_all_frozen * 1000:.1f} "
            f"ms with the backbone frozen: {ratio:.1f}× faster")
    if abs(step_s_none_frozen - step_s_all_frozen) <= spread_s:
        text += f", though within the measurements' spread ({spread_s * 1000:.1f} ms): measure again to be sure"
    text += "."
    if accuracy_gap is not None:
        text += (f" In the race, feature extraction ended {_points(0, accuracy_gap)} "
                 f"{'below' if accuracy_gap > 0 else 'above'} fine-tuning the top two blocks.")
    return Reveal(text, (answer,), {"ratio": ratio})


# -----------------------------------------------------------------------------
# While a step's runs train


def pace_words(done: float, total: float, elapsed_s: float, others: int) -> str:
    """When a step's runs will end, estimated from the pace they have kept so far (epochs `done` of `total` in
    `elapsed_s`), which already counts the turns they take with `others` browsers' runs on the same machine."""
    sharing = (f" {others} other browser{'s are' if others > 1 else ' is'} training too: runs take turns on this "
               "machine, so each goes slower." if others else "")
    if done <= 0 or elapsed_s <= 0:
        return "⏳ Starting…" + sharing
    left = elapsed_s * (total - done) / done
    return f"⏳ Training: {done:.1f} of {total:g} epochs, about {math.ceil(left)} s left at this pace." + sharing
