"""A link a hostile student crafts by hand breaks no page and makes no run the server should not: each value it
carries is read by the same rules as every other door (core/training/rules.py), what cannot be used is said in
one sentence, and what it carries is drawn as text."""

import dataclasses
import threading

import pytest

from core import links
from core.data.datasets import DataConfig
from core.models.backbones import ModelConfig
from core.store.runs import RunStore
from core.training.config import demo_comparison
from tests.test_pages import ENTRY, _run

HOSTILE_BACKBONES = ["torchvision:maskrcnn_resnet50_fpn", "torchvision:raft_large", "torchvision:__import__",
                     "timm:../../x", "timm:resnet18.nosuchtag", "own:model.factory"]


@pytest.fixture
def page():
    """A page test's app, left once its warm-up thread has ended: a process that exits while that thread is inside
    torch is aborted (and the test run with it)."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("freezelab-warm-up"):
            thread.join(120)


def _one_run_link(**changes) -> str:
    return links.comparison_to_query([dataclasses.replace(demo_comparison(epochs=1)[0], **changes)])


@pytest.mark.parametrize("backbone", HOSTILE_BACKBONES)
def test_a_link_naming_a_model_this_server_has_not_is_one_sentence_never_an_exception(backbone):
    configs, problems = links.comparison_from_query(_one_run_link(model=ModelConfig(backbone)))
    assert configs == [] and len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith("The link's comparison was not used: run 1: ")
    setup, problems = links.from_query({"backbone": backbone})
    assert setup.model.backbone == "demo" and len(problems) == 1
    assert problems[0].startswith(f"The link's backbone={backbone!r} was not used: ")


@pytest.mark.parametrize(("changes", "said"), [
    ({"epochs": 10**12}, "A run lasts 1 to 500 epochs, not 1000000000000"),
    ({"data": DataConfig(image_size=1_000_000)}, "The image size is 8 to 1024 pixels a side, not 1000000"),
    ({"model": ModelConfig("own:own_model.tiny_cnn", "none")}, "your own networks are named by the operator"),
    ({"model": ModelConfig("demo", "zoo:nowhere")}, "The model zoo has no entry 'nowhere'"),
])
def test_a_link_carrying_a_run_the_server_must_refuse_offers_nothing(changes, said):
    configs, problems = links.comparison_from_query(_one_run_link(**changes))
    assert configs == [] and len(problems) == 1 and said in problems[0], problems
    assert RunStore().runs().empty


def test_a_plain_links_values_are_read_by_the_same_rules_and_cut_to_a_readable_length():
    setup, problems = links.from_query({"size": "٣٢", "per_class": "²", "bn": "b" * 5000, "train": "layer9",
                                        "backbone": "x" * 5000})
    assert setup == links.Setup() and len(problems) == 5
    assert all(len(p) < 300 for p in problems), problems
    said = " ".join(problems)
    assert "size='٣٢' was not used: the image size is a whole number" in said
    assert "bn='bbbbbbbbbb" in said and "the BatchNorm policy is one of frozen, stats, affine" in said
    assert "demo has no block 'layer9'; its blocks are stem, layer1, layer2, layer3, layer4" in said


def test_the_train_page_draws_a_links_labels_as_text(page):
    image = "![x](http://elsewhere.example/pixel.png)"
    first, second = demo_comparison(epochs=1)[:2]
    value = links.comparison_to_query([dataclasses.replace(first, label=image),
                                       dataclasses.replace(second, label="**bold** <b>tag</b>", seed=1)])
    at = _run("app_pages/train.py", comparison=value)
    offered = next(m.value for m in at.markdown if m.value.startswith("**The link you opened carries"))
    assert image not in offered and r"!\[x\](http://elsewhere.example/pixel.png)" in offered
    assert r"\*\*bold\*\* \<b\>tag\</b\>" in offered
    held = next(c.value for c in at.caption if c.value.startswith("Held equal"))
    assert image not in held and r"!\[x\]" in held  # the labels name which run differs in what


def test_a_link_with_a_model_the_library_has_not_opens_the_app_and_says_so(page):
    at = _run(ENTRY, backbone="timm:resnet18.nosuchtag",
              comparison=_one_run_link(model=ModelConfig("torchvision:raft_large")))
    said = " ".join(t.value for t in at.toast)
    assert "backbone='timm:resnet18.nosuchtag' was not used" in said and "raft_large" in said
    assert at.session_state["setup.model"].backbone == "demo"
