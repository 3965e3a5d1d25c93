import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.data.archives import ArchiveRefused, extract_upload, extract_zip
from core.data.datasets import DataConfig, load_data


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buf, "PNG")
    return buf.getvalue()


def test_a_zip_of_class_folders_extracts_once_and_loads(tmp_path):
    raw = _zip({f"pets/{c}/{i}.png": _png((i * 40, 0, 0) if c == "cat" else (0, i * 40, 0))
                for c in ("cat", "dog") for i in range(5)} | {"__MACOSX/pets/._x": b"junk", "pets/.DS_Store": b"x"})
    root = extract_upload(raw, tmp_path)
    assert root.name == "pets" and sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    assert extract_upload(raw, tmp_path) == root  # the same upload is not extracted twice
    assert len(list(tmp_path.iterdir())) == 1
    data = load_data(DataConfig(source="folder", path=str(root), per_class=None, val_fraction=0.2, image_size=12))
    assert data.classes == ["cat", "dog"] and data.class_counts() == {"cat": (4, 1), "dog": (4, 1)}


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png"])
def test_paths_outside_the_target_are_refused(tmp_path, name):
    with pytest.raises(ArchiveRefused, match="outside the target"):
        extract_zip(io.BytesIO(_zip({"ok/a.png": b"1", name: b"2"})), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.png").exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-extracted is left behind


def test_links_size_and_count_are_bounded(tmp_path):
    with pytest.raises(ArchiveRefused, match="is a link"):
        extract_zip(io.BytesIO(_zip({"a/x.png": b"1"}, links={"a/passwd": "/etc/passwd"})), tmp_path / "l")
    bomb = _zip({"a/zeros.png": bytes(5_000_000)})
    assert len(bomb) < 50_000  # compresses a hundredfold
    with pytest.raises(ArchiveRefused, match="more than"):
        extract_zip(io.BytesIO(bomb), tmp_path / "b", max_bytes=1_000_000)
    with pytest.raises(ArchiveRefused, match="holds 3 files"):
        extract_zip(io.BytesIO(_zip({f"a/{i}": b"1" for i in range(3)})), tmp_path / "c", max_files=2)
    with pytest.raises(ArchiveRefused, match="not a zip"):
        extract_zip(io.BytesIO(b"plain text"), tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def _patched(raw: bytes, local_offset: int, central_offset: int, value: int, flag: bool = False) -> bytes:
    """The zip with one header field changed in both the local header and the central directory."""
    out = bytearray(raw)
    i, j = out.find(b"PK\x03\x04"), out.find(b"PK\x01\x02")
    for at in (i + local_offset, j + central_offset):
        out[at] = out[at] | value if flag else value
    return bytes(out)


def _bomb(entries: int, megabytes: int) -> bytes:
    """`entries` files of `megabytes` MB of zeros each."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(entries):
            with zf.open(f"cats/zeros-{i}.png", "w") as f:
                for _ in range(megabytes):
                    f.write(bytes(1 << 20))
    return buf.getvalue()


@pytest.mark.slow
def test_a_zip_bomb_under_the_total_bound_is_refused(tmp_path):
    raw = _bomb(16, 64)  # 1 GB of zeros in about 1 MB, each entry under the per-entry bound
    assert len(raw) < 1.1 * 2**20
    with pytest.raises(ArchiveRefused, match="zip bomb"):
        extract_zip(io.BytesIO(raw), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # nothing half-extracted


def test_every_broken_archive_is_refused_with_a_reason(tmp_path):
    plain = _zip({"cats/a.png": _png((200, 0, 0)) * 20})
    damaged = bytearray(plain)
    start = damaged.find(b"PK\x03\x04") + 30 + len("cats/a.png")
    damaged[start + 10 : start + 30] = bytes(20)  # inside the compressed data
    cases = {
        "damaged": (bytes(damaged), "damaged"),
        "truncated": (plain[: len(plain) // 2], "not a zip archive, or a damaged one"),
        "encrypted": (_patched(plain, 6, 8, 1, flag=True), "encrypted"),
        "unsupported method": (_patched(plain, 8, 10, 99), "compression method"),
        "file and folder": (_zip({"cats": b"x", "cats/a.png": b"y"}), "both a file and a folder"),
        "long name": (_zip({"cats/" + "n" * 300 + ".png": b"y"}), "longer than 255 bytes"),
        "not a zip": (b"just some text", "not a zip archive"),
    }
    for what, (raw, says) in cases.items():
        with pytest.raises(ArchiveRefused, match=says):
            extract_zip(io.BytesIO(raw), tmp_path / "out")
        assert not (tmp_path / "out").exists(), what


def test_one_huge_entry_is_refused(tmp_path, monkeypatch):
    from core.data import archives

    monkeypatch.setattr(archives, "MAX_ENTRY_BYTES", 2 * 2**20)
    with pytest.raises(ArchiveRefused, match="one file may take at most 2 MB"):
        noise = np.random.default_rng(0).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes()  # incompressible
        extract_zip(io.BytesIO(_zip({"cats/big.png": noise})), tmp_path / "out")
