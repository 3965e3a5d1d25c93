"""What the Explain page computes: each run's prediction and map for one image, and one run's maps over
its kept checkpoints. The page picks runs, an image and a method, and draws what comes back.

One baseline serves everything shown together: `baseline_colour` gives the dataset's mean colour once,
and the maps, the sanity check and the history all take it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.data.datasets import mean_colour, to_float
from core.insight import analysis
from core.insight import attribution as A
from core.runtime.download import Progress


def image_input(image: torch.Tensor) -> torch.Tensor:
    """One uint8 image (3, H, W) as a model's input: a batch of one, floats in [0, 1]."""
    return to_float(image.unsqueeze(0))


SANITY_IMAGES = 3  # the image shown and two more: a verdict on one image can be that image's accident


def sanity_images(image: torch.Tensor, target: int | None, kind: str, data) -> tuple[torch.Tensor, list | None]:
    """(images, targets) for a sanity check: the image shown and the next validation images, each explained as
    the page explains (`kind` "true": each image's own true class; "class": the one class; else each image's
    own prediction, None)."""
    others = list(itertools.islice((i for i in range(len(data.val_x)) if not torch.equal(data.val_x[i], image)),
                                   SANITY_IMAGES - 1))  # the first few: not every image compared
    images = torch.stack([image, *(data.val_x[i] for i in others)])
    if kind == "true":
        return to_float(images), [int(target), *(int(data.val_y[i]) for i in others)]
    return to_float(images), (None if target is None else [int(target)] * len(images))


def baseline_colour(cfg: A.AttributionConfig, train_x: torch.Tensor) -> torch.Tensor | None:
    """The "mean" baseline's colour (the training images' mean) when `cfg` asks for it, else None."""
    return mean_colour(train_x) if cfg.method == "integrated_gradients" and cfg.baseline == "mean" else None


def _share(progress: Progress | None, part: int, parts: int, what: str) -> Progress | None:
    """A progress callback for part `part` of `parts` equal parts of a larger job."""
    if progress is None:
        return None
    return lambda done, total, _: progress(part * total + done, parts * total, what)


@dataclass
class RunMap:
    probabilities: np.ndarray  # (C,) the run's class probabilities for the image
    predicted: int
    result: A.Result  # the map, the class it explains, its convergence delta and time


def explain_runs(models: dict[str, nn.Module], image: torch.Tensor, cfg: A.AttributionConfig,
                 target: int | None = None, mean_colour: torch.Tensor | None = None,
                 progress: Progress | None = None, labels: dict[str, str] | None = None) -> dict[str, RunMap]:
    """Each run's prediction and map for the uint8 `image`; `target` None explains each run's own
    prediction. Progress moves within each run's attribution, not only between runs."""
    x, out = image_input(image), {}
    for i, (run_id, model) in enumerate(models.items()):
        what = f"{A.METHODS[cfg.method].title} for {(labels or {}).get(run_id, run_id)}"
        probs = analysis.predict(model, image.unsqueeze(0))[0].numpy()
        result = A.explain(model, x, cfg, target, mean_colour, _share(progress, i, len(models), what))
        out[run_id] = RunMap(probs, int(probs.argmax()), result)
    return out


def different_questions(results: dict[str, RunMap]) -> bool:
    """Whether the runs' maps explain different classes (each its own prediction, and they differ): comparing
    them then compares answers to different questions, not two answers to one."""
    return len({int(r.result.target[0]) for r in results.values()}) > 1


@dataclass
class MapHistory:
    steps: list[int]
    maps: dict[int, np.ndarray]  # step -> map
    spearman: list[float]  # each step's map against the last one
    top_k_overlap: list[float]


def map_history(model_at: Callable[[int], nn.Module], steps: list[int], image: torch.Tensor,
                cfg: A.AttributionConfig, target: int | None = None, mean_colour: torch.Tensor | None = None,
                progress: Progress | None = None) -> MapHistory:
    """A run's map at each kept step (`model_at(step)` gives its model), compared with the last one."""
    x, maps = image_input(image), {}
    for i, step in enumerate(steps):
        maps[step] = A.explain(model_at(step), x, cfg, target, mean_colour,
                               _share(progress, i, len(steps), f"step {step}")).maps[0].numpy()
    final = maps[steps[-1]]
    sims = [A.similarity(maps[s], final) for s in steps]
    return MapHistory(list(steps), maps, [s["spearman"] for s in sims], [s["top_k_overlap"] for s in sims])
