"""Runs' files: each run's latest checkpoint, `$FREEZELAB_HOME/runs/<id>/checkpoint.pt`, and its weights' history
beside it, `runs/<id>/history/step-<step>.pt` (HISTORY of them). The run store's part `store.checkpoints`; it
alone writes the run's folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core.runtime import paths

HISTORY = 12  # weight snapshots kept per run (the first and the latest ones)


class CheckpointUnreadable(ValueError):
    """A checkpoint file that exists but cannot be read."""


def _read(path: Path, mmap: bool = False) -> dict:
    try:
        import torch  # here: listing and reading runs needs no torch

        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # a truncated or foreign file: say so, never guess
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]  # some errors carry no message
        raise CheckpointUnreadable(f"{path} cannot be read ({reason})") from err


def _write(path: Path, obj: dict) -> None:
    """torch.save, written atomically; torch imported here, where a trainer (which has it) saves."""
    import torch

    paths.atomic_write(path, lambda f: torch.save(obj, f))


class Checkpoints:
    def __init__(self, folder: Path):
        self.folder = folder  # one folder per run in it, named by the run's id

    def path(self, run_id: str) -> Path:
        """Where the run's latest checkpoint is (or will be)."""
        return self.folder / run_id / "checkpoint.pt"

    def _history(self, run_id: str) -> Path:
        return self.folder / run_id / "history"

    def save(self, run_id: str, saved: dict, history: bool = True) -> Path:
        """The run's latest full checkpoint (written atomically: a failed write leaves the previous one),
        plus, with `history`, its weights at this step in the run's history."""
        path = self.path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, saved)
        step = saved.get("counters", {}).get("step")
        if history and step is not None:
            self.keep_weights(run_id, step, saved["model"])
        return path

    def load(self, run_id: str, mmap: bool = False) -> dict | None:
        """The run's latest checkpoint; None when it has none; CheckpointUnreadable when it cannot be read.
        `mmap`: map the tensors' storage instead of reading it (to check a file cheaply)."""
        path = self.path(run_id)
        return _read(path, mmap) if path.is_file() else None

    def keep_weights(self, run_id: str, step: int, weights: dict) -> None:
        """Add the run's weights at `step` to its history (HISTORY of them: the first and the latest)."""
        history = self._history(run_id)
        history.mkdir(parents=True, exist_ok=True)
        _write(history / f"step-{step:08d}.pt", weights)
        for old in sorted(history.glob("step-*.pt"))[1:-HISTORY + 1]:
            old.unlink()

    def steps(self, run_id: str) -> list[int]:
        """Steps at which the run's weights were kept: its start, each epoch's end and each burst's end."""
        return sorted(int(p.stem.split("-")[1]) for p in self._history(run_id).glob("step-*.pt"))

    def weights_at(self, run_id: str, step: int) -> dict:
        """The weights a run kept at `step`; KeyError when it kept none, CheckpointUnreadable when they cannot be
        read."""
        path = self._history(run_id) / f"step-{step:08d}.pt"
        if not path.is_file():
            raise KeyError(f"Run {run_id} kept no weights at step {step}.")
        return _read(path)

    def delete(self, run_id: str) -> None:
        """Remove the run's folder: its checkpoint and its history."""
        shutil.rmtree(self.folder / run_id, ignore_errors=True)
