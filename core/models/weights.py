"""Where a backbone's starting weights come from, and how they are fitted onto its blocks.

Sources (the `weights` field of a ModelConfig):
- ``pretrained``: torchvision's ImageNet weights (downloaded once into ``$TORCH_HOME/hub/checkpoints``),
  timm's from the Hugging Face hub (cached in its usual place, ``$HF_HOME/hub``), or for the demo net
  its bundled zoo entry;
- ``none``: random initialisation, i.e. training from scratch;
- ``file:<path>``: a state dict on disk, read with ``weights_only=True`` (no code runs); either in the
  torchvision layout (``conv1.weight``) or FreezeLab's (``blocks.stem.0.weight``);
- ``zoo:<name>``: an entry of the local model zoo.

Weights cover the backbone only: the head always starts fresh, since it answers a new task.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
import re
import urllib.error
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from core.models import zoo
from core.runtime.download import Progress, download

_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's convention: resnet18-f37072fd.pth


class WeightsUnavailable(RuntimeError):
    """Weights that cannot be had; the message says what is missing and how to get it."""


class WeightsMismatch(ValueError):
    """Weights that do not fit the architecture; the message names the layers."""


def resolve(weights: str, spec, progress: Progress | None = None):
    """(state dict or None, mean, std) for the weights source `weights` of backbone `spec`."""
    if weights == "none":
        return None, spec.mean, spec.std
    if weights == "pretrained":
        if spec.weights_from == "torchvision":
            return load_torchvision(spec.source_name, progress)
        if spec.weights_from == "timm":
            return load_timm(spec.source_name)
        return resolve(spec.weights_from, spec, progress)
    if weights.startswith("file:"):
        state = read_file(Path(weights[len("file:"):]).expanduser())
        return state, *_stats(state, spec)
    if weights.startswith("zoo:"):
        name = weights[len("zoo:"):]
        folder = zoo.entry_dir(name)
        if folder is None:
            raise WeightsUnavailable(
                f"The model zoo has no entry {name!r} (looked in {', '.join(map(str, zoo.roots()))}). "
                "Make one with `freezelab pretrain`."
            )
        state = read_file(folder / zoo.CHECKPOINT)
        return state, *_stats(state, spec)
    raise ValueError(f"Weights are 'pretrained', 'none', 'file:<path>' or 'zoo:<name>', not {weights!r}.")


def _stats(state: dict, spec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A FreezeLab checkpoint carries its normalisation; anything else gets the backbone's default."""
    if "mean" in state and "std" in state:
        return tuple(state["mean"].flatten().tolist()), tuple(state["std"].flatten().tolist())
    return spec.mean, spec.std


# -----------------------------------------------------------------------------
# Sources


def torchvision_checkpoint(name: str) -> tuple[str, Path]:
    """(url, the file torchvision caches it as) for a model's default ImageNet weights."""
    import torchvision  # here, not above: importing it costs a second, and the demo net never needs it

    w = torchvision.models.get_model_weights(name).DEFAULT
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path)
    return w.url, file


def load_torchvision(name: str, progress: Progress | None = None):
    """ImageNet weights named by torchvision's weights API, downloading (with progress) only when not
    cached. The cached file is checked against the SHA-256 prefix torchvision publishes in its name before
    it is read, and read with `weights_only=True`: a file planted in the cache can run no code."""
    import torchvision

    w = torchvision.models.get_model_weights(name).DEFAULT
    url, file = torchvision_checkpoint(name)
    match = _HASH_IN_NAME.search(file.name)
    if not file.exists():
        try:
            download(url, file, progress, sha256_prefix=match.group(1) if match else None)
        except (urllib.error.URLError, OSError) as err:
            raise WeightsUnavailable(
                f"ImageNet weights for {name} are not on this machine and could not be downloaded "
                f"({getattr(err, 'reason', err)}). Download {url} and save it as {file} "
                "(the folder follows $TORCH_HOME), or train from scratch with weights 'none'."
            ) from err
    if match:
        stat = file.stat()
        got = _sha256(file, stat.st_size, stat.st_mtime_ns)
        if not got.startswith(match.group(1)):
            raise WeightsUnavailable(
                f"{file} is not the file torchvision publishes (its SHA-256 starts {got[:8]}, the name says "
                f"{match.group(1)}), so FreezeLab will not read it. Delete it and load again, or download "
                f"{url} yourself and save it there.")
    state = read_file(file)
    transforms = w.transforms()
    return state, tuple(transforms.mean), tuple(transforms.std)


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps its downloads, by its own rule, read now (not when it was imported):
    $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def load_timm(name: str):
    """timm's default ImageNet weights for `name`, as the safetensors file timm publishes on the Hugging Face
    hub: read from the hub's cache when it is there (no network), else downloaded into it. Safetensors
    holds tensors only, so nothing in the file can run."""
    import timm.models
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = timm.models.get_pretrained_cfg(name)
    repo, file = cfg.hf_hub_id, "model.safetensors"
    try:
        path = hf_hub_download(repo, file, cache_dir=hf_cache_dir(), local_files_only=True)
    except LocalEntryNotFoundError:
        try:
            path = hf_hub_download(repo, file, cache_dir=hf_cache_dir())
        except Exception as err:  # huggingface_hub raises many kinds when offline
            raise WeightsUnavailable(
                f"ImageNet weights for {name} are not on this machine and could not be downloaded from the "
                f"Hugging Face hub ({type(err).__name__}). Download {file} of https://huggingface.co/{repo} into "
                f"{hf_cache_dir()} (or run once with a network), or train from scratch with weights 'none'."
            ) from err
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as err:
        raise WeightsUnavailable(f"{path} is not a readable safetensors file ({err}). Delete it and load again."
                                 ) from err
    return state, tuple(cfg.mean), tuple(cfg.std)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, computed once per version of the file (size and time are part of the key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _head(path: Path, size: int = 512) -> bytes:
    """A file's first bytes: what it is can be told from them, whatever its size."""
    with open(path, "rb") as f:
        return f.read(size)


# What torch.save writes first: a zip archive (since torch 1.6), or a pickle (the legacy format).
TORCH_SAVE_HEADS = (b"PK\x03\x04", b"\x80")


def _what_it_is(path: Path) -> str:
    """A few words on what a file that is not a PyTorch weights file holds instead, from its head alone."""
    head = _head(path)
    if not head:
        return "it is empty"
    try:
        head.decode("utf-8")
        return "it holds text, not tensors"
    except UnicodeDecodeError:
        return "it is not a file PyTorch wrote (torch.save)"


def _expanded_bytes(path: Path) -> int:
    """What a zip-format weights file (torch.save's since torch 1.6) declares its records inflate to, read from
    the zip's directory without inflating anything. torch reads each record into a buffer of its declared size,
    so this bounds what loading it allocates, whatever the file's own size (a deflated block of zeros is small)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise WeightsMismatch(f"{path} is not a weights file FreezeLab can read safely: it must be a PyTorch "
                              f"state dict of tensors, and its archive cannot be read ({err}).") from None


def read_file(path: Path, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """A state dict from disk. `weights_only=True`: a file can hold tensors, never code. With `max_bytes`, a file
    whose records would inflate past it is refused before anything is loaded (an upload's bound)."""
    if (kept := _READ_ONCE.get()) is not None and kept[0] == path:
        return kept[1]  # keep_upload has just read this very file; its fit check builds the model from it
    if not path.is_file():
        raise WeightsUnavailable(f"Weights file {path} does not exist.")
    head = _head(path, 4)
    if not head.startswith(TORCH_SAVE_HEADS):  # not even the start of what torch.save writes
        raise WeightsMismatch(f"{path} is not a weights file FreezeLab can read safely: it must be a PyTorch "
                              f"state dict of tensors, and {_what_it_is(path)}.")
    if max_bytes is not None and head.startswith(TORCH_SAVE_HEADS[0]):
        expanded = _expanded_bytes(path)
        if expanded > max_bytes:
            raise WeightsMismatch(f"{path} would take {expanded / 2**20:,.0f} MB once read, though the file is "
                                  f"{path.stat().st_size / 2**20:,.1f} MB; a weights file here may hold at most "
                                  f"{max_bytes // 2**20} MB of tensors.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the file is the user's: whatever torch.load makes of it, say what it is not
        found = re.search(r"GLOBAL (\S+?)\.?(?:\s|$)", str(err))  # what weights_only refused to import
        code = found.group(1) if found and all(p.isidentifier() for p in found.group(1).split(".")) else None
        reason = f"it holds Python objects ({code}), not only tensors" if code else _what_it_is(path)
        raise WeightsMismatch(f"{path} is not a weights file FreezeLab can read safely: it must be a PyTorch "
                              f"state dict of tensors, and {reason}.") from err
    for key in ("state_dict", "model"):  # common wrappers, FreezeLab's own included
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatch(f"{path} holds no state dict (a mapping of layer names to tensors).")
    return obj


MAX_UPLOAD_BYTES = 200 * 2**20  # as Streamlit's own upload limit (.streamlit/config.toml, maxUploadSize)
# What an upload may hold once read: its own bound again, as a state dict torch.save wrote (stored, not deflated)
# is about as large as its file; one that inflates past it was built to cost memory.
MAX_UPLOAD_TENSOR_BYTES = MAX_UPLOAD_BYTES

# (path, state) of the upload keep_upload is checking, in this thread's context: its fit check reads the same
# file through resolve(), which then takes the state already read instead of loading it a second time.
_READ_ONCE: contextvars.ContextVar[tuple[Path, dict] | None] = contextvars.ContextVar("weights_read_once",
                                                                                     default=None)


def uploads_dir() -> Path:
    """Where weights files a browser uploaded are kept: inside $FREEZELAB_HOME/uploads, which browsers may read."""
    from core.runtime import paths

    return paths.home() / "uploads" / "weights"


def keep_upload(data: bytes, filename: str, fits: Callable[[str], None] | None = None) -> Path:
    """Keep a weights file a browser uploaded, named by its content's hash, once it has been read as a state dict
    (`weights_only=True`, at most MAX_UPLOAD_BYTES, expanding to at most MAX_UPLOAD_TENSOR_BYTES) and
    `fits("file:<path>")` has not refused it (a build of the chosen backbone with it: WeightsMismatch naming the
    layers; the file is read once for both). A refused file is not kept; the sentence names the file as the user
    called it."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise WeightsMismatch(f"{filename} is {len(data) / 2**20:.0f} MB; an uploaded weights file is at most "
                              f"{MAX_UPLOAD_BYTES // 2**20} MB (give the operator a bigger one to share instead).")
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.pt"
    trial = path.with_suffix(".part")
    trial.write_bytes(data)
    try:
        state = read_file(trial, max_bytes=MAX_UPLOAD_TENSOR_BYTES)
        if fits:
            token = _READ_ONCE.set((trial, state))
            try:
                fits(f"file:{trial}")
            finally:
                _READ_ONCE.reset(token)
    except (WeightsMismatch, WeightsUnavailable) as err:
        trial.unlink(missing_ok=True)
        raise type(err)(str(err).replace(f"'file:{trial}'", repr(filename)).replace(str(trial), filename)) from None
    trial.replace(path)
    return path


# -----------------------------------------------------------------------------
# Fitting a state dict onto a FreezeLabNet


def raw_to_net_names(raw: nn.Module, net: nn.Module) -> dict[str, str]:
    """Map each tensor name of the torchvision-layout model to its name in the net wrapping the same tensors."""
    by_identity = {id(t): name for name, t in net.state_dict(keep_vars=True).items()}
    return {name: by_identity[id(t)] for name, t in raw.state_dict(keep_vars=True).items() if id(t) in by_identity}


def _layer(key: str) -> str:
    return key.rsplit(".", 1)[0]


def load_backbone(net, raw: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy the backbone weights in `state` into `net`, or raise WeightsMismatch naming the layers that differ."""
    mapping = raw_to_net_names(raw, net)
    net_state = net.state_dict()
    if any(k.startswith("blocks.") for k in state):  # FreezeLab layout
        to_net = {k: k for k in state if k in net_state and not k.startswith("head.")}
        unexpected = [k for k in state if k not in net_state and not k.startswith("head.")]
        shown = {k: k for k in net_state}
    else:  # torchvision layout; the original classifier's keys are known to `raw` and simply left out
        to_net = {k: mapping[k] for k in state if k in mapping}
        raw_keys = set(raw.state_dict())
        unexpected = [k for k in state if k not in raw_keys]
        shown = {v: k for k, v in mapping.items()}
    loaded = {to_net[k]: v for k, v in state.items() if k in to_net}
    wrong_shape = [
        f"{_layer(shown[k])} (file {tuple(v.shape)}, model {tuple(net_state[k].shape)})"
        for k, v in loaded.items() if v.shape != net_state[k].shape
    ]
    missing = [
        shown[k] for k in net_state
        if k.startswith("blocks.") and k not in loaded and not k.endswith("num_batches_tracked")
    ]
    problems = []
    for label, items in (("with other shapes", wrong_shape), ("missing from the file", missing),
                         ("not in the model", unexpected)):
        names = list(dict.fromkeys(items if label == "with other shapes" else map(_layer, items)))
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            problems.append(f"{len(names)} layers {label}: {', '.join(names[:5])}{more}")
    if problems:
        raise WeightsMismatch(f"Weights {source!r} do not fit {net.backbone_name}: " + "; ".join(problems) + ".")
    net.load_state_dict({**net_state, **loaded})
