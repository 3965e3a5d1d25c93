"""Your own network as a backbone: a Python function, named by its file and name (`path/to/model.py:factory`),
that returns an `nn.Module`, or `(module, blocks)` with its blocks as an ordered dict of its parts.

Only the operator names them, never a browser: `freezelab train --model-file F:f` for the command line,
`freezelab app --model-file F:f` (or $FREEZELAB_MODEL_FILES, path:factory entries separated by ";") for a server,
whose trainer inherits the variable. A run stores the backbone's name, `own:<file stem>.<factory>`; a process
where that name was not registered by its operator refuses it as unknown, so a shared link cannot make a server
run code.

Validated when registered, each failure in one sentence (ModelFileRefused): the file exists and imports, the
factory returns a module, its blocks (given, or found as torchvision models' are: core.models.auto_split) run one
after another at the size given, and every parameter is in exactly one block or left to the head. Importing the
file, and each call of its factory, may take at most SECONDS_ALLOWED: one that never returns is refused, naming the
file and function, rather than holding the command (or a page listing the models) for ever.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from core.models import backbones
from core.runtime.settings import MODEL_FILES, settings

MODEL_FILES_ENV = MODEL_FILES  # the variable (core/runtime/settings.py reads it)
SEPARATOR = ";"  # between the variable's entries: os.pathsep is ":" on Linux, which each entry uses already
DEFAULT_SIZE = 32  # the probe's and the runs' image size unless the factory's module says IMAGE_SIZE
SECONDS_ALLOWED = 120.0  # for importing a model file, and for each call of its factory (a large model builds slowly)


_REFERENCES: dict[str, str] = {}  # backbone name -> the resolved "path:factory" that registered it here


class ModelFileRefused(ValueError):
    """A model file or factory that cannot be used, said in one sentence."""


def _parts(reference: str) -> tuple[Path, str]:
    """(the file, resolved, and the factory's name) of "path/to/model.py:factory"."""
    path, sep, name = reference.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ModelFileRefused(f"Name a model as path/to/model.py:factory, not {reference!r}.")
    return Path(path).expanduser().resolve(), name


def resolved(reference: str) -> str:
    """The reference with its file's full path: the same model from any folder a process starts in."""
    file, name = _parts(reference)
    return f"{file}:{name}"


def _in_time(call, file: Path, name: str):
    """call(), waited for at most SECONDS_ALLOWED in a thread of its own (on the caller's default device, which is
    a thread's own in torch: the meta device of parameter_count included). Python cannot stop a thread, so one
    still running then is left behind (a daemon: it holds no process open) and the caller hears in one sentence."""
    import torch

    device, done = torch.get_default_device(), {}

    def run():
        try:
            with torch.device(device):
                done["value"] = call()
        except BaseException as err:  # raised again in the caller's thread, which says it in words
            done["error"] = err

    worker = threading.Thread(target=run, name=f"freezelab-own-{file.stem}.{name}", daemon=True)
    worker.start()
    worker.join(SECONDS_ALLOWED)
    if worker.is_alive():
        raise ModelFileRefused(f"{file}'s {name} did not finish within {SECONDS_ALLOWED:g} s, so FreezeLab stopped "
                               "waiting for it (the operator's model file: fix it, or leave it out of --model-file "
                               f"and ${MODEL_FILES_ENV}).")
    if "error" in done:
        raise done["error"]
    return done["value"]


def _factory(reference: str):
    """(file, factory name, the function, its image size) of "path/to/model.py:factory", the file imported."""
    file, name = _parts(reference)
    if not file.is_file():
        raise ModelFileRefused(f"No model file at {file}.")
    module_name = f"freezelab_own_{file.stem}_{abs(hash(str(file))):x}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ModelFileRefused(f"{file} is not a Python file.")
    module = importlib.util.module_from_spec(spec)
    try:
        _in_time(lambda: spec.loader.exec_module(module), file, "import")
    except ModelFileRefused:
        raise
    except Exception as err:  # the operator's own code: its failure said in one line, with its kind
        raise ModelFileRefused(f"{file} fails to import ({type(err).__name__}: {str(err)[:200]}).") from None
    sys.modules[module_name] = module
    function = getattr(module, name, None)
    if not callable(function):
        raise ModelFileRefused(f"{file} has no function {name!r}.")
    return file, name, function, int(getattr(module, "IMAGE_SIZE", DEFAULT_SIZE))


def _built(function, reference: str):
    """(module, blocks or None) from calling the factory, within SECONDS_ALLOWED."""
    from torch import nn

    file, name = _parts(reference)
    try:
        made = _in_time(function, file, f"{name}()")
    except ModelFileRefused:
        raise
    except Exception as err:
        raise ModelFileRefused(f"{reference} fails when called ({type(err).__name__}: {str(err)[:200]}).") from None
    model, blocks = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(model, nn.Module):
        raise ModelFileRefused(f"{reference} returns {type(model).__name__}, not a torch.nn.Module.")
    if blocks is not None and not (isinstance(blocks, dict) and blocks
                                   and all(isinstance(b, nn.Module) for b in blocks.values())):
        raise ModelFileRefused(f"{reference}'s blocks must be an ordered dict of its parts (nn.Module each).")
    return model, blocks


def _given_blocks(model, blocks: dict, size: int, reference: str) -> OrderedDict:
    """The factory's own blocks, checked: they run one after another to an image-shaped map, and no parameter is
    in two of them (the rest of the model's parameters are its head, which FreezeLab replaces)."""
    import torch

    seen: dict[int, str] = {}
    for name, block in blocks.items():
        if not name.isidentifier():
            raise ModelFileRefused(f"{reference}'s block name {name!r} is not a plain name (letters, digits, _).")
        for p in block.parameters():
            if seen.setdefault(id(p), name) != name:
                raise ModelFileRefused(f"{reference} puts a parameter in both {seen[id(p)]} and {name}.")
    known = {id(p) for p in model.parameters()}
    if not set(seen) <= known:
        raise ModelFileRefused(f"{reference}'s blocks hold parameters its model does not have.")
    x = torch.zeros(1, 3, size, size)
    model.eval()
    with torch.no_grad():
        for name, block in blocks.items():
            try:
                x = block(x)
            except Exception as err:
                raise ModelFileRefused(f"{reference}'s blocks do not run one after another at {size} px (at "
                                       f"{name}: {str(err).splitlines()[0][:160]}).") from None
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ModelFileRefused(f"{reference}'s last block must give an image-shaped map (N, C, H, W), which "
                               "FreezeLab's head pools.")
    return OrderedDict(blocks)


def register(reference: str) -> str:
    """Register the operator's model `reference` ("path/to/model.py:factory") as a backbone, validated; returns
    its name (`own:<stem>.<factory>`). Registering the same reference again returns the same name."""
    from core.models.auto_split import SplitRefused, split

    file, name, function, size = _factory(reference)
    backbone = f"own:{file.stem}.{name}"
    if backbone in backbones.list_backbones():
        return backbone
    model, blocks = _built(function, reference)
    try:
        found = _given_blocks(model, blocks, size, reference) if blocks else split(model, size, reference)
    except SplitRefused as err:
        raise ModelFileRefused(f"{err} Return (model, blocks) to name its blocks yourself.") from None

    def build():
        """A fresh model; the blocks its factory names (if any) ride along on it, for `split_blocks`."""
        made, named = _built(function, reference)
        if named:
            made._freezelab_blocks = OrderedDict(named)
        return made

    def split_blocks(built):
        named = getattr(built, "_freezelab_blocks", None)
        return OrderedDict(named) if named else split(built, size, reference)

    backbones.register_backbone(backbone, family="your own", build=build, image_size=size, min_size=8,
                                pretrained="none: your own network", weights_from="none",
                                blocks=tuple(found))(split_blocks)
    _REFERENCES[backbone] = f"{file}:{name}"
    return backbone


def reference_of(backbone: str) -> str | None:
    """The reference (resolved "path:factory") that registered `backbone` in this process; None for any other
    backbone. What a process that trains it for this one (a Ray worker, maybe on another machine) registers."""
    return _REFERENCES.get(backbone)


def register_all(references: str) -> list[str]:
    """Register each of `references` ("path:factory" entries separated by SEPARATOR); a bad one is refused in
    words."""
    return [register(r) for r in references.split(SEPARATOR) if r.strip()]


def register_from_environment() -> list[str]:
    """Register every model the operator named in $FREEZELAB_MODEL_FILES (each process that builds models calls
    this: the app, its trainer, the command line)."""
    return register_all(settings().model_files)
