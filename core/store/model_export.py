"""A trained run's model leaving FreezeLab: its weights in a folder, with a manifest beside them that says what
is needed to use it (class names, input size and range, normalisation, backbone and head, the run, its final
accuracy).

    state_dict    model.pt    the weights (torch.save); FreezeLab rebuilds the model from the manifest's config
    torch_export  model.pt2   torch.export's program: `torch.export.load("model.pt2").module()`, no FreezeLab
    onnx          model.onnx  for ONNX Runtime and other runtimes (the `onnx` extra)

Every exported model takes float images in [0, 1], (N, 3, H, W) at the size the manifest names, and returns
logits (N, classes): resizing to the backbone's size and normalising happen inside it, as in FreezeLab. The
format without FreezeLab is torch.export's rather than TorchScript's: `torch.jit.trace` warns it is deprecated
in the torch this project pins.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from core.data.datasets import to_float
from core.runtime.version import version
from core.store.checkpoints import CheckpointUnreadable
from core.store.runs import RunStore, config_from_json, config_to_json

if TYPE_CHECKING:  # torch and the models are imported when a model is exported: the CLI's --help needs neither
    import torch

    from core.store.trained_models import TrainedModels

MANIFEST = "freezelab-model.json"


class ModelFormat(StrEnum):
    STATE_DICT = "state_dict"
    TORCH_EXPORT = "torch_export"
    ONNX = "onnx"

    @property
    def file(self) -> str:
        return {"state_dict": "model.pt", "torch_export": "model.pt2", "onnx": "model.onnx"}[self.value]


ONNX_NEEDS = ("onnx", "onnxscript", "onnxruntime")  # torch's exporter needs the first two; reading it back, the third


def available_formats() -> list[ModelFormat]:
    """The formats this installation can write (ONNX only with the onnx extra)."""
    import importlib.util

    onnx = all(importlib.util.find_spec(m) for m in ONNX_NEEDS)
    return [f for f in ModelFormat if f is not ModelFormat.ONNX or onnx]


class ExportUnavailable(Exception):
    """The run or the format cannot be exported here, in one sentence for the user."""


def _example(images: torch.Tensor) -> torch.Tensor:
    """Two validation images as the exported model takes them (float, [0, 1], contiguous on the CPU)."""
    return to_float(images[:2].cpu()).contiguous()


def _batch_dim():
    import torch

    return ({0: torch.export.Dim.DYNAMIC},)  # any number of images, not only the example's two


def _write_onnx(model, example: torch.Tensor, path: Path) -> None:
    import torch

    if ModelFormat.ONNX not in available_formats():
        raise ExportUnavailable("ONNX export needs the onnx extra: pip install 'freezelab[onnx]'.")
    torch.onnx.export(model, (example,), str(path), dynamic_shapes=_batch_dim(), dynamo=True, verbose=False,
                      external_data=False,  # one file, as the manifest names
                      input_names=["images"], output_names=["logits"])


def manifest(store: RunStore, run_id: str, fmt: ModelFormat, model, data, step: int) -> dict:
    """What a program needs to use the exported model, and where it came from."""
    import pandas as pd
    import torch

    cfg = store.config(run_id)
    row = store.runs().set_index("id").loc[run_id]
    height, width = data.val_x.shape[-2:]
    return {
        "format": fmt.value, "file": fmt.file, "run_id": run_id, "label": store.label(run_id),
        "final_val_acc": float(row.val_acc) if pd.notna(row.val_acc) else None, "step": step,  # None: no epoch yet
        "classes": list(data.classes),
        "input": {"layout": "NCHW", "dtype": "float32", "range": [0.0, 1.0], "height": int(height),
                  "width": int(width), "note": "resized inside the model to image_size, then normalised"},
        "image_size": model.image_size,
        "normalisation": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
                          "inside_the_model": True},
        "backbone": cfg.model.backbone, "weights": cfg.model.weights, "head": asdict(cfg.model.head),
        "output": "logits, one per class in the order of `classes`",
        "config": json.loads(config_to_json(cfg)),
        "freezelab": version(), "torch": torch.__version__, "exported": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _buildable(store: RunStore, run_id: str) -> None:
    """Refuse, in a sentence, a run whose network this process cannot build (an operator's own network whose file
    was not named here, a timm model without timm), before anything is read or written."""
    from core.models import backbones
    from core.models.own import MODEL_FILES_ENV

    backbone = store.config(run_id).model.backbone
    try:
        backbones.get_spec(backbone)
    except ValueError as err:
        if backbone.startswith("own:"):
            raise ExportUnavailable(
                f"Run {run_id} trained the operator's own network {backbone}, which this process was not given: "
                f"name its file in ${MODEL_FILES_ENV} (FILE.py:FUNCTION) to export it.") from None
        raise ExportUnavailable(f"Run {run_id} cannot be exported here: {err}") from None


TRACER_LOGS = ("torch.fx.experimental.symbolic_shapes", "torch.export._trace")


@contextlib.contextmanager
def _quiet_tracer():
    """torch.export, meeting what it cannot trace, prints the partial graph to stderr and logs it; the refusal says
    it in one sentence instead. What reached stderr meanwhile is passed on if the tracing succeeds (stderr is the
    process's: another thread's lines are delayed, not lost, unless the tracing fails)."""
    loggers = [logging.getLogger(name) for name in TRACER_LOGS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
        sys.stderr.write(held.getvalue())
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _write_model(model, example: torch.Tensor, fmt: ModelFormat, path: Path, run_id: str) -> None:
    """The model as `fmt` into `path`, a new file of this export's own; a network the format cannot express is
    refused in one sentence."""
    import torch

    try:
        if fmt is ModelFormat.STATE_DICT:
            with path.open("wb") as file:
                torch.save(model.state_dict(), file)
            return
        with _quiet_tracer():
            if fmt is ModelFormat.TORCH_EXPORT:
                program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim())
                with path.open("wb") as file:
                    torch.export.save(program, file)
            else:
                _write_onnx(model, example, path)
    except (ExportUnavailable, OSError):
        raise  # already a sentence; a folder that cannot be written is the caller's to say (it names the folder)
    except Exception as err:  # the tracer's refusals have many types (a data-dependent branch, an unsupported op)
        first = re.split(r"(?<=\.)\s", (str(err).strip().splitlines() or [""])[0])[0].rstrip(".")[:160]
        raise ExportUnavailable(
            f"Run {run_id}'s network cannot be written as {fmt.value} ({type(err).__name__}: {first}); "
            "export it as state_dict instead.") from None


def _first_missing(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist yet (what making it creates); None if it is
    there."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing = candidate
    return missing


@contextlib.contextmanager
def _staged(out: Path):
    """Files for folder `out` written under new names of their own, then each moved onto its name by os.replace
    once all are written: a name that is a symbolic link already is replaced itself, its target never written,
    and a reader never sees half a file. Yields `stage(name) -> Path`, a new empty file (O_EXCL, no link followed)
    to write. On any failure the new files go, and so does `out` if this export made it (a folder that was there
    keeps its other files)."""
    made = _first_missing(out)
    out.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}

    def stage(name: str) -> Path:
        path = out / f".freezelab-{secrets.token_hex(6)}-{name}"  # ends as `name` does: writers that check suffixes
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))  # the umask applies
        staged[name] = path
        return path

    try:
        yield stage
        for name, path in staged.items():
            os.replace(path, out / name)
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def export_model(store: RunStore, run_id: str, out: Path | str, fmt: ModelFormat | str = ModelFormat.STATE_DICT,
                 models: TrainedModels | None = None) -> Path:
    """Write the run's latest checkpoint's model as `fmt` into folder `out` (made if missing), with its manifest;
    returns the model file's path. Only `out`'s two names are written, each replaced whole (a link there is
    replaced, not followed); on a refusal (ExportUnavailable, one sentence) or a write error nothing new is left."""
    import torch

    from core.store.trained_models import TrainedModels

    fmt = ModelFormat(fmt)
    _buildable(store, run_id)
    # On the CPU, whatever device `models` reads onto: what is exported runs anywhere. Its decoded images are shared.
    on_cpu = TrainedModels(store, torch.device("cpu"), images=models.images if models else None)
    try:
        loaded = on_cpu.model_at(run_id)
    except CheckpointUnreadable as err:
        raise ExportUnavailable(f"Run {run_id}'s checkpoint cannot be read ({err}).") from None
    if loaded is None:
        raise ExportUnavailable(f"Run {run_id} has no checkpoint yet (one is written when a burst ends).")
    model, data = loaded
    step = store.checkpoints.load(run_id, mmap=True)["counters"]["step"]  # mapped: the tensors are not read again
    info = manifest(store, run_id, fmt, model, data, step)
    out = Path(out).absolute()
    with _staged(out) as stage:
        _write_model(model, _example(data.val_x), fmt, stage(fmt.file), run_id)
        stage(MANIFEST).write_text(json.dumps(info, indent=1))
    return out / fmt.file


def export_zip(store: RunStore, run_id: str, fmt: ModelFormat | str, models: TrainedModels | None = None) -> bytes:
    """The exported folder as a zip, for a download button."""
    with tempfile.TemporaryDirectory() as folder:
        export_model(store, run_id, folder, fmt, models)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(Path(folder).iterdir()):
                zipped.write(path, f"freezelab-{run_id}/{path.name}")
        return buffer.getvalue()


def load_exported(folder: Path | str) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """(predict, manifest) of an exported folder: predict takes float images in [0, 1] and returns logits. The
    state dict is read with weights_only=True and put into the architecture the manifest's config builds."""
    import torch

    from core.training.loop import model_from_state

    folder = Path(folder)
    info = json.loads((folder / MANIFEST).read_text())
    fmt, path = ModelFormat(info["format"]), folder / info["file"]
    if fmt is ModelFormat.STATE_DICT:
        weights = torch.load(path, map_location="cpu", weights_only=True)
        model = model_from_state(config_from_json(json.dumps(info["config"])), weights, len(info["classes"]),
                                 info["image_size"])
        return lambda x: model(x).detach(), info
    if fmt is ModelFormat.TORCH_EXPORT:
        program = torch.export.load(path).module()
        return lambda x: program(x).detach(), info
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(np.asarray(session.run(None, {"images": x.cpu().numpy()})[0])), info
