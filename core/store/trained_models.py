"""Models read back from the run store: a run's model at a kept step or its latest checkpoint, and the run as
its checkpoint left it (for the audit). Reading is not training: this never trains, and lives beside the store
in whichever process shows the models (Explain, Inside, the audit), on the images that process decoded."""

from __future__ import annotations

import torch

from core.data.datasets import ImageData, LoadedImages
from core.models.network import FreezeLabNet
from core.runtime.device import pick_device
from core.store.checkpoints import CheckpointUnreadable
from core.store.runs import RunStore
from core.training.loop import RunState, model_from_state, restore_run


class TrainedModels:
    def __init__(self, store: RunStore, device: torch.device | None = None, images: LoadedImages | None = None):
        self.store = store
        self.device = device or pick_device()
        self.images = images or LoadedImages()  # the pages hand theirs over (`add`): reading a model decodes nothing

    def has_checkpoint(self, run_id: str) -> bool:
        """Whether the run has a checkpoint to read (it has once its first burst has ended)."""
        return self.checkpoint_version(run_id) is not None

    def checkpoint_problem(self, run_id: str) -> str | None:
        """Why the run's checkpoint cannot be read, in words; None when it can, or when there is none. Cheap: the
        tensors are mapped, not read."""
        try:
            self.store.checkpoints.load(run_id, mmap=True)
        except CheckpointUnreadable as err:
            return (f"its checkpoint cannot be read ({err}); a burst on the Train page offers to restart it "
                    "from step 0")
        return None

    def checkpoint_version(self, run_id: str) -> int | None:
        """Changes whenever the run's checkpoint is rewritten (the key that retires cached results); None
        without one."""
        path = self.store.checkpoints.path(run_id)
        return path.stat().st_mtime_ns if path.is_file() else None

    def model_at(self, run_id: str, step: int | None = None) -> tuple[FreezeLabNet, ImageData] | None:
        """(model, data) of a run at a kept step (its latest checkpoint when None), on this device, in eval
        mode; None before its first burst has ended."""
        cfg = self.store.config(run_id)
        if step is None:
            saved = self.store.checkpoints.load(run_id)
            if saved is None:
                return None
            weights = saved["model"]
        else:
            weights = self.store.checkpoints.weights_at(run_id, step)
        data = self.images.get(cfg.data)
        return model_from_state(cfg, weights, data.num_classes, data.config.image_size, self.device), data

    def restored(self, run_id: str) -> tuple[RunState, dict] | None:
        """(state, checkpoint) of a run as its latest checkpoint left it, on the CPU, not trained further: for
        the audit. None before its first burst has ended."""
        saved = self.store.checkpoints.load(run_id)
        if saved is None:
            return None
        cfg = self.store.config(run_id)
        return restore_run(cfg, saved, self.images.get(cfg.data), torch.device("cpu")), saved
