"""Backbone registry: torchvision models and the bundled demo net, each described by how it splits into named
blocks (the model every run trains around them, `FreezeLabNet`, lives in core.models.network).

The registry and the configs are plain data: listing backbones, reading or checking a stored config, and the
command line's help import no torch. Torch is imported where an architecture is built or split.

Registering a backbone takes one decorator on the function that splits its architecture into blocks:

    @register_torchvision("resnet18", "resnet50", family="resnet", blocks=("stem", "layer1", ...))
    def _split_resnet(m): ...

As in torchvision's registry, a name is registered once: a second registration is refused.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.runtime import rng
from core.runtime.words import quoted

if TYPE_CHECKING:
    from torch import nn

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
    # The block names `split` gives, declared (as timm's feature_info describes a model) so that reading and
    # checking a config needs no build; a test holds each to what `split` gives. Empty: found by building.
    blocks: tuple[str, ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    library_name: str = ""  # its name in torchvision or timm, where that differs ("torchvision:densenet121")

    @property
    def source_name(self) -> str:
        """The name torchvision's or timm's weights API knows it by."""
        return self.library_name or self.name


_REGISTRY: dict[str, BackboneSpec] = {}
LIBRARIES = ("torchvision", "timm")  # "torchvision:<name>", "timm:<name>": any model of theirs, split automatically


def list_backbones() -> list[str]:
    """The registered backbones (each with a splitter written for it); any_model_names() lists the rest."""
    return list(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    library = name.split(":", 1)[0] if ":" in name else ""
    if library in LIBRARIES:
        return _named_spec(name)
    if library == "own":  # registered by core.models.own where the operator named it; anywhere else: refused
        raise ValueError(f"No model {quoted(name)} here: your own networks are named by the operator (freezelab train "
                         "--model-file F:f, or freezelab app --model-file F:f), never by a link or a browser.")
    raise ValueError(f"Unknown backbone {quoted(name)}; choose one of {', '.join(_REGISTRY)}, or any model as "
                     "torchvision:<name> or timm:<name> (`freezelab backbones --all` lists them).")


def known(name: str) -> bool:
    """Whether `name` is a backbone: registered, or a model torchvision or timm names (imports that library).
    get_spec says why any other name is not one in a ValueError, whatever the library raised."""
    try:
        get_spec(name)
    except ValueError:
        return False
    return True


@functools.cache
def parameter_count(name: str) -> int:
    """How many parameters backbone `name` has, without allocating them: torchvision's weights say it; any other
    is built on PyTorch's meta device (shapes, no storage: ViT-H/14 in a second, no memory)."""
    spec = get_spec(name)
    if spec.weights_from == "torchvision" and name.startswith("torchvision:"):
        import torchvision

        meta = torchvision.models.get_model_weights(spec.source_name).DEFAULT.meta
        if "num_params" in meta:
            return int(meta["num_params"])
    import torch

    try:
        with torch.device("meta"):
            return sum(p.numel() for p in spec.build().parameters())
    except Exception:  # a model whose building needs real tensors: counted built (finding its blocks builds it too)
        return sum(p.numel() for p in spec.build().parameters())


def any_model_names(library: str) -> list[str]:
    """Every classification model `library` names, as "library:name" (torchvision's ~80; timm's ~1,000 when
    it is installed, else none). Imports the library."""
    if library == "torchvision":
        import torchvision

        return [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    if library == "timm" and TIMM_AVAILABLE:
        import timm

        return [f"timm:{n}" for n in timm.list_models()]
    return []


def _auto_split(model: nn.Module, size: int, name: str, by_feature_info: bool = False) -> OrderedDict:
    """Blocks found automatically; timm's models cut after the modules their feature_info names as stage ends."""
    from core.models.auto_split import split  # torch is imported when a model is split

    ends = [entry["module"] for entry in getattr(model, "feature_info", None) or []][:-1] if by_feature_info else []
    return split(model, size, name, after=ends or None)


@functools.cache
def _named_spec(name: str) -> BackboneSpec:
    """The spec of "torchvision:<name>" or "timm:<name>": the registered one where a splitter was written for it,
    else one whose blocks are found automatically (core.models.auto_split); its normalisation, minimum size and
    input size from the library's own description of its weights."""
    library, model = name.split(":", 1)
    if model in _REGISTRY and _REGISTRY[model].weights_from == library:
        return _REGISTRY[model]
    if library == "torchvision":
        import torchvision

        if model not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"torchvision has no classification model {quoted(model)} "
                             "(torchvision.models.list_models() names them).")
        weights = torchvision.models.get_model_weights(model).DEFAULT
        min_size = max(weights.meta.get("min_size", (8, 8)))
        transforms = weights.transforms()
        probe = max(min_size, 32)
        return BackboneSpec(name=name, family="torchvision (blocks found)", library_name=model,
                            build=functools.partial(_torchvision_build, model),
                            split=functools.partial(_auto_split, size=probe, name=name),
                            image_size=max(64, min_size), min_size=max(min_size, 8),
                            pretrained=f"{weights.name} (torchvision)", weights_from="torchvision",
                            mean=tuple(transforms.mean), std=tuple(transforms.std))
    if not TIMM_AVAILABLE:
        raise ValueError(f"{name} needs timm, an optional install: pip install 'freezelab[timm]'.")
    import timm

    if not timm.is_model(model.split(".", 1)[0]):  # "arch.tag" names one of its pretrained weights
        raise ValueError(f"timm has no model {quoted(model)} (timm.list_models() names them).")
    try:
        cfg = timm.models.get_pretrained_cfg(model)
    except RuntimeError as err:  # timm's word for a tag its architecture has no weights for ("resnet18.nosuch")
        raise ValueError(f"timm has no weights {quoted(model)}: {err}") from None
    input_size = (cfg.input_size if cfg else None) or (3, 224, 224)
    fixed = bool(cfg and cfg.fixed_input_size)
    min_size = input_size[-1] if fixed else 32
    return BackboneSpec(name=name, family="timm (blocks from feature_info)", library_name=model,
                        build=functools.partial(_timm_build, model),
                        split=functools.partial(_auto_split, size=max(min_size, 32), name=name, by_feature_info=True),
                        image_size=input_size[-1] if fixed else 64, min_size=min_size,
                        pretrained="ImageNet (timm, Hugging Face hub)", weights_from="timm",
                        mean=tuple(cfg.mean) if cfg else IMAGENET_MEAN, std=tuple(cfg.std) if cfg else IMAGENET_STD)


def _timm_build(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)



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


def _torchvision_build(name: str) -> nn.Module:
    import torchvision  # imported when a model is built: the registry itself is torch-free

    # A ViT's position embedding is sized for its input: built for the size its default weights were trained at,
    # as torchvision's builder does when it loads them (ViT-H/14's are 518 px; without weights it builds 224).
    weights = torchvision.models.get_model_weights(name).DEFAULT
    sized = {"image_size": weights.meta["min_size"][0]} if name.startswith("vit_") else {}
    return torchvision.models.get_model(name, weights=None, **sized)


def register_torchvision(*names: str, family: str, blocks: tuple[str, ...], image_size: int = 64, min_size: int = 8):
    """Register torchvision models that share one block splitter; "pretrained" is their ImageNet weights."""

    def deco(split: Callable[[nn.Module], OrderedDict]):
        for name in names:
            register_backbone(name, family=family, image_size=image_size, min_size=min_size, blocks=blocks,
                              pretrained="ImageNet-1k (torchvision)",
                              build=functools.partial(_torchvision_build, name))(split)
        return split

    return deco


TIMM_AVAILABLE = importlib.util.find_spec("timm") is not None  # timm is an optional install (the timm extra)


def register_timm(*names: str, family: str, blocks: tuple[str, ...], image_size: int, min_size: int):
    """Register timm models that share one block splitter, when timm is installed (else they are not
    listed); "pretrained" is timm's default ImageNet weights, from the Hugging Face hub."""

    def build(name: str) -> nn.Module:
        import timm  # imported when a model is built: importing timm takes seconds

        return timm.create_model(name, pretrained=False)

    def deco(split: Callable[[nn.Module], OrderedDict]):
        if TIMM_AVAILABLE:
            for name in names:
                register_backbone(name, family=family, image_size=image_size, min_size=min_size, blocks=blocks,
                                  pretrained="ImageNet-1k (timm, Hugging Face hub)", weights_from="timm",
                                  build=functools.partial(build, name))(split)
        return split

    return deco


# -----------------------------------------------------------------------------
# Block splitters


@register_torchvision("resnet18", "resnet34", "resnet50", family="resnet",
                      blocks=("stem", "layer1", "layer2", "layer3", "layer4"))
def _split_resnet(m: nn.Module) -> OrderedDict:
    from torch import nn

    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return OrderedDict(stem=stem, layer1=m.layer1, layer2=m.layer2, layer3=m.layer3, layer4=m.layer4)


@register_torchvision("vgg11", "vgg16", "vgg16_bn", family="vgg", min_size=32,  # five halvings to 1x1
                      blocks=("block1", "block2", "block3", "block4", "block5"))
def _split_vgg(m: nn.Module) -> OrderedDict:
    """block1..block5, each ending at its max-pool, as Keras names VGG's blocks."""
    from torch import nn

    blocks, current = OrderedDict(), []
    for layer in m.features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks[f"block{len(blocks) + 1}"] = nn.Sequential(*current)
            current = []
    return blocks


@register_torchvision("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                      family="mobile", blocks=("stem", "stage1", "stage2", "stage3", "stage4"))
def _split_by_resolution(m: nn.Module) -> OrderedDict:
    """Group `features` into stages: a new stage starts wherever the resolution halves."""
    import torch
    from torch import nn

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


@register_timm("inception_resnet_v2", family="inception", image_size=75, min_size=75,
               blocks=("stem", "inception_a", "inception_b", "inception_c"))
def _split_inception_resnet(m: nn.Module) -> OrderedDict:
    """The stem, then the three Inception-ResNet stages (A: 35x35 blocks, B: 17x17, C: 8x8 at 299 px),
    each with the reduction block that leads into it; Keras' InceptionResNetV2 accepts 75 px and up."""
    from torch import nn

    return OrderedDict(
        stem=nn.Sequential(m.conv2d_1a, m.conv2d_2a, m.conv2d_2b, m.maxpool_3a, m.conv2d_3b, m.conv2d_4a,
                           m.maxpool_5a),
        inception_a=nn.Sequential(m.mixed_5b, m.repeat),
        inception_b=nn.Sequential(m.mixed_6a, m.repeat_1),
        inception_c=nn.Sequential(m.mixed_7a, m.repeat_2, m.block8, m.conv2d_7b),
    )


def _demo_architecture() -> nn.Module:
    from core.models.demo_net import demo_architecture  # torch is imported when the net is built

    return demo_architecture()


@register_backbone("demo", family="demo", build=_demo_architecture, image_size=28, pretrained="digits 0-4, bundled",
                   weights_from="zoo:demo-digits04", mean=MNIST_MEAN, std=MNIST_STD,
                   blocks=("stem", "layer1", "layer2", "layer3", "layer4"))
def _split_children(m: nn.Module) -> OrderedDict:
    """The demo net is built as its named blocks already."""
    return OrderedDict(m.named_children())


@functools.cache
def block_names(name: str) -> tuple[str, ...]:
    """A backbone's block names: as registered, else found by building it (without weights)."""
    spec = get_spec(name)
    if spec.blocks:
        return spec.blocks
    with rng.seeded(0):  # building initialises weights, which draws from torch's global RNG
        return tuple(spec.split(spec.build()))
