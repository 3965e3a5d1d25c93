"""What recording per-block statistics costs: the time the burst loop spends measuring gradient norms
(every step) and weight and BatchNorm drift (every epoch), as a share of the rest of the burst, all
measured in the same bursts.

    python benchmarks/bench_recording.py                    # demo 28 px, then resnet18 64 px (CIFAR JPEGs)
    python benchmarks/bench_recording.py --quick            # tiny sizes (what the tests run)

Fine-tuning everything is the worst case: every block has gradients to measure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import block_stats
from core.backbones import ModelConfig, block_names
from core.data import DataConfig, load_data
from core.device import describe_device
from core.freezing import presets
from core.training import OptimConfig, RunConfig, run_burst, start_run

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpg"


class Timed:
    """Wraps a function and adds up the seconds spent in it."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.original, self.seconds = owner, name, getattr(owner, name), 0.0

    def __enter__(self):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def measure(cfg: RunConfig, data, epochs: int) -> dict:
    state = start_run(cfg, data)
    list(run_burst(state, epochs=1))  # warm-up
    with Timed(block_stats.GradientMeter, "add") as grads, Timed(block_stats, "drift") as drift:
        t0 = time.perf_counter()
        list(run_burst(state, epochs=epochs))
        wall = time.perf_counter() - t0
    recording = grads.seconds + drift.seconds
    return {"burst_s": wall, "gradients_s": grads.seconds, "drift_s": drift.seconds,
            "share": recording / (wall - recording)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    setups = [("demo", DataConfig(per_class=100 if not args.quick else 10, val_per_class=20), 32)]
    if not args.quick:
        cifar = (DataConfig(source="folder", path=str(CIFAR_JPG), per_class=50, val_per_class=10, image_size=64)
                 if (CIFAR_JPG / "train").is_dir() else DataConfig(per_class=50, val_per_class=10, image_size=64))
        setups.append(("resnet18", cifar, 32))
    print(f"device: {describe_device()}; torch {torch.__version__}; fine-tune everything, {args.epochs} epochs")
    print(f"{'backbone':10} {'images':>7} {'burst s':>8} {'grad norms s':>13} {'drift s':>8} {'share':>7}")
    for backbone, data_cfg, batch in setups:
        data = load_data(data_cfg)
        cfg = RunConfig.from_recipe(presets(block_names(backbone))["fine_tune_all"], data=data_cfg,
                                    model=ModelConfig(backbone, "none"), epochs=args.epochs + 1,
                                    optim=OptimConfig(batch_size=batch))
        r = measure(cfg, data, args.epochs if not args.quick else 1)
        print(f"{backbone:10} {len(data.train_x):>7} {r['burst_s']:>8.2f} {r['gradients_s']:>13.3f} "
              f"{r['drift_s']:>8.3f} {r['share']:>7.1%}")


if __name__ == "__main__":
    main()
