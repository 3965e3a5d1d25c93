"""How long each attribution method takes for one image on this machine, for the demo net (28x28) and
ResNet-18 at 64x64, with default settings; median of `--repeat` calls after a warm-up, and the ratio to
Grad-CAM measured in the same run.

    python benchmarks/bench_attribution.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.attribution import METHODS, AttributionConfig, explain
from core.backbones import ModelConfig, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}; one image, default settings "
          f"(IG {AttributionConfig.steps} steps, occlusion {AttributionConfig.window}px window / "
          f"{AttributionConfig.stride}px stride, SmoothGrad {AttributionConfig.samples} samples)\n")
    print("| method | demo 28×28 (ms) | vs Grad-CAM | ResNet-18 64×64 (ms) | vs Grad-CAM |")
    print("| --- | ---: | ---: | ---: | ---: |")
    torch.manual_seed(0)
    nets = {"demo": build_model(ModelConfig("demo", "none"), 5, 28),
            "resnet18": build_model(ModelConfig("resnet18", "none"), 10, 64)}
    times: dict[str, dict[str, float]] = {}
    for name, net in nets.items():
        x = torch.rand(1, 3, net.image_size, net.image_size)
        for method in METHODS:
            cfg = AttributionConfig(method=method)
            explain(net, x, cfg)  # warm-up
            runs = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                explain(net, x, cfg)
                runs.append(time.perf_counter() - start)
            times.setdefault(method, {})[name] = statistics.median(runs) * 1000
    base = times["grad_cam"]
    for method, t in times.items():
        print(f"| {METHODS[method].title} | {t['demo']:.0f} | {t['demo'] / base['demo']:.1f}× | "
              f"{t['resnet18']:.0f} | {t['resnet18'] / base['resnet18']:.1f}× |")


if __name__ == "__main__":
    main()
