"""Any torchvision or timm model by name: blocks found automatically, each parameter in exactly one block or the
head, the model trained around them, its pretrained weights read as the registered backbones' are."""

import hashlib
import importlib.util
import re

import pytest
import torch
import torchvision
from torch import nn

from core.__main__ import main
from core.models import auto_split, backbones, weights
from core.models.backbones import ModelConfig, get_spec
from core.models.network import build_model
from core.models.weights import WeightsUnavailable

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None,
                                reason="timm is an optional install (pip install -e '.[timm]')")
MAX_PARAMS = 100e6  # the whole-zoo test builds each model twice on the CPU: the largest few are left out for time


def _covered_once(raw: nn.Module, blocks: dict) -> None:
    """Every parameter of `raw` is in exactly one block, or else in the model's head (its children from the
    first head-like one on, and side heads named aux...)."""
    owner: dict[int, str] = {}
    for name, block in blocks.items():
        for p in block.parameters():
            assert owner.setdefault(id(p), name) == name, f"a parameter in {owner[id(p)]} and {name}"
    _, head = auto_split.body_and_head(raw) if not auto_split.is_token_model(raw) else (None, [raw.head])
    in_head = {id(p) for h in head for p in h.parameters()}
    assert not in_head & set(owner), "a head parameter in a block"
    loose = [n for n, p in raw.named_parameters() if id(p) not in owner and id(p) not in in_head]
    assert loose == [], loose


def _splits(name: str) -> list[str]:
    spec = get_spec(name)
    with torch.random.fork_rng():
        raw = spec.build()
    blocks = spec.split(raw)
    _covered_once(raw, blocks)
    x = torch.rand(2, 3, spec.min_size, spec.min_size)
    with torch.no_grad():
        for block in blocks.values():
            x = block.eval()(x)
    assert x.dim() == 4 and x.shape[0] == 2  # a map FreezeLab's head pools
    return list(blocks)


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1",
                                  "regnet_x_400mf", "googlenet"])
def test_a_torchvision_model_by_name_splits_where_its_resolution_falls(name):
    blocks = _splits(f"torchvision:{name}")
    assert blocks[0] == "stem" and len(blocks) >= 4


@pytest.mark.slow
def test_every_torchvision_classification_model_splits_with_each_parameter_once():
    models = torchvision.models
    tried = []
    for name in models.list_models(module=models):
        if next(iter(models.get_model_weights(name))).meta["num_params"] > MAX_PARAMS:
            continue
        tried.append(name)
        assert len(_splits(f"torchvision:{name}")) >= 3, name
    assert len(tried) >= 60


def test_a_registered_name_keeps_its_splitter_and_an_unknown_name_is_said_in_one_sentence(capsys):
    assert get_spec("torchvision:resnet18") is get_spec("resnet18")
    with pytest.raises(ValueError, match="torchvision has no classification model 'resnet7'"):
        get_spec("torchvision:resnet7")
    with pytest.raises(ValueError, match="torchvision:<name> or timm:<name>"):
        get_spec("densenet121")
    with pytest.raises(SystemExit):
        main(["train", "--backbone", "torchvision:resnet7"], prog="freezelab")
    assert "no classification model 'resnet7'" in capsys.readouterr().err


def test_a_vision_transformer_splits_into_its_embedding_and_depth_groups():
    assert _splits("torchvision:vit_b_32") == ["embed", "blocks_1_3", "blocks_4_6", "blocks_7_9", "blocks_10_12"]


def test_a_torchvision_vit_is_built_for_the_size_its_default_weights_were_trained_at():
    with torch.device("meta"):  # ViT-H/14 without memory: its shapes are what is checked
        model = backbones._torchvision_build("vit_h_14")
    assert model.image_size == get_spec("torchvision:vit_h_14").min_size == 518  # SWAG weights: 518 px, not 224
    assert model.encoder.pos_embedding.shape[1] == (518 // 14) ** 2 + 1  # the weights' position embedding fits


def test_a_model_whose_forward_works_between_its_parts_is_refused_with_the_reason():
    class Doubler(nn.Module):  # its forward joins a part's output to itself before the next part
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(3, 4, 3, 2), nn.Conv2d(8, 8, 3, 2), nn.Linear(8, 2)

        def forward(self, x):
            x = self.a(x)
            return self.fc(self.b(torch.cat([x, x], 1)).mean((2, 3)))

    with pytest.raises(auto_split.SplitRefused, match="parts do not run one after another"):
        auto_split.split(Doubler(), 32)

    class TokenAdder(nn.Module):  # a parameter of its own, used between its parts
        def __init__(self):
            super().__init__()
            self.conv, self.extra, self.fc = nn.Conv2d(3, 4, 3, 2), nn.Parameter(torch.zeros(1)), nn.Linear(4, 2)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x) + self.extra).flatten(1))

    with pytest.raises(auto_split.SplitRefused, match=r"parameters outside its parts \(extra\)"):
        auto_split.split(TokenAdder(), 32)


def test_a_named_model_trains_around_its_blocks_with_its_normalisation():
    net = build_model(ModelConfig("torchvision:mobilenet_v3_small", weights="none"), num_classes=3, image_size=32)
    assert net.block_names == list(backbones.block_names("torchvision:mobilenet_v3_small"))
    assert torch.allclose(net.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert sum(p.numel() for p in net.head.parameters()) < 10_000  # the ImageNet classifier was replaced


def test_named_torchvision_weights_load_from_the_cache_and_say_where_they_belong_when_missing(
        isolated_homes, no_network, monkeypatch):
    url, file = weights.torchvision_checkpoint("shufflenet_v2_x0_5")
    with pytest.raises(WeightsUnavailable, match=re.escape(str(file))):  # where torchvision keeps it, said
        build_model(ModelConfig("torchvision:shufflenet_v2_x0_5"), num_classes=3)
    torch.manual_seed(5)
    state = torchvision.models.shufflenet_v2_x0_5().state_dict()
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, file)
    standin = file.with_name(f"shufflenetv2_x0.5-{hashlib.sha256(file.read_bytes()).hexdigest()[:8]}.pth")
    file.rename(standin)
    asked = []
    monkeypatch.setattr(weights, "torchvision_checkpoint", lambda name: asked.append(name) or (url, standin))
    net = build_model(ModelConfig("torchvision:shufflenet_v2_x0_5"), num_classes=3, image_size=32)
    assert asked == ["shufflenet_v2_x0_5"] and len(no_network) == 1  # the library's name; one try while missing
    assert torch.equal(net.blocks["stem"].conv1_0.weight, state["conv1.0.weight"])
    assert torch.equal(net.blocks["stage3"][0].branch1[0].weight, state["stage3.0.branch1.0.weight"])


@needs_timm
@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "efficientnet_b0", "mobilenetv3_small_100",
                                  "regnetx_002", "deit_tiny_patch16_224"])
def test_a_sample_of_timm_families_splits_by_its_stages_with_each_parameter_once(name):
    blocks = _splits(f"timm:{name}")
    if name.startswith("deit"):  # tokens: the embedding, then the transformer blocks by depth
        assert blocks == ["embed", "blocks_1_3", "blocks_4_6", "blocks_7_9", "blocks_10_12"]
    else:
        assert blocks[0] == "stem" and len(blocks) >= 4
