"""Command line over the same functions the app uses.

    python -m core train                          # the demo comparison: three recipes on digits 5-9
    python -m core train --preset two_phase --backbone resnet18 --data folder --path ~/images
    python -m core train --recipe vgg16_truncated # one of the reports' recipes (list: python -m core recipes)
    python -m core sweep --seeds 3                # accuracy against frozen depth (Yosinski et al., 2014)
    python -m core sweep --engine ray             # ...as Ray Tune trials (pip install -r requirements-extras.txt)
    python -m core pretrain                       # the demo net on digits 0-4, into the local zoo
    python -m core pretrain --out core/assets/zoo # ...or into the bundled zoo, as shipped
    python -m core lr-find --preset fine_tune_top # a learning-rate range test, with a suggested rate
    python -m core backbones                      # the registry
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from core import backbones, experiments
from core.backbones import ModelConfig
from core.data import SOURCES, DataConfig, load_data
from core.device import describe_device
from core.freezing import presets
from core.jobs import JobManager
from core.report_recipes import RECIPES, beside_reported, listing
from core.runs import RunStore
from core.training import (
    DEMO_COMPARISON,
    DEMO_EPOCHS,
    DEMO_OPTIM,
    OPTIMIZERS,
    OptimConfig,
    RunConfig,
    comparison,
)

_FLOAT = {"float_format": lambda v: f"{v:.3f}", "na_rep": "—"}


def _data_config(args: argparse.Namespace, **overrides) -> DataConfig:
    return DataConfig(source=args.data, path=args.path or "", task=args.task, image_size=args.image_size,
                      seed=args.seed, flip=args.flip, crop_pad=args.crop_pad, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    recipe = RECIPES.get(args.recipe) if args.recipe else None
    if args.recipe and recipe is None:
        print(f"Unknown recipe {args.recipe!r}; `python -m core recipes` lists them.", file=sys.stderr)
        return 2
    args.data = args.data or ("cifar10" if recipe else "demo")  # a recipe trains on the report's data
    args.image_size = args.image_size or (recipe.image_size if recipe else 28)
    data_cfg = _data_config(args, per_class=args.per_class)
    try:
        if recipe:
            configs = recipe.configs(data_cfg, args.weights, args.epochs, args.seed, not args.no_cache)
        else:
            optim = OptimConfig(name=args.optimizer, lr=args.lr, batch_size=args.batch_size, cosine=args.cosine)
            recipes = presets(backbones.block_names(args.backbone), top_n=args.top_n)
            configs = comparison(recipes, args.preset or DEMO_COMPARISON, data=data_cfg,
                                 model=ModelConfig(args.backbone, args.weights), optim=optim,
                                 epochs=args.epochs or DEMO_EPOCHS, seed=args.seed, patience=args.patience,
                                 feature_cache=not args.no_cache)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    manager = JobManager(RunStore(), slice_steps=args.slice_steps)
    run_ids = _train(manager, configs, "cli")
    table = _results(manager, run_ids)
    if recipe:
        print(f"\n{recipe.title}: beside the report (it trained on all 50,000 CIFAR-10 images; these runs on "
              f"{data_cfg.per_class or 'all'} per class of {data_cfg.source})")
        print(beside_reported(recipe, manager.store, run_ids).to_string(index=False, **_FLOAT))
    return _failures(table)


def cmd_recipes(_: argparse.Namespace) -> int:
    with pd.option_context("display.max_colwidth", 200, "display.width", 250):
        print(listing().to_string(index=False))
    print("\nrun one: python -m core train --recipe KEY [--per-class N] [--weights none] [--data demo]")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    data_cfg = _data_config(args, per_class=args.per_class)
    optim = OptimConfig(name=args.optimizer, batch_size=args.batch_size)
    try:
        configs = experiments.depth_sweep(data_cfg, ModelConfig(args.backbone, args.weights), optim, args.epochs,
                                          args.seeds, same_lr=args.same_lr, feature_cache=not args.no_cache)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    store = RunStore()
    if args.engine == "ray":
        from core import ray_engine

        try:
            run_ids = ray_engine.run_sweep(store, configs, _group("sweep"), address=args.address, cpus=args.cpus,
                                           progress=_trial_bar(len(configs) * args.epochs))
        except ray_engine.RayUnavailable as err:
            print(err, file=sys.stderr)
            return 2
    else:
        manager = JobManager(store, slice_steps=args.slice_steps)
        run_ids = _train(manager, configs, "sweep")
    print(f"\nFinal validation accuracy against frozen leading blocks ({args.seeds} seed(s) each, "
          f"{args.epochs} epochs; each setting at its own learning rate"
          f"{'' if not args.same_lr else f' — here all at {args.same_lr:g}'}):")
    print(experiments.sweep_table(store, run_ids).to_string(index=False, **_FLOAT))
    print(f"\nruns stored in {store.path}")
    return _failures(store.runs().set_index("id").loc[run_ids])


def _group(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _trial_bar(total: int):
    bar = tqdm(total=total, unit="epoch", desc="trials")
    return lambda done, total, what: (bar.update(done - bar.n), bar.set_postfix_str(what, refresh=True))


def _train(manager: JobManager, configs: list[RunConfig], prefix: str) -> list[str]:
    """Create and train `configs` side by side with a progress bar per run; returns the run ids."""
    print(f"training on {describe_device()}")
    group = _group(prefix)
    run_ids = [manager.create_run(cfg, group) for cfg in configs]
    manager.start(run_ids, epochs=max(cfg.epochs for cfg in configs))
    bars = {r: tqdm(total=cfg.epochs, desc=cfg.label[:36].ljust(36), unit="epoch", position=i)
            for i, (r, cfg) in enumerate(zip(run_ids, configs, strict=True))}

    def draw() -> None:
        for run_id, bar in bars.items():
            snap = manager.snapshot(run_id)
            bar.n = round(snap.epoch, 2)
            if snap.last_epoch:
                bar.set_postfix(val_acc=f"{snap.last_epoch['val_acc']:.3f}", refresh=False)
            bar.refresh()

    try:
        while any(manager.is_busy(r) for r in run_ids):
            draw()
            time.sleep(0.2)
    except KeyboardInterrupt:
        manager.stop()
    manager.wait()
    draw()
    for bar in bars.values():
        bar.close()
    return run_ids


def _results(manager: JobManager, run_ids: list[str]) -> pd.DataFrame:
    """Print the runs' table and where they are stored; returns the table."""
    table = manager.store.runs().set_index("id").loc[run_ids]
    snaps = {r: manager.snapshot(r) for r in run_ids}
    table["cache"] = ["on" if snaps[r].cache_on else "off" for r in run_ids]
    columns = ["label", "status", "trainable", "params", "epochs", "val_acc", "val_loss", "seconds", "cache"]
    print("\n" + table[columns].to_string(index=False, **_FLOAT))
    print(f"\nruns stored in {manager.store.path}")
    return table


def _failures(table: pd.DataFrame) -> int:
    """Say which runs failed or diverged; the exit status (1 when any did)."""
    failed = table[table.status.isin(["failed", "diverged"])]
    for _, row in failed.iterrows():
        print(f"{row.label}: {row.status}: {row.message}", file=sys.stderr)
    return 1 if len(failed) else 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    data_cfg = _data_config(args, per_class=None, val_per_class=None)
    cfg = experiments.pretrain_config(data_cfg, args.backbone, args.epochs, args.lr, args.batch_size, args.seed,
                                      label=f"pretrain {args.name}")
    manager = JobManager(RunStore(), slice_steps=args.slice_steps)
    run_ids = _train(manager, [cfg], "pretrain")
    if _failures(_results(manager, run_ids)):
        return 1
    folder = experiments.save_to_zoo(manager.store, run_ids[0], args.name, command=args.command_line, root=args.out)
    manifest = json.loads((folder / "manifest.json").read_text())
    print(f"\nheld-out accuracy {manifest['source_accuracy']:.2%} (loss {manifest['source_loss']:.3f}) after "
          f"{manifest['epochs']} epochs, {manifest['seconds']:.0f} s of training")
    print(f"saved {folder}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from core import lr_find

    data_cfg = _data_config(args, per_class=args.per_class)
    recipes = presets(backbones.block_names(args.backbone))
    if args.preset not in recipes:
        print(f"Unknown preset {args.preset!r}; choose from {', '.join(recipes)}.", file=sys.stderr)
        return 2
    cfg = RunConfig.from_recipe(recipes[args.preset], data=data_cfg, model=ModelConfig(args.backbone, args.weights),
                                optim=OptimConfig(name=args.optimizer, batch_size=args.batch_size), seed=args.seed)
    with tqdm(total=args.steps, unit="step", desc="range test") as bar:
        table = lr_find.lr_range_test(cfg, load_data(data_cfg), args.start, args.end, args.steps,
                                      progress=lambda done, total, what: bar.update(done - bar.n))
    print(table.iloc[:: max(1, len(table) // 12)].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nsuggested learning rate for {cfg.label}: {lr_find.suggest(table):.2g} "
          f"(a tenth of where the smoothed loss was lowest; the preset's own: {cfg.phases[0].lr:g})")
    return 0


def cmd_backbones(_: argparse.Namespace) -> int:
    rows = [{"backbone": n, "family": backbones.get_spec(n).family, "size": backbones.get_spec(n).image_size,
             "blocks": ", ".join(backbones.block_names(n)), "pretrained": backbones.get_spec(n).pretrained}
            for n in backbones.list_backbones()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _add_data_args(p: argparse.ArgumentParser, task: str, image_size: int | None, crop_pad: int,
                   source: str | None = "demo") -> None:
    shown = source or "demo, or cifar10 for a recipe"
    p.add_argument("--data", default=source, choices=SOURCES, help=f"data source (default: {shown})")
    p.add_argument("--path", help="image folder (with --data folder)")
    p.add_argument("--task", default=task, help="demo task: source (digits 0-4) or target (digits 5-9)")
    p.add_argument("--image-size", type=int, default=image_size)
    p.add_argument("--flip", action="store_true", help="augmentation: random horizontal flips")
    p.add_argument("--crop-pad", type=int, default=crop_pad, help="augmentation: pad-and-crop pixels")
    p.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train runs side by side and store them (default: the demo comparison)")
    _add_data_args(p, task="target", image_size=None, crop_pad=0, source=None)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    p.add_argument("--backbone", default="demo", choices=backbones.list_backbones())
    p.add_argument("--weights", default="pretrained", help="pretrained, none, file:<path> or zoo:<name>")
    p.add_argument("--preset", action="append", help=f"a recipe (repeat for several; default: "
                                                     f"{', '.join(DEMO_COMPARISON)})")
    p.add_argument("--top-n", type=int, default=2, help="blocks the fine_tune_top preset trains")
    p.add_argument("--recipe", help="one of the reports' recipes, with its own backbone, head, optimiser and "
                                    "budget (`python -m core recipes` lists them); data defaults to CIFAR-10")
    p.add_argument("--epochs", type=int, default=None, help=f"default {DEMO_EPOCHS}, or the recipe's")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=DEMO_OPTIM.lr)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    p.add_argument("--no-cache", action="store_true", help="never cache frozen features")
    p.add_argument("--slice-steps", type=int, default=5, help="steps per turn when interleaving runs")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="pretrain a backbone from scratch and save it to the model zoo")
    _add_data_args(p, task="source", image_size=28, crop_pad=2)
    p.add_argument("--backbone", default="demo", choices=backbones.list_backbones())
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--name", default="demo-digits04", help="zoo entry name")
    p.add_argument("--out", type=Path, default=None, help="zoo folder (default: $FREEZELAB_HOME/zoo)")
    p.add_argument("--slice-steps", type=int, default=5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("recipes", help="list the reports' recipes and the figures they reported")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("sweep", help="transferability by depth: one run per number of frozen leading blocks, "
                                     "plus a from-scratch control (Yosinski et al., 2014)")
    _add_data_args(p, task="target", image_size=28, crop_pad=0)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    p.add_argument("--backbone", default="demo", choices=backbones.list_backbones())
    p.add_argument("--weights", default="pretrained", help="pretrained, file:<path> or zoo:<name>")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--seeds", type=int, default=1, help="runs per setting, seeds 0 .. N-1")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--same-lr", type=float, default=None,
                   help="give every setting this one rate (default: each the rate suited to what it trains)")
    p.add_argument("--no-cache", action="store_true", help="never cache frozen features")
    p.add_argument("--engine", default="jobs", choices=("jobs", "ray"), help="jobs: this process's job manager; "
                   "ray: Ray Tune trials (optional install)")
    p.add_argument("--address", default=None, help="with --engine ray: an existing Ray cluster (default: start "
                                                   "a local one)")
    p.add_argument("--cpus", type=int, default=None, help="with --engine ray: CPUs of the local Ray")
    p.add_argument("--slice-steps", type=int, default=5, help="steps per turn when interleaving runs")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("lr-find", help="learning-rate range test for a preset (Smith, 2017)")
    _add_data_args(p, task="target", image_size=28, crop_pad=0)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    p.add_argument("--backbone", default="demo", choices=backbones.list_backbones())
    p.add_argument("--weights", default="pretrained", help="pretrained, none, file:<path> or zoo:<name>")
    p.add_argument("--preset", default="feature_extraction", help="the recipe whose first phase is tested")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--start", type=float, default=1e-6)
    p.add_argument("--end", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=60)
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("backbones", help="list the registered backbones and their blocks")
    p.set_defaults(func=cmd_backbones)

    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.command_line = "python -m core " + shlex.join(argv)  # recorded in manifests
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
