"""What there is to train with: `backbones` (the registry, or every library model's name) and `report-recipes`
(the reports' full setups, with the figures they reported), each beside its parser."""

from __future__ import annotations

import argparse

from core.models import backbones


def cmd_backbones(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.all:  # names only: finding a model's blocks means building it
        for library in backbones.LIBRARIES:
            names = backbones.any_model_names(library)
            print(f"{library}: {len(names)} models" + ("" if names else " (pip install 'freezelab[timm]')"))
            print("\n".join(f"  {n}" for n in names))
        return 0

    rows = [{"backbone": n, "family": backbones.get_spec(n).family, "size": backbones.get_spec(n).image_size,
             "blocks": ", ".join(backbones.block_names(n)), "pretrained": backbones.get_spec(n).pretrained}
            for n in backbones.list_backbones()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_report_recipes(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.experiments.report_recipes import listing

    with pd.option_context("display.max_colwidth", 200, "display.width", 250):
        print(listing().to_string(index=False))
    print(f"\nrun one: {args.invocation.prog} train --report-recipe KEY [--per-class N] [--weights none] [--data demo]")
    return 0


def add_parsers(sub, prog: str) -> None:
    p = sub.add_parser("report-recipes", help="list the reports' recipes and the figures they reported")
    p.set_defaults(func=cmd_report_recipes)

    p = sub.add_parser("backbones", help="list the registered backbones and their blocks")
    p.add_argument("--all", action="store_true", help="also every model torchvision and timm name (usable as "
                   "torchvision:<name>, timm:<name>)")
    p.set_defaults(func=cmd_backbones)
