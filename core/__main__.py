"""Command line over the same functions the app uses.

    python -m core train                          # the demo comparison: three recipes on digits 5-9
    python -m core train --preset two_phase --backbone resnet18 --data folder --path ~/images
    python -m core pretrain                       # the demo net on digits 0-4, into the local zoo
    python -m core pretrain --out core/assets/zoo # ...or into the bundled zoo, as shipped
    python -m core lr-find --preset fine_tune_top # a learning-rate range test, with a suggested rate
    python -m core backbones                      # the registry
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from core import backbones, zoo
from core.backbones import ModelConfig
from core.data import SOURCES, DataConfig, load_data
from core.freezing import FreezePlan, Phase, presets
from core.jobs import JobManager
from core.runs import RunStore
from core.training import (
    DEMO_COMPARISON,
    DEMO_EPOCHS,
    DEMO_OPTIM,
    OPTIMIZERS,
    EpochEnd,
    OptimConfig,
    RunConfig,
    comparison,
    evaluate,
    run_burst,
    start_run,
)


def _data_config(args: argparse.Namespace, **overrides) -> DataConfig:
    return DataConfig(source=args.data, path=args.path or "", task=args.task, image_size=args.image_size,
                      seed=args.seed, flip=args.flip, crop_pad=args.crop_pad, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    data_cfg = _data_config(args, per_class=args.per_class)
    optim = OptimConfig(name=args.optimizer, lr=args.lr, batch_size=args.batch_size, cosine=args.cosine)
    recipes = presets(backbones.block_names(args.backbone), top_n=args.top_n)
    try:
        configs = comparison(recipes, args.preset or DEMO_COMPARISON, data=data_cfg,
                             model=ModelConfig(args.backbone, args.weights), optim=optim, epochs=args.epochs,
                             seed=args.seed, patience=args.patience, feature_cache=not args.no_cache)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    manager = JobManager(RunStore(), slice_steps=args.slice_steps)
    group = f"cli-{time.strftime('%Y%m%d-%H%M%S')}"
    run_ids = [manager.create_run(cfg, group) for cfg in configs]
    manager.start(run_ids, epochs=args.epochs)
    bars = {r: tqdm(total=args.epochs, desc=cfg.label[:28].ljust(28), unit="epoch", position=i)
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
    table = manager.store.runs().set_index("id").loc[run_ids]
    snaps = {r: manager.snapshot(r) for r in run_ids}
    table["cache"] = ["on" if snaps[r].cache_on else "off" for r in run_ids]
    columns = ["label", "status", "trainable", "params", "epochs", "val_acc", "val_loss", "seconds", "cache"]
    print("\n" + table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    failed = table[table.status.isin(["failed", "diverged"])]
    for _, row in failed.iterrows():
        print(f"{row.label}: {row.status}: {row.message}", file=sys.stderr)
    print(f"\nruns stored in {manager.store.path}")
    return 1 if len(failed) else 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    data_cfg = _data_config(args, per_class=None, val_per_class=None)
    cfg = RunConfig(
        data=data_cfg,
        model=ModelConfig(args.backbone, weights="none"),
        phases=(Phase(FreezePlan.unfreeze(backbones.block_names(args.backbone))),),
        optim=OptimConfig(lr=args.lr, batch_size=args.batch_size, cosine=True),
        epochs=args.epochs,
        seed=args.seed,
        label=f"pretrain {args.name}",
    )
    state = start_run(cfg, load_data(data_cfg))
    print(f"pretraining {args.backbone} on {data_cfg.source}/{data_cfg.task}: {len(state.data.train_x)} training, "
          f"{len(state.data.val_x)} held-out images, classes {state.data.classes}")
    history = []
    with tqdm(total=args.epochs, unit="epoch") as bar:
        for event in run_burst(state, epochs=args.epochs):
            if isinstance(event, EpochEnd):
                history.append({k: round(v, 4) for k, v in dataclasses.asdict(event).items()})
                bar.update(1)
                bar.set_postfix(val_acc=f"{event.val_acc:.3f}", val_loss=f"{event.val_loss:.3f}")
    val_loss, val_acc = evaluate(state.model, state.data.val_x, state.data.val_y)
    manifest = {
        "command": args.command_line,
        "data": dataclasses.asdict(data_cfg),
        "classes": state.data.classes,
        "train_images": len(state.data.train_x),
        "heldout_images": len(state.data.val_x),
        "source_accuracy": round(val_acc, 4),
        "source_loss": round(val_loss, 4),
        "epochs": args.epochs,
        "optim": dataclasses.asdict(cfg.optim),
        "params": backbones.count_params(state.model),
        "seconds": round(state.seconds, 1),
        "torch": torch.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "history": history,
    }
    folder = zoo.save_entry(args.name, args.backbone, state.model.state_dict(), manifest, args.out)
    print(f"\nheld-out accuracy {val_acc:.2%} (loss {val_loss:.3f}) after {args.epochs} epochs, "
          f"{state.seconds:.0f} s of training")
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


def _add_data_args(p: argparse.ArgumentParser, task: str, image_size: int, crop_pad: int) -> None:
    p.add_argument("--data", default="demo", choices=SOURCES, help="data source")
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
    _add_data_args(p, task="target", image_size=28, crop_pad=0)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    p.add_argument("--backbone", default="demo", choices=backbones.list_backbones())
    p.add_argument("--weights", default="pretrained", help="pretrained, none, file:<path> or zoo:<name>")
    p.add_argument("--preset", action="append", help=f"a recipe (repeat for several; default: "
                                                     f"{', '.join(DEMO_COMPARISON)})")
    p.add_argument("--top-n", type=int, default=2, help="blocks the fine_tune_top preset trains")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
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
    p.set_defaults(func=cmd_pretrain)

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
