"""Safe extraction of an uploaded zip of class folders: nothing lands outside the target folder,
links are refused, and the size, the file count, each entry's size and its compression ratio are bounded
while reading (headers can lie). Whatever is wrong with an archive (damaged, encrypted, an unsupported
compression method, a name that is both a file and a folder, a name too long) becomes an
`ArchiveRefused` saying why; nothing is left half-extracted."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_BYTES = 2 * 1024**3  # uncompressed, the whole archive
MAX_FILES = 200_000
MAX_ENTRY_BYTES = 256 * 1024**2  # one file: far above any image a class would use
MAX_RATIO = 100  # uncompressed / compressed size of an entry; images barely compress, bombs do by 1000x
RATIO_FROM = 1 << 20  # the ratio is judged once an entry has written this much (tiny files compress well)
MAX_NAME_BYTES = 255  # one path component, as most file systems allow
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class ArchiveRefused(ValueError):
    """An archive FreezeLab will not extract; the message says why."""


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArchiveRefused(f"{name!r} would land outside the target folder.")
    return path


def _check_members(members: list[zipfile.ZipInfo], max_bytes: int, max_files: int) -> list[PurePosixPath]:
    """Refuse, before anything is written, what the central directory already shows is wrong."""
    if len(members) > max_files:
        raise ArchiveRefused(f"The archive holds {len(members)} files; the limit is {max_files}.")
    names = [_safe_name(m.filename) for m in members]
    files, folders = set(), set()
    for member, name in zip(members, names, strict=True):
        shown = repr(member.filename[:80])
        if any(len(part.encode()) > MAX_NAME_BYTES for part in name.parts):
            raise ArchiveRefused(f"{shown} has a name longer than {MAX_NAME_BYTES} bytes.")
        if member.flag_bits & 0x1:
            raise ArchiveRefused(f"{shown} is encrypted; FreezeLab does not open password-protected zips.")
        if member.compress_type not in _METHODS:
            raise ArchiveRefused(f"{shown} uses a compression method (number {member.compress_type}) that "
                                 "FreezeLab cannot read; zip it again with the usual one (deflate).")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ArchiveRefused(f"{shown} is a link; links are not extracted.")
        if member.file_size > RATIO_FROM and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise ArchiveRefused(f"{shown} is compressed {member.file_size / max(member.compress_size, 1):.0f} "
                                 f"times, more than the {MAX_RATIO} an image can be: a zip bomb.")
        if member.file_size > MAX_ENTRY_BYTES:
            raise ArchiveRefused(f"{shown} unpacks to {member.file_size / 2**20:.0f} MB; one file may take at "
                                 f"most {MAX_ENTRY_BYTES / 2**20:.0f} MB.")
        if name in files:
            raise ArchiveRefused(f"{shown} appears twice in the archive.")
        files.add(name)
        folders.update(name.parents)
    clash = files & folders
    if clash:
        raise ArchiveRefused(f"{str(sorted(clash)[0])!r} is both a file and a folder in this archive.")
    if sum(m.file_size for m in members) > max_bytes:
        raise ArchiveRefused(f"The archive unpacks to more than {max_bytes / 2**20:.0f} MB.")
    return names


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
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise ArchiveRefused(f"This is not a zip archive, or a damaged one ({err}).") from err
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            names = _check_members(members, max_bytes, max_files)
            written = 0
            for member, name in zip(members, names, strict=True):
                if name.parts[0] == "__MACOSX" or name.name.startswith("."):
                    continue  # resource forks and hidden files are not images
                target = tmp.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                written += _extract_member(archive, member, target, max_bytes - written)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return classes_root(dest)


def _extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Write one entry, bounding what it really unpacks to (its header may lie); returns bytes written."""
    shown, written = repr(member.filename[:80]), 0
    try:
        with archive.open(member) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > budget:
                    raise ArchiveRefused("The archive unpacks to more than its size bound.")
                if written > MAX_ENTRY_BYTES:
                    raise ArchiveRefused(f"{shown} unpacks to more than {MAX_ENTRY_BYTES / 2**20:.0f} MB.")
                if written > RATIO_FROM and written > MAX_RATIO * max(member.compress_size, 1):
                    raise ArchiveRefused(f"{shown} is compressed more than {MAX_RATIO} times: a zip bomb.")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ArchiveRefused(f"{shown} is damaged ({err}).") from err
    except (RuntimeError, NotImplementedError) as err:  # encryption or a method the headers hid
        raise ArchiveRefused(f"{shown} cannot be read ({err}).") from err
    except OSError as err:
        raise ArchiveRefused(f"{shown} cannot be written here ({err.strerror or err}).") from err
    return written


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
