import io
import stat
import zipfile

import pytest
from PIL import Image

from core.archives import ArchiveRefused, extract_upload, extract_zip
from core.data import DataConfig, load_data


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
