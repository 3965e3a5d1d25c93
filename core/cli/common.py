"""What the command groups share: how the user called the command line (Invocation), the one-line refusal, the
help formatter, the flags several commands take, and the tables' shapes."""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.data.datasets import SOURCES
from core.models import backbones
from core.runtime.settings import settings
from core.store.runs import RunStore
from core.store.status import ENDED_BADLY

if TYPE_CHECKING:
    import pandas as pd

FLOAT = {"float_format": lambda v: f"{v:.3f}", "na_rep": "—"}


class Refused(Exception):
    """Arguments no run can be made from: said in one line (main), before anything is stored."""


@dataclass(frozen=True)
class Invocation:
    """How the user called the command line: `prog` as typed (`freezelab`, `python -m core`: the commands its
    messages suggest), and `json` when stdout carries one JSON document for scripts (--json), so that what is
    said for people goes to stderr."""

    prog: str = "python -m core"
    json: bool = False

    def say(self, text: str) -> None:
        """A line for people: on stdout, or on stderr when stdout carries JSON."""
        print(text, file=sys.stderr if self.json else sys.stdout, flush=True)


def records(frame: pd.DataFrame) -> list[dict]:
    """A table as JSON-ready rows: numbers as numbers, missing ones null, times in ISO 8601."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def failures(table: pd.DataFrame) -> int:
    """Say which runs failed or diverged; the exit status (1 when any did)."""
    failed = table[table.status.isin(ENDED_BADLY)]
    for _, row in failed.iterrows():
        print(f"{row.label}: {row.status}: {row.message}", file=sys.stderr)
    return 1 if len(failed) else 0


def runs_asked(store: RunStore, run_ids: list[str], group: str | None, prog: str, when_none: str = "all") -> list[str]:
    """The runs named, or a group's; when neither, every run ("all") or none ("none": the command needs them
    named). Refused, in one line, for an id the store does not hold or no runs at all."""
    known = list(store.runs().id)
    asked = run_ids or (store.group(group) if group else known if when_none == "all" else [])
    unknown = [r for r in asked if r not in known]
    if unknown:
        raise Refused(f"No run {', '.join(unknown)} in {store.path} (`{prog} runs list` shows them).")
    if not asked:
        raise Refused(f"No runs in {store.path}." if when_none == "all" else
                      f"Name the runs (or --group G); `{prog} runs list` shows them.")
    return asked


# --- flags several commands take ------------------------------------------------------------------------------

MODEL_FILE_HELP = ("your own network: a function in a Python file returning an nn.Module, or (module, blocks); "
                   "it becomes the backbone own:<file stem>.<function> (repeatable)")


def register_model_files(argv: list[str]) -> list[str]:
    """Register, in this process, the networks $FREEZELAB_MODEL_FILES and each --model-file name (before the
    arguments are parsed: --backbone own:... is checked against them); their backbone names, the flags' last.
    Processes this one starts get them from their own environment (the app's: cli.app.child_environment) or
    from the run (Ray's trials carry their references)."""
    given = argparse.ArgumentParser(add_help=False)
    given.add_argument("--model-file", action="append", default=[])
    files = given.parse_known_args(argv)[0].model_file
    if not files and not settings().model_files:
        return []  # no torch imported for the usual commands
    from core.models import own

    own.register_all(settings().model_files)
    return [own.register(f) for f in files]


def backbone_name(name: str) -> str:
    """A backbone argument, checked where it is parsed: a registered name, or a model torchvision or timm names."""
    try:
        backbones.get_spec(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"give a positive number, not {text!r}")
    return value


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    backbone_help = (f"one of {', '.join(backbones.list_backbones())}, or any model as torchvision:<name> or "
                     "timm:<name>, its blocks found automatically (`backbones --all` lists the names)")
    p.add_argument("--backbone", default="demo", type=backbone_name, metavar="NAME", help=backbone_help)
    p.add_argument("--model-file", action="append", default=[], metavar="FILE.py:FUNCTION", help=MODEL_FILE_HELP)


def add_data_args(p: argparse.ArgumentParser, prog: str, task: str, crop_pad: int,
                  source: str | None = "demo") -> None:
    shown = source or "demo, or cifar10 for a report recipe"
    p.add_argument("--data", default=source, choices=SOURCES, help=f"data source (default: {shown})")
    p.add_argument("--path", help="image folder (with --data folder)")
    p.add_argument("--task", default=task, help="demo task: source (digits 0-4) or target (digits 5-9)")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"pixels a side (default: the backbone's own size; `{prog} backbones` lists each)")
    p.add_argument("--flip", action="store_true", help="augmentation: random horizontal flips")
    p.add_argument("--crop-pad", type=int, default=crop_pad, help="augmentation: pad-and-crop pixels")
    p.add_argument("--seed", type=int, default=0)


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the summary as JSON on stdout, for scripts (progress and "
                   "messages go to stderr)")


# --- help -----------------------------------------------------------------------------------------------------

def _worth_showing(default) -> bool:
    """Whether `--help` says an option's default: not a switch's False, not None or "" (by identity: 0 is shown)."""
    return not (default is None or default is False or default == "" or default == argparse.SUPPRESS)


class Help(argparse.RawDescriptionHelpFormatter):
    """The examples as written, and each option's default in its help where it has one worth saying (not a
    switch's False, not None) and the help does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = _worth_showing(action.default) and action.option_strings
        return (text + " (default: %(default)s)").strip() if shown and "default" not in text else text

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _worth_showing(action.default) and action.option_strings:
            action = copy.copy(action)  # argparse prints no help line for an option without help: give it one
            action.help = ""
            action.help = self._get_help_string(action)
        return super()._format_action(action)


def add_subcommands(parser: argparse.ArgumentParser, dest: str):
    """`parser`'s subcommands (one required), each with its help in the Help formatter."""
    sub = parser.add_subparsers(dest=dest, required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=Help)
    return sub
