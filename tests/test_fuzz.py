"""Property-based: whatever bytes or small images the image-folder and zip loaders are given, they load
what they can and refuse the rest in words (DataUnavailable, ArchiveRefused); whatever a hand-made link carries,
the link readers use it or say why in one sentence. No other error escapes."""

import base64
import copy
import dataclasses
import functools
import io
import json
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev requirement (requirements-dev.txt)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from core.data.archives import ArchiveRefused, extract_zip  # noqa: E402
from core.data.datasets import DataConfig, DataUnavailable, load_data  # noqa: E402

MODES = ["RGB", "L", "RGBA", "P", "1", "I;16", "CMYK", "LA"]
FORMATS = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF", "tif": "TIFF", "webp": "WEBP"}


@st.composite
def image_files(draw) -> tuple[str, bytes]:
    """A small image in a random mode and format, or random bytes under an image's name."""
    suffix = draw(st.sampled_from(list(FORMATS)))
    if draw(st.booleans()):
        return suffix, draw(st.binary(min_size=0, max_size=300))
    mode = draw(st.sampled_from(MODES))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    buf = io.BytesIO()
    try:
        img.save(buf, FORMATS[suffix])
    except (OSError, ValueError, KeyError):  # a format that cannot hold this mode: keep it as raw bytes
        return suffix, buf.getvalue() or b"\x00"
    data = buf.getvalue()
    if draw(st.booleans()):  # sometimes cut it short
        data = data[: draw(st.integers(0, len(data)))]
    return suffix, data


folders = st.dictionaries(st.sampled_from(["cats", "dogs", "owls"]), st.lists(image_files(), max_size=4),
                          max_size=3)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _write(root: Path, tree: dict[str, list[tuple[str, bytes]]]) -> None:
    for cls, files in tree.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, (suffix, data) in enumerate(files):
            (root / cls / f"{i}.{suffix}").write_bytes(data)


@SETTINGS
@given(tree=folders)
def test_the_folder_loader_loads_or_refuses_in_words(tree):
    root = Path(tempfile.mkdtemp())
    try:
        _write(root, tree)
        try:
            data = load_data(DataConfig(source="folder", path=str(root), image_size=16, per_class=None))
        except DataUnavailable as err:
            assert str(err)
            return
        side = data.stored_size  # the files' own side when all share one square size below 16, else 16
        assert data.train_x.dtype == torch.uint8 and data.train_x.shape[1:] == (3, side, side) and side <= 16
        readable = len(data.train_x) + len(data.val_x)
        assert readable + len(data.skipped) == sum(len(f) for c, f in tree.items() if c in data.classes)
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(tree=folders, noise=st.binary(max_size=200), cut=st.floats(0, 1))
def test_the_zip_loader_extracts_or_refuses_in_words(tree, noise, cut):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for cls, files in tree.items():
            for i, (suffix, data) in enumerate(files):
                zf.writestr(f"{cls}/{i}.{suffix}", data)
    raw = buf.getvalue()
    raw = raw[: int(len(raw) * cut)] + noise if cut < 0.9 else raw  # often damaged, sometimes whole
    dest = Path(tempfile.mkdtemp()) / "out"
    try:
        try:
            extract_zip(io.BytesIO(raw), dest)
        except ArchiveRefused as err:
            assert str(err) and not dest.exists()
            return
        assert dest.is_dir()
    finally:
        shutil.rmtree(dest.parent)


# --- links: whatever a hand-made link carries, a page opens and says what it could not use ---------------------

from core import links  # noqa: E402
from core.training.config import demo_comparison  # noqa: E402

HOSTILE_NAMES = ["torchvision:maskrcnn_resnet50_fpn", "torchvision:raft_large", "torchvision:__import__",
                 "timm:../../x", "timm:resnet18.nosuchtag", "own:model.factory", "demo", "resnet18"]
LINK_VALUES = st.one_of(st.text(max_size=80), st.sampled_from([
    *HOSTILE_NAMES, "stats", "fine_tune_top", "all", "28", "1000000", "²", "٣", "-1", "0", "1e9", "layer4,layer9",
    "file:/etc/passwd", "zoo:../x", "folder", "x" * 5000]))


def _problems_are_sentences(problems: list[str]) -> None:
    assert all(p and "\n" not in p and len(p) < 700 for p in problems), problems


@SETTINGS
@given(params=st.dictionaries(st.sampled_from(links.QUERY_KEYS), LINK_VALUES, max_size=6))
def test_a_links_values_open_a_setup_or_are_said_never_raise(params):
    setup, problems = links.from_query(params)
    assert isinstance(setup, links.Setup) and len(problems) <= len(params)
    _problems_are_sentences(problems)


def _leaves(value, at=()):
    """The paths to every leaf of a config's plain form (dicts and lists opened up)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*at, k))]
    if isinstance(value, list) and value:
        return [p for i, v in enumerate(value) for p in _leaves(v, (*at, i))]
    return [at]


RUN = json.loads(json.dumps(dataclasses.asdict(demo_comparison(epochs=1)[1])))  # the plain form a link carries
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.just(10**400), st.floats(),
                   st.text(max_size=30), st.sampled_from(HOSTILE_NAMES), st.lists(st.integers(-3, 10**6), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@SETTINGS
@given(where=st.sampled_from(_leaves(RUN)), value=LEAVES)
def test_a_comparison_link_bent_anywhere_is_offered_whole_or_refused_in_one_sentence(where, value):
    run = copy.deepcopy(RUN)
    parent = functools.reduce(lambda part, key: part[key], where[:-1], run)
    parent[where[-1]] = value
    packed = base64.urlsafe_b64encode(zlib.compress(json.dumps([run]).encode())).decode()
    configs, problems = links.comparison_from_query(packed)
    assert (len(configs), len(problems)) in ((1, 0), (0, 1)), (configs, problems)
    _problems_are_sentences(problems)
