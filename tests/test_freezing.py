import math

import pytest
import torch
from torch import nn

from core.freezing import FreezePlan, apply, audit, backbone_layers, recipes_for
from core.models.backbones import ModelConfig
from core.models.network import build_model, count_params
from core.training.config import OptimConfig
from core.training.loop import make_optimizer

BACKBONES = ["resnet18", "vgg16", "demo"]
HAS_BN = {"resnet18": True, "vgg16": False, "demo": True}


def _net(name: str, **kw):
    return build_model(ModelConfig(name, weights="none"), num_classes=3, image_size=32, **kw)


@pytest.fixture(scope="module", params=BACKBONES)
def backbone(request):
    return request.param


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@pytest.mark.parametrize("key", list(recipes_for(["a", "b", "c", "d", "e"])))
def test_each_preset_gives_the_pattern_it_promises(backbone, key):
    net = _net(backbone)
    recipe = recipes_for(net.block_names)[key]
    for phase in recipe.phases:
        plan = phase.plan
        apply(net, plan).train()
        optimizer = make_optimizer(net, OptimConfig(lr=1e-3), lr=phase.lr)
        table = audit(net, optimizer).set_index("block")

        blocks = net.block_names
        assert list(table.index) == [*blocks, "head"]
        for block in blocks:
            row = table.loc[block]
            trains = block in plan.trainable
            assert row["requires_grad"] == ("all" if trains else "none"), (key, block)
            assert row["in_optimizer"] == ("all" if trains else "none"), (key, block)
            assert row["trainable"] == (row["params"] if trains else 0)
            if HAS_BN[backbone]:
                assert row["bn_mode"] == ("train" if trains else "eval"), (key, block)
            else:
                assert row["bn_mode"] == "—"
            if trains:
                assert row["lr"] == pytest.approx(phase.lr or 1e-3)
            else:
                assert math.isnan(row["lr"])
        assert table.loc["head", "requires_grad"] == "all" and table.loc["head", "in_optimizer"] == "all"

    if key == "feature_extraction":
        assert table["trainable"].sum() == table.loc["head", "params"]
    if key == "fine_tune_top":
        assert plan.trainable == tuple(net.block_names[-2:])
    if key == "two_phase":
        first, second = recipe.phases
        assert first.plan.trainable == () and first.epochs == 3
        assert second.plan.trainable == tuple(net.block_names) and second.lr == 1e-5
    if key == "from_scratch":
        assert recipe.weights == "none"
    if key == "truncated":
        kept = {"vgg16": ["block1", "block2", "block3"]}.get(backbone, ["stem", "layer1", "layer2"])
        assert net.block_names == kept


@pytest.mark.parametrize(("name", "after", "channels"), [("resnet18", "layer2", 128), ("vgg16", "block3", 256),
                                                          ("demo", "layer2", 32)])
@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_truncation_drops_later_blocks_and_the_head_still_fits(name, after, channels):
    net = _net(name)
    apply(net, FreezePlan.freeze(truncate_after=after))
    assert net.block_names[-1] == after
    assert net.head[-1].in_features == channels
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert set(map(id, net.parameters())) == {id(p) for m in [*net.blocks.values(), net.head] for p in m.parameters()}
    apply(net, FreezePlan.unfreeze(net.block_names, truncate_after=after))  # same truncation again is fine
    with pytest.raises(ValueError, match=r"Cannot truncate after '(layer4|block5)'"):
        apply(net, FreezePlan.freeze(truncate_after="layer4" if name != "vgg16" else "block5"))


def _bn_layers(block: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]


def test_batchnorm_policies_in_frozen_blocks():
    net = _net("resnet18")
    apply(net, FreezePlan.freeze_to(net.block_names, -1)).train()
    assert all(not m.training for m in _bn_layers(net.blocks["layer1"]))
    assert all(m.training for m in _bn_layers(net.blocks["layer4"]))
    net.eval()
    net.train()  # train() must not wake frozen BatchNorm up
    assert all(not m.training for m in _bn_layers(net.blocks["layer1"]))

    apply(net, FreezePlan.freeze_to(net.block_names, -1, bn="stats")).train()
    assert all(m.training for m in _bn_layers(net.blocks["layer1"]))
    assert not any(p.requires_grad for p in net.blocks["layer1"].parameters())
    assert audit(net).set_index("block").loc["layer1", "bn_mode"] == "train"

    apply(net, FreezePlan.freeze_to(net.block_names, -1, bn="affine")).train()
    layer1 = net.blocks["layer1"]
    assert all(not m.training for m in _bn_layers(layer1))
    assert all(m.weight.requires_grad and m.bias.requires_grad for m in _bn_layers(layer1))
    assert not layer1[0].conv1.weight.requires_grad
    assert audit(net).set_index("block").loc["layer1", "requires_grad"] == "partial"


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_last_n_layers_form_and_lr_multipliers():
    net = _net("vgg16")
    layers = backbone_layers(net)
    assert len(layers) == 13  # VGG16's thirteen convolutions
    apply(net, FreezePlan(last_layers=4))
    trainable = [n for n, m in net.blocks.named_modules(prefix="blocks") if n in layers and m.weight.requires_grad]
    assert trainable == layers[-4:]
    table = audit(net).set_index("block")
    assert table.loc["block4", "requires_grad"] == "partial" and table.loc["block5", "requires_grad"] == "all"
    assert table.loc["block3", "requires_grad"] == "none"

    plan = FreezePlan.unfreeze(net.block_names, lr_mult=(("block1", 0.0), ("block5", 10.0)))
    apply(net, plan)
    lrs = audit(net, make_optimizer(net, OptimConfig(lr=1e-4))).set_index("block")["lr"]
    assert lrs["block1"] == 0.0 and lrs["block5"] == pytest.approx(1e-3) and lrs["block3"] == pytest.approx(1e-4)


def test_bad_plans_are_refused_in_words():
    net = _net("demo")
    with pytest.raises(ValueError, match="not in this"):
        apply(net, FreezePlan(trainable=("layer9",)))
    with pytest.raises(ValueError, match="BatchNorm policy"):
        apply(net, FreezePlan(bn="sometimes"))
    with pytest.raises(ValueError, match="not in this"):
        apply(net, FreezePlan(trainable=("layer4",), truncate_after="layer2"))
    apply(net, FreezePlan.freeze())
    for p in net.head.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="Nothing to train"):
        make_optimizer(net, OptimConfig())


def test_an_optimizer_for_a_model_no_plan_was_applied_to_trains_everything():
    net = build_model(ModelConfig("demo", "none"), 5)
    assert net.plan is None
    opt = make_optimizer(net, OptimConfig(lr=0.01))
    assert [g["name"] for g in opt.param_groups] == [*net.block_names, "head"]
    assert {g["lr"] for g in opt.param_groups} == {0.01}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == count_params(net)


def test_the_model_records_the_plan_applied_to_it():
    net = build_model(ModelConfig("demo", "none"), 5)
    plan = FreezePlan.freeze_to(net.block_names, -1)
    apply(net, plan)
    assert net.plan == plan and net.keep_eval  # BatchNorm of the frozen blocks
    net.train()
    assert not net.blocks["layer1"].bn1.training and net.blocks["layer4"].bn1.training


def test_a_plan_is_matched_to_the_preset_that_trains_the_same_blocks():
    from core.freezing import FreezePlan, matching_preset, recipes_for

    blocks = ["stem", "layer1", "layer2", "layer3", "layer4"]
    recipes = recipes_for(blocks)
    assert matching_preset(FreezePlan(trainable=("layer3", "layer4")), recipes) == "fine_tune_top"
    assert matching_preset(FreezePlan(trainable=("layer3", "layer4"), bn="stats"), recipes) == "fine_tune_top"
    assert matching_preset(FreezePlan.freeze(), recipes) == "feature_extraction"
    assert matching_preset(FreezePlan.freeze(truncate_after="layer2"), recipes) == "truncated"
    assert matching_preset(FreezePlan(trainable=("layer4",)), recipes) is None  # custom
