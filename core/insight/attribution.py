"""Why a model predicts what it predicts: Captum attributions behind one call shape, with pure helpers
to normalise and compare maps, and the model-randomisation sanity check.

    method = get_method("grad_cam")(model)             # or METHODS["grad_cam"](model, cfg, mean_colour)
    result = method.attribute(x, target=3)             # x: (N, 3, H, W) floats in [0, 1], on any device
    heat = normalize(result.maps[0])                   # (H, W) in [0, 1]

Every method returns per-pixel maps (N, H, W) at the input's resolution, summed over colour channels.
Inputs move to the model's device here, so callers never need to know where a model lives. A `progress`
callback sees each of the model's forward passes: slow methods report as they go, not only at the end.

Sections: settings · methods · normalisation · comparing maps · sanity check.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from captum.attr import (
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from scipy.stats import spearmanr
from torch import nn

from core.runtime import rng
from core.runtime.device import module_device
from core.runtime.download import Progress

# Captum announces, for every guided attribution, that it hooks ReLUs for the duration: expected here.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)

# -----------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class AttributionConfig:
    method: str = "grad_cam"  # a key of METHODS
    steps: int = 32  # Integrated Gradients: points on the path from baseline to image
    baseline: str = "black"  # Integrated Gradients: "black", "blur" or "mean" (the dataset's mean colour)
    internal_batch_size: int = 32  # Integrated Gradients: path points evaluated per batch
    window: int = 8  # Occlusion: side of the square patch blanked out, in pixels
    stride: int = 4  # Occlusion: step between patches
    samples: int = 16  # SmoothGrad: noisy copies averaged
    noise: float = 0.15  # SmoothGrad: noise standard deviation, in units of the [0, 1] pixel range
    layer: str | None = None  # Grad-CAM: the block whose output it weighs (None: the last block)


@dataclass
class Result:
    maps: torch.Tensor  # (N, H, W) signed attribution per pixel (summed over channels)
    target: torch.Tensor  # (N,) the class each map explains
    delta: torch.Tensor | None = None  # Integrated Gradients' convergence delta per image
    seconds: float = 0.0


def explainable(model: nn.Module) -> nn.Module:
    """A copy in eval mode with out-of-place ReLUs: gradient hooks (guided backprop) cannot work on
    activations that overwrite their input."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


SMALL_CAM = 3  # a Grad-CAM layer whose output is smaller than this many cells a side gives a blur, not a map


def last_conv_block(model: nn.Module, layer: str | None = None) -> nn.Module:
    """Grad-CAM's layer: a FreezeLabNet's block `layer` (its last block by default), else the model's last
    Conv2d."""
    if hasattr(model, "blocks"):
        return model.blocks[layer] if layer else list(model.blocks.values())[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("Grad-CAM needs a convolutional layer; this model has none.")
    return convs[-1]


def block_resolutions(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Each block's output size (height, width) at the model's image size (every image is resized to it): what
    a Grad-CAM on that block can resolve, before it is stretched over the image."""
    copy_ = explainable(model)  # hooks on a copy: the caller's model is shared
    sizes = {}

    def record(name: str):
        return lambda _module, _inputs, out: sizes.__setitem__(name, tuple(out.shape[-2:]))

    for name, block in copy_.blocks.items():
        block.register_forward_hook(record(name))
    with torch.no_grad():
        copy_(torch.zeros(1, 3, copy_.image_size, copy_.image_size, device=module_device(copy_)))
    return sizes


def small_layer(sizes: dict[str, tuple[int, int]], layer: str | None) -> str:
    """A warning, in words, when Grad-CAM's layer (`layer`, or the last block) outputs fewer than SMALL_CAM cells
    a side, naming the latest earlier block that does not; '' otherwise."""
    names = list(sizes)
    chosen = layer or names[-1]
    h, w = sizes[chosen]
    if min(h, w) >= SMALL_CAM:
        return ""
    better = next((n for n in reversed(names[: names.index(chosen)]) if min(sizes[n]) >= SMALL_CAM), None)
    return (f"{chosen} outputs {h}×{w} cells at this image size: Grad-CAM can only spread {h * w} value"
            f"{'s' if h * w > 1 else ''} over the image, so its map is a blur and its overlap figures mean little."
            + (f" Choose an earlier block, e.g. {better} ({sizes[better][0]}×{sizes[better][1]})." if better else ""))


def baseline_for(x: torch.Tensor, kind: str, mean_colour: torch.Tensor | None = None) -> torch.Tensor:
    """The reference image Integrated Gradients starts from."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "blur":
        k = max(3, (x.shape[-1] // 4) | 1)  # odd kernel, a quarter of the image
        return TF.gaussian_blur(x, [k, k], [k / 3.0, k / 3.0])
    if kind == "mean":
        if mean_colour is None:
            raise ValueError("The 'mean' baseline needs the dataset's mean colour (see data.mean_colour).")
        return mean_colour.view(1, 3, 1, 1).to(x).expand_as(x).clone()
    raise ValueError(f"Baseline is 'black', 'blur' or 'mean', not {kind!r}.")


# -----------------------------------------------------------------------------
# Methods: Method(model, **settings).attribute(x, target=...)


class Method:
    """Base: subclasses set `title`, `slow` and implement `_attribute` returning (N, C, H, W) and a delta,
    and `forward_passes`, how many times `_attribute` runs the model (for progress)."""
    title = ""
    slow = False  # slow methods get a settings panel open by default

    def __init__(self, model: nn.Module, cfg: AttributionConfig | None = None, mean_colour=None):
        self.model = explainable(model)
        self.cfg = cfg or AttributionConfig()
        self.mean_colour = mean_colour

    def forward_passes(self, x: torch.Tensor) -> int:
        return 1

    def attribute(self, x: torch.Tensor, target: int | torch.Tensor | None = None,
                  progress: Progress | None = None) -> Result:
        """Maps for images `x` (N, 3, H, W) in [0, 1]; `target` None explains the predicted class.
        `progress(done, total, what)` is called after each forward pass of the model."""
        start = time.perf_counter()
        device = module_device(self.model)
        x = x.to(device).float()
        if target is None:
            with torch.no_grad():
                target = self.model(x).argmax(1)
        target = torch.as_tensor(target, device=device).expand(len(x)).clone()
        total, done = self.forward_passes(x), 0

        def tick(*_) -> None:
            nonlocal done
            done += 1
            progress(min(done, total), total, self.title)

        hook = self.model.register_forward_pre_hook(tick) if progress else None
        try:
            raw, delta = self._attribute(x.clone().requires_grad_(True), target)
        finally:
            if hook is not None:
                hook.remove()
        maps = raw.detach().sum(1)
        if maps.shape[-2:] != x.shape[-2:]:
            maps = LayerAttribution.interpolate(maps.unsqueeze(1), x.shape[-2:], "bilinear").squeeze(1)
        return Result(maps.cpu(), target.cpu(), None if delta is None else delta.detach().cpu(),
                      time.perf_counter() - start)

    def _attribute(self, x, target):  # pragma: no cover - abstract
        raise NotImplementedError


class SaliencyMap(Method):
    title = "Saliency (absolute gradient)"

    def _attribute(self, x, target):
        return Saliency(self.model).attribute(x, target=target, abs=True), None


class IntegratedGradientsMap(Method):
    title = "Integrated Gradients"
    slow = True

    def forward_passes(self, x):  # the path in batches, then the two ends for the convergence delta
        return math.ceil(self.cfg.steps * len(x) / self.cfg.internal_batch_size) + 2

    def _attribute(self, x, target):
        cfg = self.cfg
        baseline = baseline_for(x.detach(), cfg.baseline, self.mean_colour)
        return IntegratedGradients(self.model).attribute(
            x, baselines=baseline, target=target, n_steps=cfg.steps, internal_batch_size=cfg.internal_batch_size,
            return_convergence_delta=True)


class GradCamMap(Method):
    title = "Grad-CAM"

    def _attribute(self, x, target):
        cam = LayerGradCam(self.model, last_conv_block(self.model, self.cfg.layer)).attribute(
            x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear"), None


class GuidedGradCamMap(Method):
    title = "Guided Grad-CAM"

    def forward_passes(self, x):  # Grad-CAM's pass and guided backpropagation's
        return 2

    def _attribute(self, x, target):
        return GuidedGradCam(self.model, last_conv_block(self.model, self.cfg.layer)).attribute(
            x, target=target, interpolate_mode="bilinear"), None


class OcclusionMap(Method):
    title = "Occlusion"
    slow = True
    PER_PASS = 64  # occluded copies evaluated per forward pass

    def forward_passes(self, x):  # the unoccluded image, then the patches in batches (Captum covers edges too)
        w, s = self.cfg.window, self.cfg.stride
        per_side = [math.ceil(max(d - w, 0) / s) + 1 for d in x.shape[-2:]]
        return 1 + math.ceil(len(x) * per_side[0] * per_side[1] / self.PER_PASS)

    def _attribute(self, x, target):
        w, s = self.cfg.window, self.cfg.stride
        if w > x.shape[-1]:
            raise ValueError(f"The occlusion window ({w} px) is larger than the image ({x.shape[-1]} px).")
        return Occlusion(self.model).attribute(x, target=target, sliding_window_shapes=(3, w, w),
                                               strides=(3, s, s), baselines=0.0,
                                               perturbations_per_eval=self.PER_PASS), None


class SmoothGradMap(Method):
    title = "SmoothGrad (NoiseTunnel over Saliency)"
    slow = True
    PER_PASS = 32  # noisy copies per forward pass

    def forward_passes(self, x):
        return math.ceil(self.cfg.samples / self.PER_PASS)

    def _attribute(self, x, target):
        cfg = self.cfg
        with rng.seeded(0):  # the noise comes from torch's global RNG: seeded, the same image gives the same map
            return NoiseTunnel(Saliency(self.model)).attribute(
                x, nt_type="smoothgrad", nt_samples=cfg.samples, nt_samples_batch_size=min(cfg.samples, self.PER_PASS),
                stdevs=cfg.noise, target=target, abs=True), None


METHODS: dict[str, type[Method]] = {
    "grad_cam": GradCamMap,
    "saliency": SaliencyMap,
    "integrated_gradients": IntegratedGradientsMap,
    "guided_grad_cam": GuidedGradCamMap,
    "occlusion": OcclusionMap,
    "smoothgrad": SmoothGradMap,
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"Unknown attribution method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def explain(model: nn.Module, x: torch.Tensor, cfg: AttributionConfig, target=None, mean_colour=None,
            progress: Progress | None = None) -> Result:
    """The one-call form: the method `cfg` names, with its settings."""
    return get_method(cfg.method)(model, cfg, mean_colour).attribute(x, target=target, progress=progress)


# -----------------------------------------------------------------------------
# Normalisation (pure)

SIGNS = ("absolute", "positive", "negative", "all")


def normalize(attr: np.ndarray | torch.Tensor, sign: str = "absolute", outlier_perc: float = 2.0) -> np.ndarray:
    """Scale a map for display: keep the part `sign` asks for, divide by the value below which
    100 - outlier_perc percent of it lies, clip. Returns [0, 1], or [-1, 1] for sign "all"."""
    a = np.asarray(attr.detach().cpu() if isinstance(attr, torch.Tensor) else attr, dtype=np.float64)
    if sign == "absolute":
        a = np.abs(a)
    elif sign == "positive":
        a = np.clip(a, 0, None)
    elif sign == "negative":
        a = np.clip(-a, 0, None)
    elif sign != "all":
        raise ValueError(f"Sign is one of {SIGNS}, not {sign!r}.")
    magnitude = np.abs(a).ravel()
    scale = np.percentile(magnitude, 100 - outlier_perc) if magnitude.size else 0.0
    if scale <= 1e-12:
        scale = magnitude.max() if magnitude.size and magnitude.max() > 1e-12 else 1.0
    return np.clip(a / scale, -1.0 if sign == "all" else 0.0, 1.0)


# -----------------------------------------------------------------------------
# Comparing maps (pure)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation between two maps' absolute values (1: same ordering of pixels)."""
    a, b = np.abs(np.asarray(a, dtype=np.float64)).ravel(), np.abs(np.asarray(b, dtype=np.float64)).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def top_k_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the `fraction` most attributed pixels of `a` that are also among `b`'s."""
    a, b = np.abs(np.asarray(a)).ravel(), np.abs(np.asarray(b)).ravel()
    k = max(1, round(fraction * a.size))
    top_a, top_b = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    return len(top_a & top_b) / k


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """normalize(a) - normalize(b): where `a` looks more than `b` (positive) or less (negative)."""
    return normalize(a) - normalize(b)


def similarity(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> dict[str, float]:
    return {"spearman": rank_correlation(a, b), "top_k_overlap": top_k_overlap(a, b, fraction)}


def mass_inside(attr: np.ndarray, mask: np.ndarray) -> float:
    """Share of the absolute attribution that falls inside `mask`."""
    a = np.abs(np.asarray(attr, dtype=np.float64))
    return float(a[np.asarray(mask, dtype=bool)].sum() / max(a.sum(), 1e-12))


# -----------------------------------------------------------------------------
# Sanity check: cascading model-parameter randomisation (Adebayo et al., 2018, "Sanity Checks for
# Saliency Maps", NeurIPS). Re-initialise the layers from the head down, one block at a time; a map
# that stays similar to the original does not depend on what the model learned.

DEPENDENCE_THRESHOLD = 0.5  # Spearman similarity after randomising everything above which a method is flagged


def randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise every layer in `module` (as at construction), reproducibly."""
    with rng.seeded(seed):
        for m in module.modules():
            if hasattr(m, "reset_parameters"):  # conv, linear; BatchNorm also resets its statistics
                m.reset_parameters()


@dataclass
class SanityCheck:
    method: str
    stages: list[str]  # "original", then "head", "head + layer4", ...
    spearman: list[float]  # similarity of each stage's map to the original: the median over the images
    top_k_overlap: list[float]
    depends_on_model: bool  # False: the map stayed similar at every stage, so it says little about the model
    original: np.ndarray  # the trained model's map of the first image, the one its stages are compared with
    images: int = 1  # how many images the medians are over
    verdict: str = ""  # the verdict in words, with the figures it rests on

    def table(self):
        import pandas as pd

        return pd.DataFrame({"randomised": self.stages, "spearman": self.spearman,
                             "top_k_overlap": self.top_k_overlap})


def sanity_verdict(stages: list[str], spearman: list[float], images: int = 1) -> tuple[bool, str]:
    """(depends on the model, in words) from every stage of a sanity check, not the last alone: a map that
    falls below DEPENDENCE_THRESHOLD at any stage depends on what that stage randomised, even if it looks like
    the original again later; one that never falls below it says little about the model."""
    over = f" (median over {images} images)" if images > 1 else ""
    rho = [float(r) if np.isfinite(r) else -1.0 for r in spearman[1:]]  # a flat map (NaN) is as unlike as can be
    low = min(range(len(rho)), key=rho.__getitem__)
    first = next((i for i, r in enumerate(rho) if r < DEPENDENCE_THRESHOLD), None)
    if first is None:
        return False, (f"The map stays similar at every stage{over}: its Spearman ρ to the original never falls "
                       f"below {DEPENDENCE_THRESHOLD} (lowest {rho[low]:.2f}, with {stages[low + 1]} randomised), "
                       "so it says more about the image than about the model.")
    words = (f"The map changes once {stages[first + 1]} is randomised{over}: Spearman ρ {rho[first]:.2f}, below "
             f"{DEPENDENCE_THRESHOLD}, so it depends on what the model learned.")
    if rho[-1] >= DEPENDENCE_THRESHOLD:
        words += (f" With every layer randomised it is similar again (ρ {rho[-1]:.2f}): part of it comes from the "
                  "image and the architecture, not the weights.")
    return True, words


def sanity_check(model: nn.Module, x: torch.Tensor, cfg: AttributionConfig,
                 target: int | list[int] | None = None, seed: int = 0, progress: Progress | None = None,
                 mean_colour=None) -> SanityCheck:
    """Map similarity to the original as blocks are randomised from the head down (cumulatively), for each image
    in `x`; the stages' figures are medians over the images, and the verdict reads every stage
    (`sanity_verdict`). `target`: one class for every image, one per image, or None for each image's own
    prediction. `mean_colour` is the "mean" baseline's colour: pass the one the original map was made with."""
    model = explainable(model)
    x = x.to(module_device(model)).float()
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    targets = (predicted if target is None else [int(target)] * len(x) if isinstance(target, int)
               else [int(t) for t in target])
    originals = [explain(model, x[i : i + 1], cfg, targets[i], mean_colour).maps[0].numpy() for i in range(len(x))]
    parts = [("head", model.head), *reversed(list(model.blocks.items()))]
    stages, rho, overlap = ["original"], [1.0], [1.0]
    label = ""
    for i, (name, module) in enumerate(parts):
        randomise(module, seed + i)
        label = name if not label else f"{label} + {name}"
        sims = [similarity(originals[j], explain(model, x[j : j + 1], cfg, targets[j], mean_colour).maps[0].numpy())
                for j in range(len(x))]
        stages.append(label)
        rho.append(float(np.median([s["spearman"] if np.isfinite(s["spearman"]) else -1.0 for s in sims])))
        overlap.append(float(np.median([s["top_k_overlap"] for s in sims])))
        if progress:
            progress(i + 1, len(parts), f"randomised {label}")
    depends, words = sanity_verdict(stages, rho, len(x))
    return SanityCheck(cfg.method, stages, rho, overlap, depends, originals[0], len(x), words)
