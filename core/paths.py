"""Where FreezeLab keeps things on disk. One root, `$FREEZELAB_HOME` (default `~/.freezelab`)."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"  # files shipped with the code (the demo net)


def home() -> Path:
    """The per-user root for downloads, the model zoo and the run store."""
    return Path(os.environ.get("FREEZELAB_HOME") or Path.home() / ".freezelab").expanduser()


def data_dir() -> Path:
    """Downloaded datasets (CIFAR-10) live here."""
    return home() / "data"


def zoo_dir() -> Path:
    """Models made by `python -m core pretrain` live here, one folder each."""
    return home() / "zoo"
