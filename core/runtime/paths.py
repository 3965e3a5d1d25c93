"""Where FreezeLab keeps things on disk. One root, `$FREEZELAB_HOME` (default `~/.freezelab`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.runtime.settings import settings


def home() -> Path:
    """The per-user root for downloads, the model zoo and the run store (this process's settings' `home`)."""
    return settings().home


def data_dir() -> Path:
    """Downloaded datasets (CIFAR-10) live here."""
    return home() / "data"


def zoo_dir() -> Path:
    """Models made by `python -m core pretrain` live here, one folder each."""
    return home() / "zoo"


def atomic_write(path: Path, write: Callable[[BinaryIO], object], mode: int = 0o644) -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it into place: readers see the
    old file or the whole new one, never half of it. `mode`: its permissions (0o600 for a secret: it is
    never readable by others, not even for a moment)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, mode)  # mkstemp makes owner-only files; most of ours are ordinary data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
