"""Every rule on a run's settings, each written once with the one sentence that refuses a value. The Train and
Layers pages, a link (core/links.py), JSON (`train --config`, the run store's configs) and the command line all
check through here, so a value one door refuses no other door lets in.

    rules.bn_policy("stats")             # a setting a person typed: parsed and checked, ConfigInvalid otherwise
    rules.head_widths("128, 64")         # -> (128, 64)
    rules.image_size(None, "resnet18")   # -> 64: without a size, the backbone's own

Two kinds of rule. What makes a value meaningless (a negative epoch count, a policy there is none of) holds for
every config, stored or new. What bounds a new run's cost on this server (MAX_EPOCHS, MAX_IMAGE_SIZE, ...) holds
for what is asked now, `bounded`: a run stored before keeps reading. core.training.config applies them to a whole
RunConfig (validate_config, validate_new_run).

A rule that belongs to a lower floor stays there and raises ValueError: a plan's (core.freezing.check_plan, the
one check of a BatchNorm policy), a backbone's name (core.models.backbones.get_spec). Here it becomes ConfigInvalid,
the one type every door catches. The loader's bounds on image sizes are its constants (core.data.datasets), read
here.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from core import freezing
from core.data.datasets import (
    DEMO_TASKS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    SOURCES,
    DataConfig,
    DataUnavailable,
    list_classes,
)
from core.freezing import FreezePlan
from core.models import backbones, zoo
from core.models.backbones import BackboneSpec, HeadConfig
from core.runtime.words import listed, quoted


class ConfigInvalid(ValueError):
    """A run's setting of the wrong type, a key no config has, or a value out of range, said in one sentence that
    names the setting (e.g. `optim.lr`)."""


@contextlib.contextmanager
def _said(prefix: str = "") -> Iterator[None]:
    """A lower floor's refusal (ValueError) as ConfigInvalid, its sentence after `prefix` ("Phase 2: ")."""
    try:
        yield
    except ConfigInvalid:
        raise
    except ValueError as err:  # DataUnavailable is not one: data_here turns it
        raise ConfigInvalid(f"{prefix}{err}") from None


OPTIMIZERS = ("adam", "adamw", "sgd")  # the one list: make_optimizer, the CLI and the Train page read it
HEAD_POOLS = ("avg", "flatten")  # global average pooling, or Keras' Flatten()
MAX_EPOCHS = 500  # a new run's whole length: the Train form's bound, so one link cannot hold a shared trainer
MAX_BATCH_SIZE = 4096
MAX_SEED = 2**32 - 1  # what every seeded generator takes (numpy's legacy one the least); the form offers 10,000
MAX_HIDDEN_LAYERS, MAX_HEAD_WIDTH = 8, 8192  # VGG's classifier is two of 4096
MAX_PATH_CHARS = 4095  # Linux's PATH_MAX (its NAME_MAX, per name: zoo.MAX_NAME_CHARS): longer names no file
PATH_SHOWN = 200  # a path in a refusal: longer than other values, as paths legitimately are
MAX_BACKBONE_CHARS = 120  # the longest library name (timm's, with a weights tag) is about 70
_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only: int() also takes "٣" and full-width digits, a reader would not


def whole_number(text: str, what: str) -> int:
    """A whole number written in ASCII digits ("32"); ConfigInvalid for anything else, other scripts' digits and
    superscripts included."""
    if not _DIGITS.fullmatch(text):
        raise ConfigInvalid(f"{what} is a whole number, not {quoted(text)}.")
    return int(text)


# -----------------------------------------------------------------------------
# The run: its length, seed, optimiser


def epochs(n: int, what: str = "A run", bounded: bool = True) -> int:
    """A length in epochs: 1 or more, and `bounded`, at most MAX_EPOCHS."""
    if n < 1 or (bounded and n > MAX_EPOCHS):
        most = f" to {MAX_EPOCHS}" if bounded else " or more"
        raise ConfigInvalid(f"{what} lasts 1{most} epochs, not {quoted(n)}.")
    return n


def seed(n: int, what: str = "seed", bounded: bool = True) -> int:
    if n < 0 or (bounded and n > MAX_SEED):
        raise ConfigInvalid(f"Seeds are whole numbers from 0{f' to {MAX_SEED:,}' if bounded else ''}; {what} is "
                            f"{quoted(n)}.")
    return n


def optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        raise ConfigInvalid(f"optim.name is one of {', '.join(OPTIMIZERS)}, not {quoted(name)}.")
    return name


def learning_rate(x: float, what: str = "The learning rate") -> float:
    if not (x > 0 and math.isfinite(x)):
        raise ConfigInvalid(f"{what} must be a positive number, not {quoted(x)}.")
    return x


def batch_size(n: int, bounded: bool = True) -> int:
    if n < 1 or (bounded and n > MAX_BATCH_SIZE):
        raise ConfigInvalid(f"The batch size is 1{f' to {MAX_BATCH_SIZE:,}' if bounded else ' or more'}, not "
                            f"{quoted(n)}.")
    return n


# -----------------------------------------------------------------------------
# The data


def source(name: str) -> str:
    if name not in SOURCES:
        raise ConfigInvalid(f"The data source is one of {', '.join(SOURCES)}, not {quoted(name)}.")
    return name


def task(name: str) -> str:
    """One of the demo's tasks."""
    if name not in DEMO_TASKS:
        raise ConfigInvalid(f"The demo's task is one of {', '.join(DEMO_TASKS)}, not {quoted(name)}.")
    return name


def path(text: str, what: str) -> str:
    """A path a file or folder can have: given, at most MAX_PATH_CHARS, no NUL."""
    if not text:
        raise ConfigInvalid(f"{what} is missing: give its path.")
    longest = max(len(part.encode(errors="replace")) for part in text.split("/"))
    if len(text) > MAX_PATH_CHARS or longest > zoo.MAX_NAME_CHARS or "\0" in text:
        raise ConfigInvalid(f"{what}'s path is at most {MAX_PATH_CHARS} characters, {zoo.MAX_NAME_CHARS} bytes per "
                            f"name, not {quoted(text, PATH_SHOWN)}.")
    return text


def image_size(n: int | None, backbone: str | None = None, bounded: bool = True) -> int:
    """The side in pixels a run's images take: `n`, from MIN_IMAGE_SIZE to MAX_IMAGE_SIZE (what the loader
    accepts; `bounded`) and, given the backbone, at least its smallest input; without `n`, the backbone's own
    size (its registry's: 28 px for the demo net, 64 for torchvision's)."""
    spec = backbone_spec(backbone) if backbone else None
    if n is None:
        return spec.image_size if spec else DataConfig().image_size
    if n < MIN_IMAGE_SIZE or (bounded and n > MAX_IMAGE_SIZE):
        most = f" to {MAX_IMAGE_SIZE}" if bounded else " or more"
        raise ConfigInvalid(f"The image size is {MIN_IMAGE_SIZE}{most} pixels a side, not {quoted(n)}.")
    if spec and n < spec.min_size:
        raise ConfigInvalid(f"{backbone} needs images of at least {spec.min_size} pixels a side, not {n}.")
    return n


def per_class(n: int | None, what: str = "data.per_class") -> int | None:
    """Images per class: 1 or more, or None for all."""
    if n is not None and n < 1:
        raise ConfigInvalid(f"{what} is 1 or more (or null for all), not {quoted(n)}.")
    return n


def data(cfg: DataConfig, bounded: bool = True) -> DataConfig:
    """Every rule on a DataConfig's values (what the files hold is data_here's)."""
    source(cfg.source)
    if cfg.source == "demo":
        task(cfg.task)
    if cfg.source == "folder":
        path(cfg.path, "The image folder")
    image_size(cfg.image_size, bounded=bounded)
    per_class(cfg.per_class)
    per_class(cfg.val_per_class, "data.val_per_class")
    if not 0 < cfg.val_fraction < 1:
        raise ConfigInvalid(f"data.val_fraction must be between 0 and 1, not {quoted(cfg.val_fraction)}.")
    if cfg.crop_pad < 0 or (bounded and cfg.crop_pad > cfg.image_size):
        raise ConfigInvalid(f"data.crop_pad is 0 to the image size ({cfg.image_size}), not {quoted(cfg.crop_pad)}.")
    seed(cfg.seed, "data.seed", bounded)
    return cfg


def data_here(cfg: DataConfig) -> None:
    """What a run's data needs on this machine before a run is made of it: a folder source's folder, with two
    classes of images (a browser's folder is checked against the operator's shares first, by its door)."""
    try:
        list_classes(cfg)
    except DataUnavailable as err:
        raise ConfigInvalid(str(err)) from None


# -----------------------------------------------------------------------------
# The model: backbone, weights, head


def backbone_spec(name: str) -> BackboneSpec:
    """The backbone `name` names here: registered, the operator's own (own:…, registered by --model-file), or a
    classification model torchvision or timm has (imports that library); ConfigInvalid otherwise."""
    backbone_name(name)
    with _said():
        return backbones.get_spec(name)


def backbone_name(name: str) -> str:
    """A backbone's name as any config may carry it (whether this machine has it is backbone_spec's)."""
    if not name or len(name) > MAX_BACKBONE_CHARS:
        raise ConfigInvalid(f"A backbone's name is 1 to {MAX_BACKBONE_CHARS} characters, not {quoted(name)}.")
    return name


def blocks_of(backbone: str) -> tuple[str, ...]:
    """The backbone's blocks (a library's model is built once to find them); ConfigInvalid, saying why, when
    they cannot be found."""
    backbone_spec(backbone)
    with _said():
        return backbones.block_names(backbone)


def weights(text: str) -> str:
    """pretrained, none, zoo:<entry> or file:<path>, as any config may carry them (whether they are here is
    weights_here's)."""
    if text in ("pretrained", "none") or (text.startswith("zoo:") and zoo.plain_name(text[4:])):
        return text
    if text.startswith("file:"):
        path(text[5:], "The weights file")
        return text
    raise ConfigInvalid(f"Weights are pretrained, none, zoo:<name> or file:<path>, not {quoted(text)}.")


def weights_here(text: str) -> None:
    """What weights need on this machine before a run is made of them: a zoo entry that is here, a file that is
    one PyTorch wrote (told from its first bytes, nothing loaded). A browser's file is checked against the
    operator's shares first, by its door."""
    weights(text)
    if text.startswith("zoo:") and zoo.entry_dir(text[4:]) is None:
        raise ConfigInvalid(f"The model zoo has no entry {quoted(text[4:])}: `freezelab pretrain` makes one.")
    if text.startswith("file:"):
        from core.models.weights import TORCH_SAVE_HEADS  # torch: only where a file is named

        file = Path(text[5:]).expanduser()
        try:
            with open(file, "rb") as f:
                head = f.read(4)
        except OSError as err:
            raise ConfigInvalid(f"No weights file at {quoted(str(file), PATH_SHOWN)} ({err.strerror}).") from None
        if not head.startswith(TORCH_SAVE_HEADS):
            raise ConfigInvalid(f"{quoted(str(file), PATH_SHOWN)} is not a weights file: PyTorch's torch.save "
                                "writes a zip or a pickle, and this is neither.")


def head_widths(text: str) -> tuple[int, ...]:
    """The hidden layers' widths a comma-separated list gives ("128, 64"; "" for none): the one parser, for the
    Layers page and the command line's --head-hidden."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(_DIGITS.fullmatch(p) and int(p) > 0 for p in parts):
        raise ConfigInvalid(f"Hidden layers must be positive whole numbers separated by commas (128, 64), not "
                            f"{quoted(text)}.")
    return hidden_layers(tuple(int(p) for p in parts))


def hidden_layers(widths: tuple[int, ...], bounded: bool = True) -> tuple[int, ...]:
    if not all(w >= 1 for w in widths):
        raise ConfigInvalid(f"Hidden layers must be 1 or more wide, not {listed(w for w in widths if w < 1)}.")
    if bounded and (len(widths) > MAX_HIDDEN_LAYERS or any(w > MAX_HEAD_WIDTH for w in widths)):
        raise ConfigInvalid(f"A head has at most {MAX_HIDDEN_LAYERS} hidden layers of at most {MAX_HEAD_WIDTH:,} "
                            f"each, not {listed(widths)}.")
    return widths


def head(cfg: HeadConfig, bounded: bool = True) -> HeadConfig:
    if cfg.pool not in HEAD_POOLS:
        raise ConfigInvalid(f"The head's pooling is {' or '.join(HEAD_POOLS)}, not {quoted(cfg.pool)}.")
    hidden_layers(cfg.hidden, bounded)
    if not 0 <= cfg.dropout < 1:
        raise ConfigInvalid(f"The head's dropout is from 0 to below 1, not {quoted(cfg.dropout)}.")
    return cfg


# -----------------------------------------------------------------------------
# The freezing plan, typed: its owner (core.freezing) keeps the rules


def bn_policy(text: str) -> str:
    """The BatchNorm policy `text` names (core.freezing.bn_policy, the one check)."""
    with _said():
        return freezing.bn_policy(text)


def plan(value: FreezePlan, blocks: tuple[str, ...] | None = None, what: str = "") -> FreezePlan:
    """core.freezing.check_plan's rules on `value` (and its blocks, given the backbone's)."""
    with _said(what):
        freezing.check_plan(value, blocks)
    return value


def trainable(text: str, backbone: str) -> tuple[str, ...]:
    """The blocks a comma-separated list names ("layer3,layer4", spaces allowed; "" for none), in the backbone's
    order: the one parser, for a link's train= and the command line's --trainable."""
    blocks = blocks_of(backbone)
    asked = [b.strip() for b in text.split(",") if b.strip()]
    return tuple(b for b in blocks if b in {block(a, backbone, blocks) for a in asked})


def block(name: str, backbone: str, blocks: tuple[str, ...] | None = None) -> str:
    """One of the backbone's blocks."""
    blocks = blocks if blocks is not None else blocks_of(backbone)
    if name not in blocks:
        raise ConfigInvalid(f"{backbone} has no block {quoted(name)}; its blocks are {', '.join(blocks)}.")
    return name


def lr_mults(pairs: Iterable[str], backbone: str) -> tuple[tuple[str, float], ...]:
    """Learning-rate multipliers written BLOCK=FACTOR ("layer4=0.1"), each of the backbone's blocks, 0 or more."""
    mults = []
    for pair in pairs:
        name, _, factor = pair.partition("=")
        try:
            value = float(factor)
        except ValueError:
            raise ConfigInvalid(f"A learning-rate multiplier is BLOCK=FACTOR (layer4=0.1), not {quoted(pair)}.") \
                from None
        mults.append((block(name.strip(), backbone), value))
    plan(FreezePlan(lr_mult=tuple(mults)))  # the factors' own rule
    return tuple(mults)


def freeze_plan(backbone: str, trainable_blocks: str = "", bn: str = "frozen", mults: Iterable[str] = (),
                truncate_after: str | None = None, last_layers: int | None = None) -> FreezePlan:
    """The plan the Layers page's controls make, from text (the command line's plan flags): blocks that train
    ("layer3,layer4"), the BatchNorm policy, BLOCK=FACTOR multipliers, the block to truncate after, the last N
    layers; each read by its rule against the backbone's blocks."""
    blocks = blocks_of(backbone)
    return plan(FreezePlan(trainable=trainable(trainable_blocks, backbone), bn=bn_policy(bn),
                           lr_mult=lr_mults(mults, backbone),
                           truncate_after=block(truncate_after, backbone, blocks) if truncate_after else None,
                           last_layers=last_layers or None), blocks)
