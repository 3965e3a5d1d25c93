"""How much the feature cache saves: time per training epoch for several plans, cache on and off,
as ratios against fine-tuning everything (the baseline), all measured in the same run.

    python benchmarks/bench_cache.py                       # resnet18, 64 px, CIFAR-10 JPEGs if present
    python benchmarks/bench_cache.py --backbone demo --image-size 28

Times are training seconds per epoch (forward, backward, step), the median over `--epochs` epochs
after one warm-up epoch; building the cache is reported on its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.backbones import ModelConfig, block_names
from core.data import DataConfig, load_data
from core.freezing import presets
from core.training import CacheStatus, EpochEnd, OptimConfig, RunConfig, run_burst, start_run

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpg"


def measure(cfg: RunConfig, data, epochs: int) -> tuple[float, float, bool]:
    """(median training seconds per epoch, seconds to build the cache, cache on?)."""
    state = start_run(cfg, data)
    t0 = time.perf_counter()
    events = list(run_burst(state, steps=0))  # builds the cache, trains nothing
    build = time.perf_counter() - t0
    cache_on = any(isinstance(e, CacheStatus) and e.on for e in events)
    per_epoch, last = [], state.seconds
    for _ in range(epochs + 1):
        for e in run_burst(state, epochs=1):
            if isinstance(e, EpochEnd):
                per_epoch.append(e.seconds - last)
                last = e.seconds
    return statistics.median(per_epoch[1:]), build, cache_on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    if CIFAR_JPG.is_dir() and args.backbone != "demo":
        data_cfg = DataConfig(source="folder", path=str(CIFAR_JPG), per_class=args.per_class, val_per_class=10,
                              image_size=args.image_size)
    else:
        data_cfg = DataConfig(per_class=args.per_class, val_per_class=20, image_size=args.image_size)
    data = load_data(data_cfg)
    recipes = presets(block_names(args.backbone))
    print(f"{args.backbone} at {args.image_size}px, {len(data.train_x)} training images ({data_cfg.source}), "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}\n")
    rows = []
    for key in ("fine_tune_all", "fine_tune_top", "feature_extraction"):
        for cache in (False, True):
            if key == "fine_tune_all" and cache:
                continue  # nothing is frozen: there is nothing to cache
            # Weights "none": speed does not depend on the weights' values, and nothing downloads.
            cfg = RunConfig.from_recipe(recipes[key], data=data_cfg, model=ModelConfig(args.backbone, "none"),
                                        optim=OptimConfig(batch_size=32), epochs=100, feature_cache=cache)
            seconds, build, on = measure(cfg, data, args.epochs)
            rows.append((recipes[key].title, "on" if on else "off", seconds, build))
    baseline = rows[0][2]
    print("| plan | cache | s / epoch | speed-up vs fine-tune all | cache build (s) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for title, cache, seconds, build in rows:
        built = f"{build:.2f}" if cache == "on" else "—"
        print(f"| {title} | {cache} | {seconds:.2f} | {baseline / seconds:.1f}× | {built} |")


if __name__ == "__main__":
    main()
