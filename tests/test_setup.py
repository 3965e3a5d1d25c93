"""The setup carried in a URL: what a link encodes opens the same setup, and a bad value is said, not used."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.datasets import DataConfig
from core.freezing import BN_POLICIES, FreezePlan
from core.links import IMAGE_SIZES, PER_CLASS_CHOICES, Setup, describe, from_query, to_query
from core.models.backbones import ModelConfig, block_names, list_backbones
from core.runtime import paths


def test_a_fresh_start_is_a_bare_url_and_reads_back_as_itself():
    assert to_query(Setup()) == {}
    assert from_query({}) == (Setup(), [])


@settings(max_examples=60, deadline=None)
@given(backbone=st.sampled_from(list_backbones()), weights=st.sampled_from(["pretrained", "none", "zoo:x"]),
       bn=st.sampled_from(list(BN_POLICIES)), size=st.sampled_from(IMAGE_SIZES),
       per_class=st.one_of(st.none(), st.sampled_from(PER_CLASS_CHOICES)),
       source=st.sampled_from(["demo", "cifar10", "folder"]), data=st.data())
def test_every_setup_survives_the_round_trip_through_its_link(backbone, weights, bn, size, per_class, source, data):
    blocks = block_names(backbone)
    trainable = data.draw(st.lists(st.sampled_from(blocks), unique=True))
    folder = str(paths.data_dir() / "x") if source == "folder" else ""  # a link may name only a shared folder
    setup = Setup(DataConfig(source=source, path=folder, image_size=size, per_class=per_class),
                  ModelConfig(backbone, weights),
                  FreezePlan(trainable=tuple(b for b in blocks if b in trainable), bn=bn))
    params = to_query(setup)
    assert all(isinstance(v, str) for v in params.values())
    assert from_query(params) == (setup, [])


def test_a_preset_in_a_link_gives_its_plan_and_explicit_blocks_win_over_it():
    setup, problems = from_query({"backbone": "resnet18", "preset": "fine_tune_top", "bn": "stats"})
    assert not problems and setup.plan.trainable == ("layer3", "layer4") and setup.plan.bn == "stats"
    setup, _ = from_query({"backbone": "resnet18", "preset": "fine_tune_top", "train": "layer4"})
    assert setup.plan.trainable == ("layer4",)


def test_what_a_link_gets_wrong_is_said_and_the_rest_still_applies():
    setup, problems = from_query({"backbone": "resnet999", "size": "huge", "bn": "frozen", "train": "layer9",
                                  "weights": "http://evil", "per_class": "0", "data": "imagenet", "unrelated": "x"})
    assert setup == Setup()  # nothing bad was used; the unknown key is someone else's
    said = " ".join(problems)
    for key in ("backbone='resnet999'", "size='huge'", "train='layer9'", "weights='http://evil'", "per_class='0'",
                "data='imagenet'"):
        assert key in said
    assert "resnet18" in said and "layer4" in said  # what would have worked
    assert len(problems) == 6


def test_describe_says_each_part_in_words():
    lines = describe(Setup(plan=FreezePlan(trainable=("layer4",), bn="stats")))
    assert lines["Trainable"] == "layer4" and lines["BatchNorm"] == "stats"
    assert lines["Data"].startswith("offline demo (digits 5-9)") and lines["Backbone"] == "demo"
    assert describe(Setup())["Trainable"] == "none (feature extraction)"


def test_a_link_sets_only_what_the_data_page_offers_and_no_path_too_long_to_name_a_folder():
    setup, problems = from_query({"size": "33", "per_class": "7", "path": "x" * 5000, "data": "folder"})
    assert setup.data == DataConfig(source="folder")  # the Data page can show all of it
    said = " ".join(problems)
    assert "size='33'" in said and "28, 32, 48" in said and "per_class='7'" in said
    assert "at most 4095 characters" in said and len(said) < 1000  # the long path is not echoed whole
    assert from_query({"size": "64", "per_class": "50"})[0].data == DataConfig(image_size=64, per_class=50)
    wide = from_query({"backbone": "torchvision:swin_v2_t", "size": "256"})[0]  # its own size, above 224
    assert wide.data.image_size == 256 and wide.model.backbone == "torchvision:swin_v2_t"


def test_a_comparison_survives_its_link_and_a_bent_one_is_refused_in_words(tmp_path):
    import base64
    import zlib

    from core.links import comparison_from_query, comparison_to_query
    from core.training.config import demo_comparison

    configs = demo_comparison(epochs=3)
    value = comparison_to_query(configs)
    assert comparison_from_query(value) == (configs, [])
    bomb = base64.urlsafe_b64encode(zlib.compress(b"[" + b" " * (5 << 20) + b"]", 9)).decode()
    outside = comparison_to_query([dataclasses.replace(configs[0], data=DataConfig(source="folder",
                                                                                   path=str(tmp_path)))])
    unknown = base64.urlsafe_b64encode(zlib.compress(b'[{"epoch": 3}]')).decode()
    huge = comparison_to_query([dataclasses.replace(configs[0], model=ModelConfig("torchvision:vit_h_14"))])
    for bent, said in ((value[:-9], "not a comparison FreezeLab wrote"), (bomb, "unpacks to more than"),
                       (outside, "does not share"), (unknown, "config has no key 'epoch'"),
                       (huge, "vit_h_14 has 633 M parameters; this server builds models of up to 100 M"),
                       ("x" * 20_000, "longer than"), (comparison_to_query(configs * 5), "1 to 12 runs")):
        got, problems = comparison_from_query(bent)
        assert got == [] and len(problems) == 1 and said in problems[0], (said, problems)
