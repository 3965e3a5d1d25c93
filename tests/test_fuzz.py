"""Property-based: whatever bytes or small images the image-folder and zip loaders are given, they load
what they can and refuse the rest in words (DataUnavailable, ArchiveRefused); no other error escapes."""

import io
import shutil
import tempfile
import zipfile
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
