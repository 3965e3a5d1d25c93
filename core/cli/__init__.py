"""Command line over the same functions the app uses (`python -m core` is the same command).

    freezelab app                                 # start the Streamlit app (any further flags go to streamlit)
    freezelab train                               # the demo comparison: three recipes on digits 5-9
    freezelab train --preset two_phase --backbone resnet18 --data folder --path ~/images
    freezelab train --trainable layer4 --bn stats --lr-mult layer4=0.1 --backbone resnet18   # one plan
    freezelab train --config run.json             # a stored run's config again (freezelab runs show ID --config)
    freezelab train --report-recipe vgg16_truncated   # one of the reports' recipes (list: freezelab report-recipes)
    freezelab sweep --seeds 3                     # accuracy against frozen depth (Yosinski et al., 2014)
    freezelab sweep --engine ray                  # ...as Ray Tune trials (pip install -e '.[ray]')
    freezelab pretrain                            # the demo net on digits 0-4, into the local zoo
    freezelab pretrain --out core/models/assets/zoo --name demo-digits04 --replace   # ...the bundled one
    freezelab lr-find --preset fine_tune_top      # a learning-rate range test, with a suggested rate
    freezelab backbones                           # the registry
    freezelab runs list | show ID | resume ID [--epochs N] | export-csv [--out F] | delete ID
    freezelab export --mlflow DIR_OR_URI --tensorboard DIR [--runs ID ...]   # to experiment trackers
    freezelab report ID ID ... [--group G] --out report.html   # a comparison as one HTML file, offline
    freezelab export-model ID --out DIR [--format state_dict|torch_export|onnx]   # a model others can use
    freezelab bench [--quick] [--only loop app ...]   # speed and memory beside baselines: a table and a CSV
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from core.cli import app, bench, exports, listings, runs, training
from core.cli.common import Help, Invocation, Refused, add_subcommands, register_model_files
from core.runtime.version import version
from core.training.rules import ConfigInvalid

# Torch, pandas and the training engine are imported by the commands that use them, not above: `--help`,
# `--version` and `runs list` answer without loading torch.

GROUPS = (training, listings, runs, exports, bench, app)  # each adds its commands' parsers, in this order


def parser(prog: str) -> argparse.ArgumentParser:
    """The whole command line: each command group adds its own subcommands, named in the words the user typed."""
    top = argparse.ArgumentParser(prog=prog, description=__doc__.replace("freezelab ", f"{prog} "),
                                  formatter_class=Help)
    top.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = add_subcommands(top, "command")
    for group in GROUPS:
        group.add_parsers(sub, prog)
    return top


def main(argv: list[str] | None = None, prog: str = "python -m core") -> int:
    try:
        return _run(sys.argv[1:] if argv is None else argv, prog)
    except (Refused, ConfigInvalid) as err:  # a value a rule refuses: its one sentence, before any run is stored
        print(err, file=sys.stderr)
        return 2
    except BrokenPipeError:  # `freezelab runs show ID | head`: the reader has what it wanted; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python flushes
        return 0


def _run(argv: list[str], prog: str) -> int:
    try:  # the operator's own networks, registered before the arguments that may name them are checked
        named = register_model_files(argv)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    top = parser(prog)
    args, rest = top.parse_known_args(argv)
    if named and "--backbone" not in argv and hasattr(args, "backbone"):
        args.backbone = named[-1]  # --model-file alone: that network is the backbone
    if getattr(args, "passes_on_the_rest", False):
        args.streamlit_args = rest  # streamlit's own flags (--server.port 8502), passed on as they are
    elif rest:
        top.error(f"unrecognized arguments: {' '.join(rest)}")
    args.command_line = f"{prog} " + shlex.join(argv)  # recorded in manifests
    args.invocation = Invocation(prog, json=getattr(args, "json", False))
    return args.func(args)


def console() -> int:
    """The `freezelab` command (pyproject's entry point): the same subcommands, named as typed."""
    return main(prog="freezelab")
