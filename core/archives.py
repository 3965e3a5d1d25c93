"""Safe extraction of an uploaded zip of class folders: nothing lands outside the target folder,
links are refused, and the size and file count are bounded while reading (headers can lie)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_BYTES = 2 * 1024**3  # uncompressed
MAX_FILES = 200_000


class ArchiveRefused(ValueError):
    """An archive FreezeLab will not extract; the message says why."""


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArchiveRefused(f"{name!r} would land outside the target folder.")
    return path


def extract_zip(source: Path | BinaryIO, dest: Path, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> Path:
    """Extract `source` into `dest` (which must not exist yet) and return the folder holding the classes:
    `dest` itself, or its single top-level folder."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists already.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        try:
            archive = zipfile.ZipFile(source)
        except zipfile.BadZipFile as err:
            raise ArchiveRefused(f"This is not a zip archive ({err}).") from err
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > max_files:
                raise ArchiveRefused(f"The archive holds {len(members)} files; the limit is {max_files}.")
            written = 0
            for member in members:
                name = _safe_name(member.filename)
                if name.parts[0] == "__MACOSX" or name.name.startswith("."):
                    continue  # resource forks and hidden files are not images
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise ArchiveRefused(f"{member.filename!r} is a link; links are not extracted.")
                target = tmp.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArchiveRefused(f"The archive unpacks to more than {max_bytes / 2**20:.0f} MB.")
                        out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return classes_root(dest)


def classes_root(folder: Path) -> Path:
    """`folder`, or its only sub-folder when the archive wrapped everything in one."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def extract_upload(raw: bytes, root: Path) -> Path:
    """Extract uploaded zip bytes under `root` once per content; returns the folder holding the classes."""
    target = Path(root) / hashlib.sha256(raw).hexdigest()[:16]
    if not target.exists():
        extract_zip(io.BytesIO(raw), target)
    return classes_root(target)
