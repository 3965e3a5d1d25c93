"""Backbone registry: torchvision models and the bundled demo net, split into named blocks plus a head.

Every model FreezeLab trains is a `FreezeLabNet`: normalise -> named blocks -> head. It takes float
images in [0, 1], so the weights carry their own normalisation and attribution baselines (a black
image is zeros) mean the same thing for every backbone.

Registering a backbone takes one decorator on the function that splits its architecture into blocks:

    @register_torchvision("resnet18", "resnet50", family="resnet")
    def _split_resnet(m): ...

As in torchvision's registry, a name is registered once: a second registration is refused.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from core.runtime import rng
from core.runtime.download import Progress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN = (0.1307,) * 3  # the usual MNIST statistics, on three identical channels
MNIST_STD = (0.3081,) * 3

# -----------------------------------------------------------------------------
# Configs


@dataclass(frozen=True)
class HeadConfig:
    pool: str = "avg"  # "avg": global average pooling; "flatten": keep the whole map, as Keras' Flatten()
    hidden: tuple[int, ...] = ()  # widths of hidden Linear+ReLU layers before the classifier
    dropout: float = 0.0  # dropout after each hidden layer (before the classifier when there is none)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "demo"  # a name from list_backbones()
    weights: str = "pretrained"  # "pretrained", "none" (from scratch), "file:<path>" or "zoo:<name>"
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    build: Callable[[], nn.Module]  # the architecture, randomly initialised
    split: Callable[[nn.Module], OrderedDict]  # named blocks in forward order; the classifier left out
    image_size: int  # a sensible input size on a laptop CPU
    pretrained: str  # what "pretrained" weights are for this backbone, in words
    weights_from: str = "torchvision"  # where "pretrained" comes from: torchvision, timm, or "zoo:<entry>"
    min_size: int = 8  # the smallest input side the architecture accepts (8: the data's own floor)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


_REGISTRY: dict[str, BackboneSpec] = {}


def list_backbones() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def register_backbone(name: str, *, family: str, build: Callable[[], nn.Module], image_size: int, pretrained: str,
                      **spec_fields):
    """Register one backbone by its block splitter (the decorated function); a taken name is refused."""

    def deco(split: Callable[[nn.Module], OrderedDict]):
        if name in _REGISTRY:
            raise ValueError(f"A backbone named {name!r} is registered already ({_REGISTRY[name].family}).")
        _REGISTRY[name] = BackboneSpec(name=name, family=family, build=build, split=split, image_size=image_size,
                                       pretrained=pretrained, **spec_fields)
        return split

    return deco


def register_torchvision(*names: str, family: str, image_size: int = 64, min_size: int = 8):
    """Register torchvision models that share one block splitter; "pretrained" is their ImageNet weights."""

    def deco(split: Callable[[nn.Module], OrderedDict]):
        for name in names:
            register_backbone(name, family=family, image_size=image_size, min_size=min_size,
                              pretrained="ImageNet-1k (torchvision)",
                              build=lambda name=name: torchvision.models.get_model(name, weights=None))(split)
        return split

    return deco


TIMM_AVAILABLE = importlib.util.find_spec("timm") is not None  # timm is an optional install (the timm extra)


def register_timm(*names: str, family: str, image_size: int, min_size: int):
    """Register timm models that share one block splitter, when timm is installed (else they are not
    listed); "pretrained" is timm's default ImageNet weights, from the Hugging Face hub."""

    def build(name: str) -> nn.Module:
        import timm  # imported when a model is built: importing timm takes seconds

        return timm.create_model(name, pretrained=False)

    def deco(split: Callable[[nn.Module], OrderedDict]):
        if TIMM_AVAILABLE:
            for name in names:
                register_backbone(name, family=family, image_size=image_size, min_size=min_size,
                                  pretrained="ImageNet-1k (timm, Hugging Face hub)", weights_from="timm",
                                  build=functools.partial(build, name))(split)
        return split

    return deco


# -----------------------------------------------------------------------------
# Block splitters


@register_torchvision("resnet18", "resnet34", "resnet50", family="resnet")
def _split_resnet(m: nn.Module) -> OrderedDict:
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return OrderedDict(stem=stem, layer1=m.layer1, layer2=m.layer2, layer3=m.layer3, layer4=m.layer4)


@register_torchvision("vgg11", "vgg16", "vgg16_bn", family="vgg", min_size=32)  # five halvings to 1x1
def _split_vgg(m: nn.Module) -> OrderedDict:
    """block1..block5, each ending at its max-pool, as Keras names VGG's blocks."""
    blocks, current = OrderedDict(), []
    for layer in m.features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks[f"block{len(blocks) + 1}"] = nn.Sequential(*current)
            current = []
    return blocks


@register_torchvision("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                      family="mobile")
def _split_by_resolution(m: nn.Module) -> OrderedDict:
    """Group `features` into stages: a new stage starts wherever the resolution halves."""
    groups: list[list[nn.Module]] = []
    was_training = m.training
    m.eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        for layer in m.features:
            y = layer(x)
            if not groups or y.shape[-1] < x.shape[-1]:
                groups.append([])
            groups[-1].append(layer)
            x = y
    m.train(was_training)
    names = ["stem"] + [f"stage{i}" for i in range(1, len(groups))]
    return OrderedDict((n, nn.Sequential(*g)) for n, g in zip(names, groups, strict=True))


@register_timm("inception_resnet_v2", family="inception", image_size=75, min_size=75)
def _split_inception_resnet(m: nn.Module) -> OrderedDict:
    """The stem, then the three Inception-ResNet stages (A: 35x35 blocks, B: 17x17, C: 8x8 at 299 px),
    each with the reduction block that leads into it; Keras' InceptionResNetV2 accepts 75 px and up."""
    return OrderedDict(
        stem=nn.Sequential(m.conv2d_1a, m.conv2d_2a, m.conv2d_2b, m.maxpool_3a, m.conv2d_3b, m.conv2d_4a,
                           m.maxpool_5a),
        inception_a=nn.Sequential(m.mixed_5b, m.repeat),
        inception_b=nn.Sequential(m.mixed_6a, m.repeat_1),
        inception_c=nn.Sequential(m.mixed_7a, m.repeat_2, m.block8, m.conv2d_7b),
    )


def _demo_architecture() -> nn.Module:
    """A small ResNet for 28x28 digits: stem + four residual layers, about 0.3M parameters."""

    def down(cin: int, cout: int) -> BasicBlock:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        return BasicBlock(cin, cout, stride=2, downsample=shortcut)

    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)),
        layer1=BasicBlock(16, 16),
        layer2=down(16, 32),
        layer3=down(32, 64),
        layer4=down(64, 128),
    ))


@register_backbone("demo", family="demo", build=_demo_architecture, image_size=28, pretrained="digits 0-4, bundled",
                   weights_from="zoo:demo-digits04", mean=MNIST_MEAN, std=MNIST_STD)
def _split_children(m: nn.Module) -> OrderedDict:
    """The demo net is built as its named blocks already."""
    return OrderedDict(m.named_children())


# -----------------------------------------------------------------------------
# The model every run trains


POOLING_LAYERS = 2  # an "avg" head starts with global average pooling and a flatten


def build_head(in_shape: tuple[int, ...], num_classes: int, cfg: HeadConfig) -> nn.Sequential:
    """Pooling or flatten, optional hidden layers (Linear, ReLU, Dropout), then the classifier."""
    if cfg.pool not in ("avg", "flatten"):
        raise ValueError(f"Head pooling is 'avg' or 'flatten', not {cfg.pool!r}.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"Dropout must lie in [0, 1), not {cfg.dropout}.")
    if cfg.pool == "avg":
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # POOLING_LAYERS of them
        width = in_shape[0]
    else:
        layers, width = [nn.Flatten()], math.prod(in_shape)
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    if cfg.dropout and not cfg.hidden:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class FreezeLabNet(nn.Module):
    """resize -> normalise -> named backbone blocks -> head. Input: float images in [0, 1], shape (N, 3, H, W),
    of any size: they are resized to `image_size` first."""

    def __init__(self, backbone: str, blocks: OrderedDict, num_classes: int, image_size: int,
                 head: HeadConfig, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.image_size = image_size
        self.head_config = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.keep_eval: frozenset[str] = frozenset()  # module names the plan keeps in eval mode
        self.plan = None  # the FreezePlan last applied; None: everything trains (see set_plan)
        self.blocks = nn.ModuleDict(blocks)
        self.head = build_head(self.feature_shape(), num_classes, head)

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks)

    def features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run blocks[start:stop]; from block 0 the input is first resized to the model's image size (images
        are stored at their native size, so each batch is resized here, on the model's device) and
        normalised."""
        if start == 0:
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                                  align_corners=False)
            x = (x - self.mean) / self.std
        for block in list(self.blocks.values())[start:stop]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """An "avg" head's global average pooling alone: one vector per image, what a pooled cache holds."""
        return self.head[:POOLING_LAYERS](x)

    def classify(self, x: torch.Tensor, start: int = 0, pooled: bool = False) -> torch.Tensor:
        """Logits for images (`start` 0), for the output of blocks[:start], or for pooled vectors (`pooled`:
        the head goes on after its pooling)."""
        if pooled:
            return self.head[POOLING_LAYERS:](x)
        return self.head(self.features(x, start))

    def feature_shape(self, stop: int | None = None) -> tuple[int, ...]:
        """Shape of one image's features after blocks[:stop], probed without touching BN statistics."""
        was_training = self.training
        nn.Module.train(self, False)
        with torch.no_grad():
            x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.mean.device)
            shape = tuple(self.features(x, 0, stop).shape[1:])
        self.train(was_training)
        return shape

    def truncate(self, after: str) -> None:
        """Drop every block after `after` and rebuild the head to fit what is left."""
        if after not in self.blocks:
            raise ValueError(f"Cannot truncate after {after!r}: blocks are {self.block_names}.")
        keep = self.block_names[: self.block_names.index(after) + 1]
        if keep == self.block_names:
            return
        self.blocks = nn.ModuleDict((n, self.blocks[n]) for n in keep)
        device = self.mean.device
        self.head = build_head(self.feature_shape(), self.num_classes, self.head_config).to(device)

    def set_plan(self, plan, keep_eval: frozenset[str]) -> None:
        """Record the plan now applied (core.freezing.apply calls this) and the modules it keeps in eval
        mode, and put them in that mode now."""
        self.plan, self.keep_eval = plan, frozenset(keep_eval)
        self.train(self.training)

    def train(self, mode: bool = True) -> FreezeLabNet:
        super().train(mode)
        if mode:
            for name, module in self.named_modules():
                if name in self.keep_eval:
                    module.eval()
        return self


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """The model in eval mode for the duration (BatchNorm statistics fixed, dropout off), then back in the
    mode it was in, even when an error interrupts."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def build_model(cfg: ModelConfig, num_classes: int, image_size: int | None = None,
                progress: Progress | None = None, seed: int = 0) -> FreezeLabNet:
    """The backbone with the weights `cfg` names and a head for `num_classes`, initialised from `seed`."""
    from core.models import weights

    spec = get_spec(cfg.backbone)
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least two classes, not {num_classes}.")
    if (image_size or spec.image_size) < spec.min_size:
        raise ValueError(f"{spec.name} needs images of at least {spec.min_size} pixels a side, not "
                         f"{image_size or spec.image_size}; raise the image size on the Data page (or --image-size).")
    state, mean, std = weights.resolve(cfg.weights, spec, progress)  # may download: outside the RNG lock
    with rng.seeded(seed):
        raw = spec.build()
        net = FreezeLabNet(spec.name, spec.split(raw), num_classes, image_size or spec.image_size, cfg.head,
                           mean, std)
    if state is not None:
        weights.load_backbone(net, raw, state, source=cfg.weights)
    return net


@functools.cache
def block_names(name: str) -> tuple[str, ...]:
    """A backbone's block names, without loading any weights."""
    spec = get_spec(name)
    with rng.seeded(0):  # building initialises weights, which draws from torch's global RNG
        return tuple(spec.split(spec.build()))


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
