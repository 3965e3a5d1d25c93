"""The bundled demo net: small, documented, and good at the task it was pretrained on."""

import json

import pytest
import torch

from core.data.datasets import DataConfig, load_data
from core.models import backbones, weights, zoo
from core.models.backbones import ModelConfig
from core.models.network import build_model
from core.training.loop import evaluate

ENTRY = zoo.BUNDLED / "demo-digits04"


def test_shipped_checkpoint_is_small_and_documented():
    assert (ENTRY / zoo.CHECKPOINT).stat().st_size < 2 * 1024 * 1024
    manifest = json.loads((ENTRY / zoo.MANIFEST).read_text())
    assert manifest["command"].startswith("python -m core pretrain")
    assert manifest["backbone"] == "demo" and manifest["data"]["task"] == "source"
    assert manifest["classes"] == ["0", "1", "2", "3", "4"]
    assert manifest["source_accuracy"] >= 0.95
    assert 100_000 < manifest["params"] < 1_000_000


def test_shipped_checkpoint_scores_on_heldout_digits_0_to_4():
    manifest = json.loads((ENTRY / zoo.MANIFEST).read_text())
    # The held-out images are the validation split of the very config the net was pretrained with.
    cfg = DataConfig(**{**manifest["data"], "classes": tuple(manifest["data"]["classes"])})
    data = load_data(cfg)
    assert len(data.val_x) == 500
    net = build_model(ModelConfig("demo", weights="none"), num_classes=5)
    net.load_state_dict(weights.read_file(ENTRY / zoo.CHECKPOINT))  # the whole net, head included
    _, accuracy = evaluate(net, data.val_x, data.val_y)
    assert accuracy >= 0.95


def test_pretrained_demo_backbone_comes_from_the_bundled_entry():
    state = weights.read_file(ENTRY / zoo.CHECKPOINT)
    net = build_model(ModelConfig("demo"), num_classes=3)
    assert torch.equal(net.blocks["layer2"].conv1.weight, state["blocks.layer2.conv1.weight"])
    assert torch.allclose(net.mean.flatten(), torch.tensor(backbones.MNIST_MEAN))
    assert net.head[-1].out_features == 3


def test_the_demo_nets_block_is_resnets_basic_block():
    """Its own residual block (no torchvision to import on a cold start) computes what torchvision's does, and
    holds its tensors under the same names."""
    from torchvision.models.resnet import BasicBlock

    from core.models.demo_net import ResidualBlock

    def shortcut():
        return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 1, stride=2, bias=False), torch.nn.BatchNorm2d(32))

    ours, theirs = ResidualBlock(16, 32, stride=2, downsample=shortcut()), BasicBlock(16, 32, 2, shortcut())
    theirs.load_state_dict(ours.state_dict())  # strict: the same names and shapes
    x = torch.randn(4, 16, 8, 8)
    for mode in (True, False):
        torch.testing.assert_close(ours.train(mode)(x), theirs.train(mode)(x))


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_demo_comparison_trains_without_importing_torchvision_or_pandas():
    """What a cold start's first click waits for (the trainer's imports, the digits decoded in a fresh home, the
    demo's three runs built and a step of each) leaves torchvision and pandas out: importing them costs a second
    and half a second of CPU."""
    import subprocess
    import sys
    from pathlib import Path

    code = """import sys
from core.execution.jobs import JobManager
from core.store.runs import RunStore
from core.training.config import demo_comparison

manager = JobManager(RunStore(), threads=1)
manager.prepare_ahead(demo_comparison())
run_ids = [manager.create_run(cfg) for cfg in demo_comparison()]
manager.start(run_ids, steps=2)
manager.wait(120)
print(sorted({str(manager.snapshot(r).status) for r in run_ids}), 'torchvision' in sys.modules,
      'pandas' in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "['paused'] False False"
