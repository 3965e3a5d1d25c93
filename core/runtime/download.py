"""One way to fetch a file: streamed to a temporary name, checked, then moved into place."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[int, int, str], None]  # (done, total, what is happening); total 0 when unknown


def download(
    url: str,
    dest: Path,
    progress: Progress | None = None,
    md5: str | None = None,
    sha256_prefix: str | None = None,
) -> None:
    """Fetch `url` into `dest`. A broken or mismatched download never replaces `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digests = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                for d in digests.values():
                    d.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total, f"downloading {dest.name}")
        got_md5, got_sha = digests["md5"].hexdigest(), digests["sha256"].hexdigest()
        if md5 and got_md5 != md5:
            raise OSError(f"checksum mismatch for {url}: MD5 {got_md5}, expected {md5}")
        if sha256_prefix and not got_sha.startswith(sha256_prefix):
            raise OSError(f"checksum mismatch for {url}: SHA-256 {got_sha[:12]}..., expected {sha256_prefix}...")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
