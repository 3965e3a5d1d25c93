"""Every rule on a run's settings has one owner (core/training/rules.py, and core.freezing for a plan's): each door
(a link, JSON, the command line's values, a page) reads a value through the same rule and says the same sentence,
and a new run is checked whole, with this server's bounds, before anything is made of it."""

import dataclasses
import json

import pytest
import torch

from core import freezing, links
from core.data.datasets import MAX_IMAGE_SIZE, DataConfig
from core.freezing import FreezePlan, Phase, recipes_for
from core.models import backbones, own
from core.models.backbones import HeadConfig, ModelConfig, block_names
from core.store.runs import RunStore, config_from_json, config_to_json
from core.training import rules
from core.training.config import (
    CURRENT,
    DEMO_OPTIM,
    ConfigInvalid,
    OptimConfig,
    RunConfig,
    comparison,
    demo_comparison,
    validate_new_run,
)
from core.training.rules import MAX_EPOCHS
from tests.test_links import page  # noqa: F401 (a fixture: the page test's warm-up ends before the process)
from tests.test_own_model import EXAMPLE

DEMO = demo_comparison()[0]


def _with(**changes) -> RunConfig:
    """The demo's feature-extraction run with some of its parts changed (data=..., model=..., epochs=...)."""
    return dataclasses.replace(DEMO, **changes)


# --- one rule, one sentence, whichever door ------------------------------------------------------------------


def test_the_batchnorm_policy_is_refused_in_the_same_sentence_by_every_door():
    said = "The BatchNorm policy is one of frozen, stats, affine, not 'sometimes'."
    with pytest.raises(ValueError) as plan_err:  # a plan applied to a model
        freezing.check_plan(FreezePlan(bn="sometimes"), block_names("demo"))
    with pytest.raises(ConfigInvalid) as typed:  # typed by a person (a link, a flag)
        rules.bn_policy("sometimes")
    plain = json.loads(config_to_json(_with(phases=(Phase(FreezePlan(bn="sometimes")),))))
    with pytest.raises(ConfigInvalid) as stored:  # JSON: `train --config`, the run store
        config_from_json(json.dumps(plain))
    _, problems = links.from_query({"bn": "sometimes"})
    assert str(plan_err.value) == str(typed.value) == str(stored.value) == said
    assert problems == [f"The link's bn='sometimes' was not used: the{said.removeprefix('The')}"]
    assert rules.bn_policy("stats") == "stats"


@pytest.mark.parametrize(("text", "widths"), [("128", (128,)), ("128, 64", (128, 64)), (" 32 ,16,", (32, 16)),
                                              ("", ())])
def test_head_widths_are_read_by_one_parser(text, widths):
    assert rules.head_widths(text) == widths


@pytest.mark.parametrize("text", ["0", "-1", "12a", "1e3", "3.5", "٣", "²", "9000", ",".join(["8"] * 9)])
def test_head_widths_no_head_can_have_are_refused_in_one_sentence(text):
    with pytest.raises(ConfigInvalid, match=r"Hidden layers must be|A head has at most 8 hidden layers") as err:
        rules.head_widths(text)
    assert "\n" not in str(err.value)


def test_an_image_size_is_from_the_loaders_floor_to_its_bound_and_at_least_the_backbones_smallest():
    assert rules.image_size(None, "resnet18") == 64 and rules.image_size(None, "demo") == 28  # their own sizes
    assert rules.image_size(8) == 8 and rules.image_size(MAX_IMAGE_SIZE) == MAX_IMAGE_SIZE == 1024
    for size in (7, 1025, 1_000_000, 10**400):
        with pytest.raises(ConfigInvalid, match="The image size is 8 to 1024 pixels a side") as err:
            rules.image_size(size)
        assert len(str(err.value)) < 120  # a number of 400 digits is cut
    with pytest.raises(ConfigInvalid, match="vgg16 needs images of at least 32 pixels a side, not 28"):
        rules.image_size(28, "vgg16")
    assert rules.image_size(1_000_000, bounded=False) == 1_000_000  # a run stored before keeps reading


def test_epochs_are_one_to_the_train_forms_bound():
    assert rules.epochs(1) == 1 and rules.epochs(MAX_EPOCHS) == MAX_EPOCHS == 500
    for n in (0, -1, 501, 10**12):
        with pytest.raises(ConfigInvalid, match="A run lasts 1 to 500 epochs"):
            rules.epochs(n)
    assert rules.epochs(10**12, bounded=False) == 10**12
    with pytest.raises(ConfigInvalid, match="1 or more epochs, not 0"):
        rules.epochs(0, bounded=False)


@pytest.mark.parametrize(("text", "ok"), [("pretrained", True), ("none", True), ("zoo:demo-digits04", True),
                                          ("file:/srv/w.pt", True), ("http://evil", False), ("zoo:../../etc", False),
                                          ("zoo:", False), ("file:", False), ("file:" + "w" * 5000, False)])
def test_weights_are_named_one_of_four_ways(text, ok):
    if ok:
        assert rules.weights(text) == text
    else:
        with pytest.raises(ConfigInvalid) as err:
            rules.weights(text)
        assert len(str(err.value)) < 400  # a path of 5,000 characters is cut


@pytest.mark.parametrize("text", ["²", "٣", "+3", " 3", "3.0", "", "9" * 5000])
def test_a_whole_number_in_a_link_is_ascii_digits_only(text):
    with pytest.raises(ConfigInvalid, match="is a whole number") as err:
        rules.whole_number(text, "The image size")
    assert len(str(err.value)) < 120
    assert rules.whole_number("32", "The image size") == 32


@pytest.mark.parametrize("name", ["torchvision:maskrcnn_resnet50_fpn", "torchvision:raft_large",
                                  "torchvision:__import__", "timm:../../x", "timm:resnet18.nosuchtag",
                                  "own:model.factory", "resnet999", "x" * 5000, ""])
def test_a_name_that_is_no_backbone_here_is_refused_in_one_sentence(name):
    assert not backbones.known(name)  # timm's RuntimeError for an unknown weights tag included
    with pytest.raises(ConfigInvalid) as err:
        rules.backbone_spec(name)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_a_plan_typed_as_text_is_read_against_the_backbones_blocks():
    assert rules.freeze_plan("demo", "layer4, layer3", "stats", ["layer4=0.1"]) == FreezePlan(
        trainable=("layer3", "layer4"), bn="stats", lr_mult=(("layer4", 0.1),))
    assert rules.freeze_plan("resnet18", truncate_after="layer2") == FreezePlan(truncate_after="layer2")
    for kw, said in (({"trainable_blocks": "layer9"}, "demo has no block 'layer9'; its blocks are stem, layer1"),
                     ({"bn": "x"}, "The BatchNorm policy is one of"),
                     ({"mults": ["layer4"]}, "A learning-rate multiplier is BLOCK=FACTOR"),
                     ({"mults": ["layer4=nan"]}, "Learning-rate multipliers must be 0 or more"),
                     ({"mults": ["layer4=-1"]}, "Learning-rate multipliers must be 0 or more"),
                     ({"truncate_after": "layer9"}, "demo has no block 'layer9'"),
                     ({"trainable_blocks": "layer4", "truncate_after": "layer2"}, "Blocks 'layer4' are not in this"),
                     ({"last_layers": -1}, "last_layers must be 0 or more")):
        with pytest.raises(ConfigInvalid, match=said):
            rules.freeze_plan("demo", **kw)


# --- a new run, checked whole -----------------------------------------------------------------------------------


def test_a_stored_config_keeps_reading_where_a_new_run_is_held_to_the_servers_bounds():
    long = _with(epochs=600)
    assert config_from_json(config_to_json(long)) == long  # read back: made before the bound
    with pytest.raises(ConfigInvalid, match="A run lasts 1 to 500 epochs, not 600"):
        validate_new_run(long)
    validate_new_run(DEMO)


@pytest.fixture
def own_models(monkeypatch):
    """A registry of this test's own, as tests/test_own_model.py keeps one."""
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))


@pytest.mark.parametrize(("changes", "said"), [
    ({"epochs": 10**12}, "A run lasts 1 to 500 epochs, not 1000000000000."),
    ({"epochs": 0}, "A run lasts 1 to 500 epochs, not 0."),
    ({"data": DataConfig(image_size=1_000_000)}, "The image size is 8 to 1024 pixels a side, not 1000000."),
    ({"model": ModelConfig("own:own_model.tiny_cnn", "none")}, "No model 'own:own_model.tiny_cnn' here"),
    ({"model": ModelConfig("demo", "file:/etc/passwd")}, "'/etc/passwd' is not a weights file"),
    ({"model": ModelConfig("demo", "file:/nowhere/w.pt")}, "No weights file at '/nowhere/w.pt'"),
    ({"model": ModelConfig("demo", "zoo:nowhere")}, "The model zoo has no entry 'nowhere'"),
    ({"model": ModelConfig("demo", head=HeadConfig(hidden=(10**6,)))}, "A head has at most 8 hidden layers"),
    ({"data": DataConfig(source="folder", path="/nowhere")}, "Image folder '/nowhere' does not exist"),
    ({"phases": (Phase(FreezePlan(trainable=("layer9",))),)}, "Blocks 'layer9' are not in this"),
    ({"optim": OptimConfig(batch_size=10**9)}, "The batch size is 1 to 4,096"),
    ({"seed": 2**70}, "Seeds are whole numbers from 0 to 4,294,967,295"),
])
def test_a_new_run_no_server_should_make_is_refused_before_it_is_stored(own_models, changes, said):
    cfg = _with(**changes)
    with pytest.raises(ConfigInvalid) as err:
        validate_new_run(cfg)
    assert str(err.value).startswith(said) and "\n" not in str(err.value)


def test_an_own_network_is_a_backbone_only_where_the_operator_registered_it(own_models):
    cfg = _with(model=ModelConfig("own:own_model.tiny_cnn", "none"))
    with pytest.raises(ConfigInvalid, match="named by the operator"):
        validate_new_run(cfg)
    own.register(f"{EXAMPLE}:tiny_cnn")
    validate_new_run(cfg)


def test_a_weights_file_pytorch_wrote_passes(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    validate_new_run(_with(model=ModelConfig("demo", f"file:{tmp_path / 'w.pt'}")))


# --- one way to make a comparison -----------------------------------------------------------------------------


def test_a_comparison_is_made_one_way_with_the_current_plan_first_and_each_recipe_at_its_own_rate():
    blocks = block_names("demo")
    recipes = recipes_for(blocks)
    plan = FreezePlan(trainable=("layer4",), bn="stats")
    optim = OptimConfig(lr=1e-3, batch_size=20)
    configs = comparison(recipes, ["fine_tune_top", CURRENT, "feature_extraction"], plan=plan, bn=plan.bn,
                         data=DataConfig(), optim=optim, epochs=4, seed=3)
    assert [c.label for c in configs] == ["Current plan: layer4 train · BN stats · lr 0.001",
                                          "Fine-tune the top 2 blocks", "Feature extraction"]
    assert [c.start_lr for c in configs] == [1e-3, 3e-3, 1e-2]  # each suited to what it trains
    assert {(c.epochs, c.seed, c.optim, c.data) for c in configs} == {(4, 3, optim, DataConfig())}  # same budget
    assert {p.plan.bn for c in configs for p in c.phases} == {"stats"}  # the Layers page's policy, held equal
    same = comparison(recipes, [CURRENT, "fine_tune_top"], plan=plan, same_lr=0.05, optim=optim)
    assert [c.start_lr for c in same] == [0.05, 0.05]


@pytest.mark.parametrize(("keys", "fields", "said"), [
    (["freeze_half"], {}, "No preset 'freeze_half'; choose from feature_extraction"),
    ([], {}, "A comparison needs at least one run"),
    ([CURRENT], {}, "no plan was given"),
    (["fine_tune_top"], {"epochs": 10**12}, "A run lasts 1 to 500 epochs"),
    (["fine_tune_top"], {"data": DataConfig(image_size=100_000)}, "The image size is 8 to 1024"),
    (["fine_tune_top"], {"model": ModelConfig("demo", "file:/etc/passwd")}, "is not a weights file"),
])
def test_a_comparison_no_run_of_which_could_be_made_is_refused_in_one_sentence(keys, fields, said):
    with pytest.raises(ConfigInvalid, match=said):
        comparison(recipes_for(block_names("demo")), keys, optim=DEMO_OPTIM, **fields)
    assert RunStore().runs().empty


# --- the pages read through the same rules ------------------------------------------------------------------


@pytest.mark.usefixtures("page")
def test_the_layers_page_reads_head_widths_and_asks_for_a_weights_files_path_first():
    from tests.test_pages import _run

    at = _run("app_pages/layers.py")
    at.text_input(key="layers.hidden").input("64, 0")
    _run("", at)
    assert at.error[0].value == ("Hidden layers must be positive whole numbers separated by commas (128, 64), "
                                 "not '64, 0'.")
    at.text_input(key="layers.hidden").input("64, 32")
    _run("", at)
    assert at.session_state["setup.model"].head.hidden == (64, 32)
    at.radio(key="layers.weights.demo").set_value("file")
    _run("", at)
    said = " ".join(e.value for e in at.error)
    assert "Give the path of a weights file" in said and "does not share" not in said
