"""The user's setup as one value (data, backbone and weights, freeze plan): described in words, and carried in
a URL's query parameters so that one link opens the same setup in every browser.

    params = to_query(setup)                 # only what differs from the defaults: a fresh start is a bare URL
    setup, problems = from_query(params)     # a bad value is left out and said in words; the rest applies

A link can also carry a whole comparison (`comparison=`: every run's config, compressed), so "open the link,
press Run" trains the teacher's runs again, and a lesson step (`step=`).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from core.data.datasets import DEMO_TASKS, DataConfig, task_words
from core.freezing import FreezePlan, recipes_for
from core.models import bounds
from core.models.backbones import ModelConfig
from core.runtime import shares
from core.runtime.words import quoted
from core.training import rules
from core.training.config import ConfigInvalid, RunConfig, config_from_plain, validate_new_run

# What the Data page offers (with the backbone's own sizes: `image_sizes`): a link may set only these (a value
# the page cannot show would break it).
IMAGE_SIZES = (28, 32, 48, 64, 96, 128, 160, 224)
PER_CLASS_CHOICES = (5, 10, 20, 50, 100, 200, 500, 1000)
QUERY_KEYS = ("data", "path", "task", "size", "per_class", "backbone", "weights", "preset", "train", "bn")


@dataclass(frozen=True)
class Setup:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    plan: FreezePlan = field(default_factory=FreezePlan.freeze)


def image_sizes(backbone: str) -> list[int]:
    """The image sizes offered with `backbone`: the usual ones, and the backbone's own size and smallest side,
    so one that needs more than 224 px (Swin V2: 256, ViT-H/14: 518) can be given what it needs."""
    try:
        spec = rules.backbone_spec(backbone)
    except ConfigInvalid:  # a backbone that cannot be described (the Layers page says why): the usual sizes
        return list(IMAGE_SIZES)
    needs = [spec.min_size] if spec.min_size > max(IMAGE_SIZES) else []  # else a usual size fits it already
    return sorted({*IMAGE_SIZES, spec.image_size, *needs})


def check_browser_may_build(backbone: str) -> None:
    """Before anything of it is built: ConfigInvalid when `backbone` names no model here (rules.backbone_spec: an
    own network the operator did not register, a library name that is not a classification model), NotShared when
    a browser names, from a library's whole list (torchvision:…, timm:…), a model larger than the operator allows
    (shares.max_model_params); the registered backbones and the operator's own are allowed."""
    rules.backbone_spec(backbone)
    bounds.check_model_size(backbone)


def describe(setup: Setup) -> dict[str, str]:
    """The setup in a few words per part, for the sidebar and the start page."""
    data, model, plan = setup.data, setup.model, setup.plan
    task = task_words(data.task) if data.task in DEMO_TASKS else data.task
    source = {"demo": f"offline demo ({task})", "cifar10": "CIFAR-10"}.get(data.source, f"folder {data.path}")
    trainable = ", ".join(plan.trainable) or "none (feature extraction)"
    if plan.last_layers:
        trainable = f"the last {plan.last_layers} layers"
    return {
        "Data": f"{source}; {data.per_class or 'all'} per class, {data.image_size} px",
        "Backbone": model.backbone + (f", cut after {plan.truncate_after}" if plan.truncate_after else ""),
        "Weights": model.weights,
        "Trainable": trainable,
        "BatchNorm": plan.bn,
    }


def to_query(setup: Setup) -> dict[str, str]:
    """Query parameters for what differs from a fresh start; `from_query` reads them back to `setup` (the
    head, learning-rate multipliers and truncation are left to the Layers page)."""
    plain = _every_key(Setup())
    return {k: v for k, v in _every_key(setup).items() if v != plain[k]}


def _every_key(setup: Setup) -> dict[str, str]:
    data, model = setup.data, setup.model
    return {"data": data.source, "path": data.path, "task": data.task, "size": str(data.image_size),
            "per_class": str(data.per_class or "all"), "backbone": model.backbone, "weights": model.weights,
            "train": ",".join(setup.plan.trainable), "bn": setup.plan.bn}


_REFUSED = object()  # what `from_query` makes of a value it did not use


def _clause(sentence: str) -> str:
    """A rule's sentence after a colon: its first letter lower-cased, unless the word is a name (BatchNorm)."""
    return sentence[:1].lower() + sentence[1:] if sentence[1:2].islower() else sentence


def from_query(params: Mapping[str, str], base: Setup | None = None) -> tuple[Setup, list[str]]:
    """The setup a link encodes, on top of `base` (a fresh start by default), and what in it could not be used,
    in words: each value is read by the rule every other door uses (core/training/rules.py), then held to what
    a browser may reach (the operator's shares) and what the pages offer. Keys this module does not know are
    ignored (other tools add their own)."""
    setup, problems = base or Setup(), []
    data, model, plan = setup.data, setup.model, setup.plan

    def read(key: str, rule):
        """The link's value for `key` as `rule` reads it; _REFUSED, the reason said, when absent or refused."""
        if key not in params:
            return _REFUSED
        try:
            return rule(params[key])
        except (ConfigInvalid, shares.NotShared) as err:
            problems.append(f"The link's {key}={quoted(params[key])} was not used: {_clause(str(err))}")
            return _REFUSED

    def one_of(allowed, what: str, unit: str = ""):
        def rule(value):
            if value not in allowed:
                raise ConfigInvalid(f"{what} are {', '.join(map(str, allowed))}{unit}.")
            return value
        return rule

    def folder(path: str) -> str:  # a link comes from a browser: it may name only a folder the operator shares
        shares.check_readable(rules.path(path, "The image folder"))
        return path

    def per_class(text: str) -> int | None:
        if text == "all":
            return None
        return one_of(PER_CLASS_CHOICES, "The images per class offered (or all)")(
            rules.whole_number(text, "Images per class"))

    def backbone(name: str) -> str:  # before anything of it is built: the operator's limit on a browser's model
        check_browser_may_build(rules.backbone_name(name))
        rules.blocks_of(name)  # blocks that can be found: the pages split it
        return name

    def weights(text: str) -> str:
        shares.check_weights(rules.weights(text))
        return text

    def size(text: str) -> int:  # after the backbone: its own sizes are offered too
        sizes = image_sizes(model.backbone)
        return one_of(sizes, f"The image sizes offered with {model.backbone}", " pixels")(
            rules.whole_number(text, "The image size"))

    if (value := read("data", rules.source)) is not _REFUSED:
        data = replace(data, source=value)
    if (value := read("path", folder)) is not _REFUSED:
        data = replace(data, path=value)
    if (value := read("task", rules.task)) is not _REFUSED:
        data = replace(data, task=value)
    if (value := read("per_class", per_class)) is not _REFUSED:
        data = replace(data, per_class=value)
    if (value := read("backbone", backbone)) is not _REFUSED:
        model = replace(model, backbone=value)
        plan = FreezePlan.freeze(bn=plan.bn)  # the base plan's blocks belong to the other backbone
    if (value := read("weights", weights)) is not _REFUSED:
        model = replace(model, weights=value)
    if (value := read("size", size)) is not _REFUSED:
        data = replace(data, image_size=value)
    recipes = recipes_for(rules.blocks_of(model.backbone))
    if (value := read("preset", one_of(tuple(recipes), "The presets"))) is not _REFUSED:
        plan = replace(recipes[value].phases[0].plan, bn=plan.bn)
    if (value := read("train", lambda text: rules.trainable(text, model.backbone))) is not _REFUSED:
        plan = replace(plan, trainable=value, last_layers=None)  # explicit blocks win over a preset
    if (value := read("bn", rules.bn_policy)) is not _REFUSED:
        plan = replace(plan, bn=value)
    return Setup(data, model, plan), problems


# -----------------------------------------------------------------------------
# A comparison in a link

COMPARISON_KEY = "comparison"
MAX_SHARED_RUNS = 12  # runs one link may carry
MAX_COMPARISON_CHARS = 16_000  # of the encoded value: browsers and servers keep URLs to a few tens of KB
MAX_COMPARISON_BYTES = 1 << 20  # of the JSON it expands to: a small link cannot unpack into gigabytes


def comparison_to_query(configs: list[RunConfig]) -> str:
    """The runs' configs as one URL-safe value (JSON, compressed, base64)."""
    text = json.dumps([asdict(c) for c in configs], sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(zlib.compress(text.encode(), 9)).decode().rstrip("=")


def comparison_from_query(value: str) -> tuple[list[RunConfig], list[str]]:
    """The configs a link's comparison carries, each checked whole as any new run is (validate_new_run: types,
    keys, every value's rule and bound, a model this server has) and naming only what this server shares; ([],
    [why]) when the value is not one: nothing of it is offered, and nothing raises."""
    def refused(why: str) -> tuple[list[RunConfig], list[str]]:
        return [], [f"The link's comparison was not used: {why.rstrip('.')}."]

    if len(value) > MAX_COMPARISON_CHARS:
        return refused(f"it is longer than {MAX_COMPARISON_CHARS:,} characters")
    try:
        packed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        unpacker = zlib.decompressobj()
        text = unpacker.decompress(packed, MAX_COMPARISON_BYTES)
        if unpacker.unconsumed_tail:
            return refused(f"it unpacks to more than {MAX_COMPARISON_BYTES:,} bytes")
        plain = json.loads(text)
    except (binascii.Error, zlib.error, ValueError, RecursionError):
        return refused("it is not a comparison FreezeLab wrote (the link may have been cut short)")
    if not isinstance(plain, list) or not 1 <= len(plain) <= MAX_SHARED_RUNS:
        return refused(f"a comparison holds 1 to {MAX_SHARED_RUNS} runs")
    configs = []
    for i, run in enumerate(plain):
        try:
            cfg = config_from_plain(run)
            rules.backbone_spec(cfg.model.backbone)  # a model this server has, before its size is counted
            bounds.check_choices(shares.ANY_BROWSER, cfg.data, cfg.model)  # before anything named is looked at
            validate_new_run(cfg)  # the check every new run passes, from any door
        except (ConfigInvalid, shares.NotShared) as err:
            return refused(f"run {i + 1}: {err}")
        configs.append(cfg)
    return configs, []
