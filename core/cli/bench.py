"""`bench`: every speed and memory figure beside its baseline. The benchmarks live outside the engine
(benchmarks/); this is the one module of core that reaches them, and only when the command is asked for."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages, installed)
CIFAR_JPG_DEFAULT = Path(os.environ.get("FREEZELAB_CIFAR_JPG", ROOT.parent / "shared/data/cifar10-jpg"))


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks import bench
    from benchmarks.sections import SECTIONS

    opts = bench.Options(quick=args.quick, epochs=1 if args.quick else args.epochs, repeats=args.repeats,
                         scale_images=args.scale_images, scale_sizes=tuple(args.scale_sizes), cifar=Path(args.cifar))
    bench.run(tuple(args.only or SECTIONS), opts, Path(args.out))
    return 0


def add_parsers(sub, prog: str) -> None:
    from benchmarks.sections import SECTIONS  # names only (no torch): the parser lists them as choices

    p = sub.add_parser("bench", help="every speed and memory figure beside its baseline, measured in one run: "
                                     "one table, and a CSV")
    p.add_argument("--only", nargs="+", choices=SECTIONS,
                   help="some sections (default: all, in this order)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (what the tests run; the numbers mean nothing)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop measurement, after a warm-up")
    p.add_argument("--repeats", type=int, default=3, help="clicks of the demo comparison in Chromium")
    p.add_argument("--scale-images", type=int, default=50_000, help="training images for the scale section")
    p.add_argument("--scale-sizes", type=int, nargs="+", default=[32, 224], help="image sizes for the scale section")
    p.add_argument("--cifar", default=str(CIFAR_JPG_DEFAULT), help="the CIFAR-10 JPEG subset (train/, test/) to "
                   "time on and replicate; generated images stand in when it is missing")
    p.add_argument("--out", default="bench.csv", help="where the CSV goes (default: bench.csv here)")
    p.set_defaults(func=cmd_bench)
