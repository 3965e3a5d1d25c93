"""Models read back from the run store: a run's model at a kept step or its latest checkpoint, and the run as
its checkpoint left it (for the audit). Reading is not training: this never trains, and lives beside the store
in whichever process shows the models (Explain, Inside, the audit), on the images that process decoded."""

from __future__ import annotations

import threading

import torch

from core.data.datasets import DataConfig, ImageData, load_data
from core.models.backbones import FreezeLabNet
from core.runtime.device import pick_device
from core.store.runs import RunStore
from core.training.loop import RunState, model_from_state, restore_run


class TrainedModels:
    def __init__(self, store: RunStore, device: torch.device | None = None):
        self.store = store
        self.device = device or pick_device()
        self._lock = threading.Lock()
        self._data: dict[DataConfig, ImageData] = {}

    def add_data(self, data: ImageData) -> None:
        """Images decoded already (by the pages), so reading a model does not decode them again."""
        with self._lock:
            self._data.setdefault(data.config, data)

    def data_for(self, cfg: DataConfig) -> ImageData:
        with self._lock:
            loaded = self._data.get(cfg)
        if loaded is None:
            loaded = load_data(cfg)
            self.add_data(loaded)
        return loaded

    def has_checkpoint(self, run_id: str) -> bool:
        """Whether the run has a checkpoint to read (it has once its first burst has ended)."""
        return self.checkpoint_version(run_id) is not None

    def checkpoint_version(self, run_id: str) -> int | None:
        """Changes whenever the run's checkpoint is rewritten (the key that retires cached results); None
        without one."""
        path = self.store.checkpoint_path(run_id)
        return path.stat().st_mtime_ns if path.is_file() else None

    def model_at(self, run_id: str, step: int | None = None) -> tuple[FreezeLabNet, ImageData] | None:
        """(model, data) of a run at a kept step (its latest checkpoint when None), on this device, in eval
        mode; None before its first burst has ended."""
        cfg = self.store.config(run_id)
        if step is None:
            saved = self.store.load_checkpoint(run_id)
            if saved is None:
                return None
            weights = saved["model"]
        else:
            weights = self.store.weights_at(run_id, step)
        data = self.data_for(cfg.data)
        return model_from_state(cfg, weights, data.num_classes, data.config.image_size, self.device), data

    def restored(self, run_id: str) -> tuple[RunState, dict] | None:
        """(state, checkpoint) of a run as its latest checkpoint left it, on the CPU, not trained further: for
        the audit. None before its first burst has ended."""
        saved = self.store.load_checkpoint(run_id)
        if saved is None:
            return None
        cfg = self.store.config(run_id)
        return restore_run(cfg, saved, self.data_for(cfg.data), torch.device("cpu")), saved
