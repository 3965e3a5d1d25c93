"""The operator's settings, read from the environment once per process into one value.

    settings()                 # this process's value (read at first use, then kept)
    Settings.from_environ(env) # the value a mapping of variables gives
    value.to_environ()         # the variables a child process needs to read the same value (the app's server
                               # and trainer, started by `freezelab app`; a trainer started by a server)

Every FREEZELAB_* variable the engine reads is here and read nowhere else, so a process acts on one set of
settings from its start to its end: a variable changed later in this process is not seen (tests, which change
them, call `reset()`; tests/conftest.py does between tests). Variables:

    FREEZELAB_HOME           the per-user root (runs, downloads, the zoo, uploads); default ~/.freezelab
    FREEZELAB_SHARE          folders a browser may read (os.pathsep between them): core/runtime/shares.py
    FREEZELAB_EXPORT_TO      folders a browser may export into (os.pathsep between them)
    FREEZELAB_TRACKING_URIS  MLflow tracking URIs a browser may export to (commas between them)
    FREEZELAB_TEACHER_CODE   the code that makes a browser the lesson's teacher (none when unset)
    FREEZELAB_MAX_MODEL_M    the largest library model a browser may build, in millions of parameters
    FREEZELAB_TRAINER        "process" (the app trains in a trainer process, the default) or "thread"
    FREEZELAB_MODEL_FILES    the operator's own networks, "path:factory" entries (core/models/own.py)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME, SHARE, EXPORT_TO, TRACKING_URIS = ("FREEZELAB_HOME", "FREEZELAB_SHARE", "FREEZELAB_EXPORT_TO",
                                         "FREEZELAB_TRACKING_URIS")
TEACHER_CODE, MAX_MODEL_M, TRAINER, MODEL_FILES = ("FREEZELAB_TEACHER_CODE", "FREEZELAB_MAX_MODEL_M",
                                                   "FREEZELAB_TRAINER", "FREEZELAB_MODEL_FILES")
VARIABLES = (HOME, SHARE, EXPORT_TO, TRACKING_URIS, TEACHER_CODE, MAX_MODEL_M, TRAINER, MODEL_FILES)
# Millions of parameters, of the whole library model (it is built whole to find its blocks): 63 of torchvision's 80
# classifiers; not VGG (133-144 M, most of it the classifier FreezeLab replaces: the registered vgg11/16 are
# allowed), ViT-L/H, RegNet 32-128 GF, ConvNeXt-L, EfficientNet-V2-L, Wide ResNet-101. One browser's pick of
# ViT-H/14 (633 M) takes a laptop server 3.4 GB and half a minute of CPU just to find its blocks; the class waits.
DEFAULT_MAX_MODEL_M = 100.0
TRAINER_MODES = ("process", "thread")


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser() for p in text.split(os.pathsep) if p.strip())


def _millions(text: str) -> float | None:
    """The operator's number of millions; None for a typo (no library model for a browser until it is mended,
    said where the limit is asked for: shares.max_model_params)."""
    try:
        return float(text.strip() or DEFAULT_MAX_MODEL_M)
    except ValueError:
        return None


@dataclass(frozen=True)
class Settings:
    """The FREEZELAB_* settings of one process (see the module's docstring for each variable)."""

    home: Path = dataclasses.field(default_factory=lambda: Path.home() / ".freezelab")
    share: tuple[Path, ...] = ()  # read by a browser, beside home/data and its own uploads
    export_to: tuple[Path, ...] = ()  # exported into by a browser, beside home
    tracking_uris: tuple[str, ...] = ()  # without a trailing "/"
    teacher_code: str = ""  # "": no teacher view
    max_model_m: float | None = DEFAULT_MAX_MODEL_M  # None: the variable held no number
    trainer: str = "process"  # as given: in_own_process() refuses a word other than TRAINER_MODES, in words
    model_files: str = ""  # as given: core/models/own.py parses and registers the entries

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        """The settings these variables give (unset or empty ones take their defaults)."""
        get = lambda name: env.get(name, "")  # noqa: E731
        return cls(
            home=Path(get(HOME) or Path.home() / ".freezelab").expanduser(),
            share=_paths(get(SHARE)),
            export_to=_paths(get(EXPORT_TO)),
            tracking_uris=tuple(u.strip().rstrip("/") for u in get(TRACKING_URIS).split(",") if u.strip()),
            teacher_code=get(TEACHER_CODE).strip(),
            max_model_m=_millions(get(MAX_MODEL_M)),
            trainer=get(TRAINER).strip() or "process",
            model_files=get(MODEL_FILES),
        )

    def to_environ(self) -> dict[str, str]:
        """The variables that give these settings (`from_environ` of them is equal to this value); a child
        process started with them beside the rest of its environment acts on the same settings."""
        millions = self.max_model_m
        return {
            HOME: str(self.home),
            SHARE: os.pathsep.join(map(str, self.share)),
            EXPORT_TO: os.pathsep.join(map(str, self.export_to)),
            TRACKING_URIS: ",".join(self.tracking_uris),
            TEACHER_CODE: self.teacher_code,
            MAX_MODEL_M: "not a number" if millions is None else repr(millions),
            TRAINER: self.trainer,
            MODEL_FILES: self.model_files,
        }


@functools.cache
def settings() -> Settings:
    """This process's settings: read from its environment at the first call, the same value ever after."""
    return Settings.from_environ(os.environ)


def reset() -> None:
    """Read the environment again at the next `settings()` (tests; nothing in the app changes its settings)."""
    settings.cache_clear()
