"""The bundled demo net: small, documented, and good at the task it was pretrained on."""

import json

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
