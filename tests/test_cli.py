import json

import torch

from core import zoo
from core.__main__ import main
from core.backbones import ModelConfig, build_model


def test_pretrain_writes_a_zoo_entry_that_loads(capsys):
    assert main(["pretrain", "--epochs", "2", "--name", "tiny"]) == 0
    folder = zoo.entry_dir("tiny")
    assert folder is not None and folder.parent == zoo.roots()[0]
    manifest = json.loads((folder / zoo.MANIFEST).read_text())
    assert manifest["command"] == "python -m core pretrain --epochs 2 --name tiny"
    assert manifest["epochs"] == 2 and manifest["heldout_images"] == 500
    assert manifest["source_accuracy"] > 0.8  # two epochs already learn digits far above chance (0.2)
    net = build_model(ModelConfig("demo", weights="zoo:tiny"), num_classes=2)
    saved = torch.load(folder / zoo.CHECKPOINT, weights_only=True)["state_dict"]
    assert torch.equal(net.blocks["stem"][0].weight, saved["blocks.stem.0.weight"])
    assert "held-out accuracy" in capsys.readouterr().out


def test_backbones_command_lists_the_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "demo" in out and "ImageNet" in out


def test_train_runs_the_demo_comparison_end_to_end(capsys):
    from core.runs import RunStore

    assert main(["train", "--epochs", "2", "--per-class", "10"]) == 0
    out = capsys.readouterr().out
    for label in ("Feature extraction", "Fine-tune the top 2 blocks", "From scratch"):
        assert label in out
    runs = RunStore().runs()
    assert len(runs) == 3 and set(runs.status) == {"finished"} and set(runs.epochs) == {2}
    fe = runs.set_index("label").loc["Feature extraction"]
    assert fe.trainable == 645 and fe.params > 300_000  # the head only: 128 * 5 + 5


def test_train_refuses_an_unknown_preset(capsys):
    assert main(["train", "--preset", "freeze_half"]) == 2
    assert "Unknown presets" in capsys.readouterr().err


def test_lr_find_prints_the_sweep_and_a_suggestion(capsys):
    assert main(["lr-find", "--preset", "feature_extraction", "--steps", "20", "--per-class", "10"]) == 0
    out = capsys.readouterr().out
    suggested = float(out.split("suggested learning rate for Feature extraction: ")[1].split()[0])
    assert 1e-7 < suggested < 1.0 and "the preset's own: 0.01" in out
    assert main(["lr-find", "--preset", "freeze_half"]) == 2
