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

from core.data.datasets import DEMO_TASKS, SOURCES, DataConfig, task_words
from core.freezing import BN_POLICIES, FreezePlan, presets
from core.models.backbones import LIBRARIES, ModelConfig, block_names, get_spec, known, list_backbones, parameter_count
from core.runtime import shares
from core.training.config import ConfigInvalid, RunConfig, config_from_plain

# What the Data page offers (with the backbone's own sizes: `image_sizes`): a link may set only these (a value
# the page cannot show would break it).
IMAGE_SIZES = (28, 32, 48, 64, 96, 128, 160, 224)
PER_CLASS_CHOICES = (5, 10, 20, 50, 100, 200, 500, 1000)
MAX_PATH_CHARS, MAX_NAME_CHARS = 4095, 255  # Linux's PATH_MAX and NAME_MAX: longer cannot name a folder
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
        spec = get_spec(backbone)
    except ValueError:  # a backbone that cannot be described (the Layers page says why): the usual sizes
        return list(IMAGE_SIZES)
    needs = [spec.min_size] if spec.min_size > max(IMAGE_SIZES) else []  # else a usual size fits it already
    return sorted({*IMAGE_SIZES, spec.image_size, *needs})


def check_browser_may_build(backbone: str) -> None:
    """NotShared when a browser names, from a library's whole list (torchvision:…, timm:…), a model larger than
    the operator allows (shares.max_model_params); the registered backbones and the operator's own are allowed."""
    if backbone.split(":", 1)[0] in LIBRARIES:
        shares.check_model_size(backbone, parameter_count(backbone))


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


def from_query(params: Mapping[str, str], base: Setup | None = None) -> tuple[Setup, list[str]]:
    """The setup a link encodes, on top of `base` (a fresh start by default), and what in it could not be used,
    in words. Keys this module does not know are ignored (other tools add their own)."""
    setup, problems = base or Setup(), []
    data, model, plan = setup.data, setup.model, setup.plan

    def bad(key: str, why: str) -> None:
        value = params[key] if len(params[key]) <= 60 else params[key][:57] + "…"
        problems.append(f"The link's {key}={value!r} was not used: {why}.")

    def pick(key: str, allowed, what: str) -> str | None:
        """The link's value for `key` when it is one of `allowed`; None when absent or (said) not allowed."""
        if key in params and params[key] not in allowed:
            bad(key, f"{what} are {', '.join(allowed)}")
        return params[key] if key in params and params[key] in allowed else None

    if source := pick("data", SOURCES, "the sources"):
        data = replace(data, source=source)
    if "path" in params:
        path = params["path"]
        if len(path) > MAX_PATH_CHARS or any(len(part) > MAX_NAME_CHARS for part in path.split("/")) or "\0" in path:
            bad("path", f"a folder's path is at most {MAX_PATH_CHARS} characters, {MAX_NAME_CHARS} per name")
        else:
            try:  # a link comes from a browser: it may name only a folder the operator shares
                shares.check_readable(path)
                data = replace(data, path=path)
            except shares.NotShared as err:
                problems.append(f"The link's folder was not used. {err}")
    if task := pick("task", DEMO_TASKS, "the demo's tasks"):
        data = replace(data, task=task)
    if "per_class" in params:
        count = None if params["per_class"] == "all" else _whole(params["per_class"])
        if params["per_class"] == "all" or count in PER_CLASS_CHOICES:
            data = replace(data, per_class=count)
        else:
            bad("per_class", f"images per class are {', '.join(map(str, PER_CLASS_CHOICES))} or all")
    named = params.get("backbone", "")  # any torchvision or timm model, checked (a registered name needs no import)
    offered = [*list_backbones(), *([named] if ":" in named and len(named) < MAX_NAME_CHARS and known(named) else [])]
    if backbone := pick("backbone", offered, "the backbones"):
        try:
            check_browser_may_build(backbone)
            model = replace(model, backbone=backbone)
            plan = FreezePlan.freeze(bn=plan.bn)  # the base plan's blocks belong to the other backbone
        except shares.NotShared as err:
            problems.append(f"The link's backbone was not used. {err}")
    if "weights" in params:
        weights = params["weights"]
        if weights.startswith("file:") and len(weights) > MAX_PATH_CHARS:
            bad("weights", f"a file's path is at most {MAX_PATH_CHARS} characters")
        elif weights in ("pretrained", "none") or weights.startswith(("zoo:", "file:")):
            try:
                shares.check_weights(weights)
                model = replace(model, weights=weights)
            except shares.NotShared as err:
                problems.append(f"The link's weights were not used. {err}")
        else:
            bad("weights", "weights are pretrained, none, zoo:<name> or file:<path>")
    if "size" in params:  # after the backbone: its own sizes are offered too
        size, offered_sizes = _whole(params["size"]), image_sizes(model.backbone)
        if size in offered_sizes:
            data = replace(data, image_size=size)
        else:
            bad("size", f"the image sizes offered with {model.backbone} are {', '.join(map(str, offered_sizes))} "
                "pixels")
    blocks = block_names(model.backbone)
    recipes = presets(blocks)
    if preset := pick("preset", recipes, "the presets"):
        plan = replace(recipes[preset].phases[0].plan, bn=plan.bn)
    if "train" in params:  # explicit blocks win over a preset
        asked = [b for b in params["train"].split(",") if b]
        unknown = [b for b in asked if b not in blocks]
        if unknown:
            bad("train", f"{model.backbone} has no block {', '.join(unknown)} (its blocks: {', '.join(blocks)})")
        else:
            plan = replace(plan, trainable=tuple(b for b in blocks if b in asked), last_layers=None)
    if bn := pick("bn", BN_POLICIES, "the BatchNorm policies"):
        plan = replace(plan, bn=bn)
    return Setup(data, model, plan), problems


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


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
    """The configs a link's comparison carries, each checked whole as any config is (types, keys, ranges) and
    naming only what this server shares; ([], [why]) when the value is not one."""
    def refused(why: str) -> tuple[list[RunConfig], list[str]]:
        return [], [f"The link's comparison was not used: {why}."]

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
            if cfg.data.source == "folder":
                shares.check_readable(cfg.data.path)
            shares.check_weights(cfg.model.weights)
            check_browser_may_build(cfg.model.backbone)
        except (ConfigInvalid, shares.NotShared) as err:
            return refused(f"run {i + 1}: {err}")
        configs.append(cfg)
    return configs, []
