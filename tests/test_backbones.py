import pytest
import torch
from torch import nn

from core.models.backbones import HeadConfig, ModelConfig, get_spec, list_backbones
from core.models.network import FreezeLabNet, build_head, build_model

REQUIRED = {"resnet18", "resnet50", "vgg16", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "demo"}
EXPECTED_BLOCKS = {
    "resnet18": ["stem", "layer1", "layer2", "layer3", "layer4"],
    "vgg16": ["block1", "block2", "block3", "block4", "block5"],
    "demo": ["stem", "layer1", "layer2", "layer3", "layer4"],
}


def test_registry_has_the_required_backbones():
    assert set(list_backbones()) >= REQUIRED
    with pytest.raises(ValueError, match="Unknown backbone 'resnet9'"):
        get_spec("resnet9")


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
@pytest.mark.parametrize("name", list_backbones())
def test_backbone_builds_splits_and_runs(name):
    size = max(32, get_spec(name).min_size)
    net = build_model(ModelConfig(name, weights="none"), num_classes=7, image_size=size)
    assert isinstance(net, FreezeLabNet)
    if name in EXPECTED_BLOCKS:
        assert net.block_names == EXPECTED_BLOCKS[name]
    assert len(net.block_names) >= 4
    assert tuple(net.block_names) == get_spec(name).blocks  # the registry declares what the splitter gives

    # The blocks and the head cover every parameter of the model exactly once.
    parts = [*net.blocks.values(), net.head]
    ids = [id(p) for part in parts for p in part.parameters()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}
    assert all(sum(p.numel() for p in block.parameters()) > 0 for block in net.blocks.values())

    net.eval()
    with torch.no_grad():
        out = net(torch.rand(3, 3, size, size))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_head_builder_makes_the_layers_asked_for():
    # Keras-style head from the reports: Flatten, Dense 128 ReLU, Dropout, output.
    head = build_head((64, 4, 4), 10, HeadConfig(pool="flatten", hidden=(128,), dropout=0.5))
    kinds = [type(m) for m in head]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert head[1].in_features == 64 * 4 * 4 and head[1].out_features == 128
    assert head[3].p == 0.5 and head[4].out_features == 10

    plain = build_head((64, 4, 4), 3, HeadConfig())
    assert [type(m) for m in plain] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    assert plain[2].in_features == 64

    two = build_head((8, 1, 1), 2, HeadConfig(hidden=(32, 16)))
    assert [m.out_features for m in two if isinstance(m, nn.Linear)] == [32, 16, 2]
    assert build_head((8, 1, 1), 2, HeadConfig(dropout=0.2))[-2].p == 0.2
    with pytest.raises(ValueError, match="pooling"):
        build_head((8, 1, 1), 2, HeadConfig(pool="max"))


def test_flatten_head_fits_the_image_size():
    net = build_model(ModelConfig("demo", weights="none", head=HeadConfig(pool="flatten", hidden=(32,))),
                      num_classes=3, image_size=28)
    assert net.head[1].in_features == 128 * 4 * 4  # three stride-2 layers: 28 -> 14 -> 7 -> 4
    assert net(torch.rand(2, 3, 28, 28)).shape == (2, 3)


def test_model_normalises_with_its_weights_statistics():
    net = build_model(ModelConfig("resnet18", weights="none"), num_classes=2, image_size=32).eval()
    x = torch.rand(1, 3, 32, 32)
    expected = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net.features(x, 0, 1), net.blocks["stem"](expected), atol=1e-6)


def test_too_few_classes_is_refused():
    with pytest.raises(ValueError, match="at least two classes"):
        build_model(ModelConfig("demo", weights="none"), num_classes=1)


def test_the_registry_refuses_a_taken_name_and_the_demo_registers_like_the_others():
    from core.models import backbones

    before = {n: get_spec(n) for n in list_backbones()}
    with pytest.raises(ValueError, match="'demo' is registered already"):
        backbones.register_backbone("demo", family="mine", build=nn.Identity, image_size=8, pretrained="")(dict)
    with pytest.raises(ValueError, match="'resnet18' is registered already"):
        backbones.register_torchvision("resnet18", family="mine", blocks=("stem",))(dict)
    assert {n: get_spec(n) for n in list_backbones()} == before  # nothing was overwritten
    demo = get_spec("demo")
    assert demo.split is backbones._split_children and demo.weights_from == "zoo:demo-digits04"


def test_building_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    a = build_model(ModelConfig("demo", "none"), 5, seed=7)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream went on as if nothing was built
    b = build_model(ModelConfig("demo", "none"), 5, seed=7)
    c = build_model(ModelConfig("demo", "none"), 5, seed=8)
    assert torch.equal(a.head[-1].weight, b.head[-1].weight)
    assert not torch.equal(a.head[-1].weight, c.head[-1].weight)
