"""Command line over the same functions the app uses.

    python -m core pretrain                       # the demo net on digits 0-4, into the local zoo
    python -m core pretrain --out core/assets/zoo # ...or into the bundled zoo, as shipped
    python -m core backbones                      # the registry, with block names
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core import backbones, freezing, zoo
from core.data import DataConfig, load_data
from core.training import OptimConfig, evaluate, train_epochs


def cmd_pretrain(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    data_cfg = DataConfig(source=args.data, path=args.path or "", task=args.task, per_class=None,
                          val_per_class=None, image_size=args.image_size, seed=args.seed, crop_pad=args.crop_pad)
    data = load_data(data_cfg)
    model = backbones.build_model(backbones.ModelConfig(args.backbone, weights="none"), data.num_classes,
                                  args.image_size)
    freezing.apply(model, freezing.FreezePlan.unfreeze(model.block_names))
    optim = OptimConfig(name="adam", lr=args.lr, batch_size=args.batch_size, cosine=True, weight_decay=args.wd)
    print(f"pretraining {args.backbone} on {data_cfg.source}/{data_cfg.task}: {len(data.train_x)} training, "
          f"{len(data.val_x)} held-out images, classes {data.classes}")
    start = time.perf_counter()
    with tqdm(total=args.epochs, unit="epoch") as bar:
        def on_epoch(epoch: int, row: dict) -> None:
            bar.update(1)
            bar.set_postfix(val_acc=f"{row['val_acc']:.3f}", val_loss=f"{row['val_loss']:.3f}")

        history = train_epochs(model, data, args.epochs, optim, seed=args.seed, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
    manifest = {
        "command": args.command_line,
        "data": dataclasses.asdict(data_cfg),
        "classes": data.classes,
        "train_images": len(data.train_x),
        "heldout_images": len(data.val_x),
        "source_accuracy": round(val_acc, 4),
        "source_loss": round(val_loss, 4),
        "epochs": args.epochs,
        "optim": dataclasses.asdict(optim),
        "params": backbones.count_params(model),
        "seconds": round(seconds, 1),
        "torch": torch.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "history": history,
    }
    folder = zoo.save_entry(args.name, args.backbone, model.state_dict(), manifest, args.out)
    print(f"\nheld-out accuracy {val_acc:.2%} (loss {val_loss:.3f}) after {args.epochs} epochs, {seconds:.0f} s")
    print(f"saved {folder}")
    return 0


def cmd_backbones(_: argparse.Namespace) -> int:
    for name in backbones.list_backbones():
        spec = backbones.get_spec(name)
        print(f"{name:20s} {spec.family:8s} {spec.image_size:4d}px  pretrained: {spec.pretrained}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pretrain a backbone from scratch and save it to the model zoo")
    p.add_argument("--backbone", default="demo", choices=backbones.list_backbones())
    p.add_argument("--data", default="demo", help="data source: demo, cifar10 or folder")
    p.add_argument("--path", help="image folder (with --data folder)")
    p.add_argument("--task", default="source", help="demo task: source (digits 0-4) or target (5-9)")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=0.0, help="weight decay")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop-pad", type=int, default=2, help="augmentation: pad-and-crop pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="demo-digits04", help="zoo entry name")
    p.add_argument("--out", type=Path, default=None, help="zoo folder (default: $FREEZELAB_HOME/zoo)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("backbones", help="list the registered backbones")
    p.set_defaults(func=cmd_backbones)

    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.command_line = "python -m core " + shlex.join(argv)  # recorded in manifests
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
