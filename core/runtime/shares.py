"""Who asks (a browser, or the command line) and what a browser may reach on the server's machine: the folders
it may read (image folders, weights files), the folders it may export into, and the tracking servers it may send
runs to. The operator names them when starting the app; the command line belongs to its user and is not bound
by them.

    freezelab app --share ~/class-images --export-to /srv/exports --tracking-uri http://mlflow.lan:5000 \
                  --teacher-code plum-42

gives the app these settings (core/runtime/settings.py: FREEZELAB_SHARE, FREEZELAB_EXPORT_TO,
FREEZELAB_TRACKING_URIS, FREEZELAB_TEACHER_CODE, FREEZELAB_MAX_MODEL_M). A browser reads $FREEZELAB_HOME/data,
the folders shared, and its own uploads (`uploads_folder`: no other browser's); it exports into $FREEZELAB_HOME
and the export folders, and to the tracking URIs named (none unless named).

Where these are enforced: runs are made and changed at one place, the training calls (core/execution/
interface.py), which take a `Caller` and check both what its configs name (core/models/bounds.py) and whose runs
it changes (`Caller.may_change`). Pages ask the same functions earlier only to say a refusal in a sentence.

A path is judged after resolving it (`..`, `~` and symbolic links followed), so a link inside a shared folder that
points out of it is refused like the path it points to.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from core.runtime import paths
from core.runtime.settings import (
    DEFAULT_MAX_MODEL_M,  # noqa: F401 - the CLI's help names it from here
    EXPORT_TO,
    MAX_MODEL_M,
    SHARE,
    TEACHER_CODE,
    TRACKING_URIS,
    settings,
)

# The variables, as the CLI and the tests name them (core/runtime/settings.py owns them).
SHARE_ENV, EXPORT_ENV, TRACKING_ENV, TEACHER_ENV, MAX_MODEL_ENV = SHARE, EXPORT_TO, TRACKING_URIS, TEACHER_CODE, \
    MAX_MODEL_M
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # a scheme: http:, https:, sqlite:, databricks, file: ...
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a browser session's id names its uploads' folder


class NotShared(ValueError):
    """A browser asked for a place the operator does not share; the message says which and how to share one."""


@dataclass(frozen=True)
class Caller:
    """Who asks: a browser session, bound by the operator's settings and changing only its own runs (and
    everyone's), or the command line, its user's own, bound by nothing. The app's server makes a browser's from
    the session it serves (ui/session.py); nothing a browser sends names its caller."""

    session: str = ""  # the browser session; "" for the command line and for a browser not known (`ANY_BROWSER`)
    is_browser: bool = True

    @classmethod
    def browser(cls, session: str) -> Caller:
        """The browser session `session` (a short id of letters, digits, "-" and "_": it names a folder)."""
        if not isinstance(session, str) or not _SESSION.match(session):
            raise ValueError(f"A browser session is named by 1 to 64 letters, digits, '-' or '_', not {session!r}.")
        return cls(session, is_browser=True)

    @classmethod
    def command_line(cls) -> Caller:
        return cls("", is_browser=False)

    @property
    def owner(self) -> str:
        """The session the runs it makes belong to ("": everyone's, as the command line's are)."""
        return self.session

    def may_change(self, owner: str) -> bool:
        """Whether it may start, stop, lengthen or delete a run made by session `owner` ("": everyone's)."""
        return not self.is_browser or owner in ("", self.session)


COMMAND_LINE = Caller.command_line()
ANY_BROWSER = Caller("", is_browser=True)  # a browser not known (a link being read): what every browser may reach


def uploads_folder(by: Caller) -> Path:
    """Where browser `by`'s uploaded image folders are kept: a folder of its own, which only it may read."""
    if not by.session:
        raise ValueError("Only a known browser session has an uploads folder.")
    return paths.home() / "uploads" / "browsers" / by.session


def shared_weights_folder() -> Path:
    """Uploaded weights files, kept under their content's hash (core/models/weights.py): reading one needs its
    content already, so any browser may."""
    return paths.home() / "uploads" / "weights"


def readable_folders(by: Caller = ANY_BROWSER) -> tuple[Path, ...]:
    """The folders browser `by` may read images and weights from."""
    own = (uploads_folder(by),) if by.session else ()
    return (paths.data_dir(), shared_weights_folder(), *own, *settings().share)


def export_folders() -> tuple[Path, ...]:
    """The folders a browser may export runs into."""
    return (paths.home(), *settings().export_to)


def tracking_uris() -> tuple[str, ...]:
    """The tracking servers a browser may export runs to."""
    return settings().tracking_uris


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


def check_readable(path: str | Path, what: str = "folder", by: Caller = ANY_BROWSER) -> Path:
    """The resolved path, when `by` may read it (the command line may read any); NotShared otherwise."""
    if not by.is_browser:
        return _resolved(path) or Path(path)
    real = _inside(path, readable_folders(by))
    if real is None:
        raise NotShared(f"This server does not share {str(path)[:200]!r}: a browser reads only {what}s inside "
                        f"{_names(readable_folders(by))}; whoever started it can add one with "
                        "`freezelab app --share DIR`.")
    return real


def check_weights(source: str, by: Caller = ANY_BROWSER) -> None:
    """A weights choice `by` may make: a browser's `file:` weights only from a folder it may read (the others are
    named checkpoints or zoo entries, whose names are checked where they are read)."""
    if source.startswith("file:"):
        check_readable(source[5:], "weights file", by)


def check_export(target: str | Path, by: Caller = ANY_BROWSER) -> None:
    """An export target `by` may use: for a browser, a folder inside the export folders, or a tracking URI the
    operator named."""
    if not by.is_browser:
        return
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
    millions = settings().max_model_m
    if millions is None:  # the operator's typo: no library model for a browser until it is mended
        raise NotShared(f"${MAX_MODEL_ENV} is not a number of millions of parameters: whoever started this server "
                        "can mend it (or use `freezelab app --max-model-size MILLIONS`).")
    return int(millions * 1e6)


def check_model_size(name: str, params: int) -> None:
    """NotShared when a browser's model is larger than the operator allows."""
    if params > max_model_params():
        raise NotShared(f"{name} has {params / 1e6:,.0f} M parameters; this server builds models of up to "
                        f"{max_model_params() / 1e6:,.0f} M for a browser; whoever started it can raise that with "
                        "`freezelab app --max-model-size MILLIONS`.")


def teacher_code_set() -> bool:
    """Whether the operator named a teacher code (the lesson's teacher view exists only then)."""
    return bool(settings().teacher_code)


def is_teacher_code(text: str) -> bool:
    """Whether `text` is the operator's teacher code (compared in constant time; never true when none is set)."""
    code = settings().teacher_code
    return bool(code) and hmac.compare_digest(code.encode(), text.strip().encode())
