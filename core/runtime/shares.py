"""What a browser may reach on the server's machine: the folders it may read (image folders, weights files), the
folders it may export into, and the tracking servers it may send runs to. The operator names them when starting
the app; the command line belongs to its user and is not bound by them.

    freezelab app --share ~/class-images --export-to /srv/exports --tracking-uri http://mlflow.lan:5000 \
                  --teacher-code plum-42

sets these variables for the app (they can be set directly too; several values are separated by os.pathsep,
URIs by commas):

    FREEZELAB_SHARE          folders a browser may read, beside $FREEZELAB_HOME/data and $FREEZELAB_HOME/uploads
    FREEZELAB_EXPORT_TO      folders a browser may export into, beside $FREEZELAB_HOME
    FREEZELAB_TRACKING_URIS  MLflow tracking URIs a browser may export to (none unless named)
    FREEZELAB_TEACHER_CODE   the code that makes a browser the teacher of the lesson (no teacher unless set)
    FREEZELAB_MAX_MODEL_M    the largest library model a browser may build, in millions of parameters (100)

A path is judged after resolving it (`..`, `~` and symbolic links followed), so a link inside a shared folder that
points out of it is refused like the path it points to.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

from core.runtime import paths

SHARE_ENV, EXPORT_ENV, TRACKING_ENV = "FREEZELAB_SHARE", "FREEZELAB_EXPORT_TO", "FREEZELAB_TRACKING_URIS"
TEACHER_ENV = "FREEZELAB_TEACHER_CODE"
MAX_MODEL_ENV = "FREEZELAB_MAX_MODEL_M"
# Millions of parameters, of the whole library model (it is built whole to find its blocks): 63 of torchvision's 80
# classifiers; not VGG (133-144 M, most of it the classifier FreezeLab replaces: the registered vgg11/16 are
# allowed), ViT-L/H, RegNet 32-128 GF, ConvNeXt-L, EfficientNet-V2-L, Wide ResNet-101. One browser's pick of
# ViT-H/14 (633 M) takes a laptop server 3.4 GB and half a minute of CPU just to find its blocks; the class waits.
DEFAULT_MAX_MODEL_M = 100.0
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # a scheme: http:, https:, sqlite:, databricks, file: ...


class NotShared(ValueError):
    """A browser asked for a place the operator does not share; the message says which and how to share one."""


def _listed(variable: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p.strip()]


def readable_folders() -> tuple[Path, ...]:
    """The folders a browser may read images and weights from."""
    return (paths.data_dir(), paths.home() / "uploads", *_listed(SHARE_ENV))


def export_folders() -> tuple[Path, ...]:
    """The folders a browser may export runs into."""
    return (paths.home(), *_listed(EXPORT_ENV))


def tracking_uris() -> tuple[str, ...]:
    """The tracking servers a browser may export runs to."""
    return tuple(u.strip().rstrip("/") for u in os.environ.get(TRACKING_ENV, "").split(",") if u.strip())


def _resolved(path: str | Path) -> Path | None:
    """The real place a path names, or None when it cannot name one (a NUL byte, a name too long)."""
    try:
        return Path(path).expanduser().resolve()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop on older Pythons
        return None


def _inside(path: str | Path, roots: tuple[Path, ...]) -> Path | None:
    real = _resolved(path)
    if real is None:
        return None
    for root in roots:
        base = _resolved(root)
        if base is not None and real.is_relative_to(base):
            return real
    return None


def _names(roots: tuple[Path, ...]) -> str:
    return ", ".join(str(r) for r in roots)


def check_readable(path: str | Path, what: str = "folder") -> Path:
    """The resolved path, when a browser may read it; NotShared otherwise."""
    real = _inside(path, readable_folders())
    if real is None:
        raise NotShared(f"This server does not share {str(path)[:200]!r}: a browser reads only {what}s inside "
                        f"{_names(readable_folders())}; whoever started it can add one with "
                        "`freezelab app --share DIR`.")
    return real


def check_weights(source: str) -> None:
    """A weights choice a browser may make: `file:` weights only from a shared folder (the others are named
    checkpoints or zoo entries, whose names are checked where they are read)."""
    if source.startswith("file:"):
        check_readable(source[5:], "weights file")


def check_export(target: str | Path) -> None:
    """An export target a browser may use: a folder inside the export folders, or a tracking URI the operator
    named."""
    text = str(target).strip()
    if _URI.match(text) and not text.startswith("file:"):
        if text.rstrip("/") not in tracking_uris():
            named = f" ({', '.join(tracking_uris())})" if tracking_uris() else ""
            raise NotShared(f"This server exports from a browser only to the tracking URIs its operator "
                            f"named{named or ' (none)'}, not to {text[:200]!r}; whoever started it can add one "
                            "with `freezelab app --tracking-uri URI`.")
        return
    folder = text[len("file://"):] if text.startswith("file://") else text[len("file:"):] if text.startswith(
        "file:") else text
    if _inside(folder, export_folders()) is None:
        raise NotShared(f"This server exports from a browser only into {_names(export_folders())}, not into "
                        f"{text[:200]!r}; whoever started it can add a folder with `freezelab app --export-to DIR`.")


def max_model_params() -> int:
    """The most parameters a model a browser names from a library's whole list may have (the operator's
    $FREEZELAB_MAX_MODEL_M, in millions; `freezelab app --max-model-size` checks it)."""
    value = os.environ.get(MAX_MODEL_ENV, "").strip()
    try:
        return int(float(value or DEFAULT_MAX_MODEL_M) * 1e6)
    except ValueError:  # the operator's typo: no library model for a browser until it is mended
        raise NotShared(f"${MAX_MODEL_ENV} is {value[:40]!r}, not a number of millions of parameters: whoever "
                        "started this server can mend it (or use `freezelab app --max-model-size MILLIONS`).") from None


def check_model_size(name: str, params: int) -> None:
    """NotShared when a browser's model is larger than the operator allows."""
    if params > max_model_params():
        raise NotShared(f"{name} has {params / 1e6:,.0f} M parameters; this server builds models of up to "
                        f"{max_model_params() / 1e6:,.0f} M for a browser; whoever started it can raise that with "
                        "`freezelab app --max-model-size MILLIONS`.")


def teacher_code_set() -> bool:
    """Whether the operator named a teacher code (the lesson's teacher view exists only then)."""
    return bool(os.environ.get(TEACHER_ENV, "").strip())


def is_teacher_code(text: str) -> bool:
    """Whether `text` is the operator's teacher code (compared in constant time; never true when none is set)."""
    code = os.environ.get(TEACHER_ENV, "").strip()
    return bool(code) and hmac.compare_digest(code.encode(), text.strip().encode())
