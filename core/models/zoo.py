"""The local model zoo: pretrained backbones as `<name>/model.pt` plus `<name>/manifest.json`.

Entries live in `$FREEZELAB_HOME/zoo` (made by `python -m core pretrain`) and in the bundled
`core/assets/zoo` (the demo net). A user's entry of the same name comes first.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.runtime import paths
from core.runtime.paths import atomic_write

BUNDLED = Path(__file__).parent / "assets" / "zoo"  # shipped with the code (the demo net)
CHECKPOINT = "model.pt"
MANIFEST = "manifest.json"


def roots() -> list[Path]:
    """Where entries are looked up, in order: the bundled ones first, so no user entry shadows them."""
    return [BUNDLED, paths.zoo_dir()]


MAX_NAME_CHARS = 255  # a folder name's limit on Linux, in bytes (UTF-8: an accented letter takes two)


def plain_name(name: str) -> bool:
    """Whether `name` is a plain folder name (no path, no hidden or parent folder): the one rule for an entry's
    name, read or written, so `zoo:../..` reaches nothing outside the zoo."""
    return (0 < len(name.encode(errors="replace")) <= MAX_NAME_CHARS and "/" not in name and "\\" not in name
            and "\0" not in name and not name.startswith("."))


def entry_dir(name: str) -> Path | None:
    """The folder of zoo entry `name`, or None when no root has it (or the name is not a plain one)."""
    if not plain_name(name):
        return None
    for root in roots():
        if (root / name / CHECKPOINT).is_file():
            return root / name
    return None


def _manifest(folder: Path) -> dict:
    """An entry's manifest; {} when it has none, {"unreadable": why} when it is not a JSON object."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return {"unreadable": f"{path} is not readable JSON ({err})"}
    if not isinstance(manifest, dict):
        return {"unreadable": f"{path} holds no JSON object"}
    shapes = {"backbone": str, "data": dict, "classes": list}  # what the pages read from a manifest
    wrong = [key for key, kind in shapes.items() if key in manifest and not isinstance(manifest[key], kind)]
    if "classes" in manifest and not wrong and not all(isinstance(c, str) for c in manifest["classes"]):
        wrong = ["classes"]
    if wrong:
        return {"unreadable": f"{path} holds {wrong[0]!r} in the wrong shape (backbone: a name, data: an object, "
                              "classes: a list of names)"}
    return manifest


def read_manifest(name: str) -> dict:
    folder = entry_dir(name)
    return {} if folder is None else _manifest(folder)


def list_entries() -> list[dict]:
    """Every entry's manifest (with its name and folder), a bundled entry before a user's of that name. One whose
    manifest cannot be read is listed with an "unreadable" reason and nothing else from it."""
    seen: dict[str, dict] = {}
    for root in roots():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.name not in seen and (folder / CHECKPOINT).is_file():
                seen[folder.name] = {**_manifest(folder), "name": folder.name, "folder": str(folder)}
    return list(seen.values())


def check_new_name(name: str, root: Path | None = None, replace: bool = False) -> None:
    """ValueError, in words, unless `name` may name a new entry in `root` (the local zoo by default): a plain
    folder name, not a bundled entry's (in the local zoo), and not taken there unless `replace` says so."""
    shown = name if len(name) <= 60 else name[:57] + "…"
    if not plain_name(name):
        raise ValueError(f"Zoo entry names are plain folder names of at most {MAX_NAME_CHARS} bytes, not "
                         f"{shown!r}.")
    folder = Path(root or paths.zoo_dir())
    if folder.resolve() != BUNDLED.resolve() and (BUNDLED / name).exists():
        raise ValueError(f"{shown!r} is a bundled zoo entry's name; choose another.")
    if (folder / name).exists() and not replace:
        raise ValueError(f"The zoo already has an entry named {shown!r}; choose another name.")


def save_entry(name: str, backbone: str, state_dict: dict, manifest: dict, root: Path | None = None,
               replace: bool = False) -> Path:
    """Write an entry atomically: a reader sees the old entry or the whole new one, never half. A taken name is
    refused unless `replace` (check_new_name)."""
    import torch  # here: reading the zoo (the command line's checks, the pickers) needs no torch

    check_new_name(name, root, replace)
    folder = Path(root or paths.zoo_dir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / CHECKPOINT, lambda f: torch.save({"backbone": backbone, "state_dict": state_dict}, f))
    text = json.dumps({**manifest, "backbone": backbone}, indent=2, sort_keys=True) + "\n"
    atomic_write(folder / MANIFEST, lambda f: f.write(text.encode()))
    return folder
