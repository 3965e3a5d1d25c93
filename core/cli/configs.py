"""The parts of a run config the flags describe, each read by the one owner of its rule (core/training/rules.py),
which the links, the JSON reader and the pages use too: the data, one freezing plan, the head. A value a rule
refuses is said in its sentence (ConfigInvalid, a ValueError) before any run is made."""

from __future__ import annotations

import argparse

from core.data.datasets import DataConfig
from core.freezing import FreezePlan
from core.models.backbones import HeadConfig
from core.training import rules


def data_config(args: argparse.Namespace, **overrides) -> DataConfig:
    """The data the arguments ask for. Without --image-size, the images take the backbone's own size; whether a
    folder is there and holds classes is checked with the whole config (`validate_new_run`)."""
    backbone = getattr(args, "backbone", None)
    return DataConfig(source=rules.source(args.data), path=args.path or "", task=args.task,
                      image_size=rules.image_size(args.image_size, backbone), seed=args.seed, flip=args.flip,
                      crop_pad=args.crop_pad, **overrides)


def plan_of_flags(args: argparse.Namespace) -> FreezePlan:
    """The FreezePlan of the plan flags, read against the backbone's blocks."""
    return rules.freeze_plan(args.backbone, args.trainable or "", args.bn or "frozen", args.lr_mult or (),
                             args.truncate_after, args.last_layers)


def head_of_flags(args: argparse.Namespace) -> HeadConfig:
    """The head the --head-* flags describe."""
    return rules.head(HeadConfig(args.head_pool, rules.head_widths(args.head_hidden or ""), args.head_dropout))
