"""Stored runs, exported to the experiment trackers people already use: MLflow and TensorBoard (optional
installs: the mlflow and tensorboard extras). Each run goes over whole: its config as parameters (flattened, dotted
keys), every epoch's metrics and the per-step loss with their steps, its tags, and for MLflow its checkpoint.

    to_mlflow(store, run_ids, "~/.freezelab/mlruns")       # a folder (MLflow's file store) or any tracking URI
    to_tensorboard(store, run_ids, "~/.freezelab/tensorboard")

Exporting a run again replaces its earlier export, so a run that trained on is exported once, not twice.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from core.runtime import paths
from core.store.metrics import EPOCH_METRICS
from core.store.runs import RunStore
from core.store.status import RunStatus

EXPERIMENT = "FreezeLab"
RUN_TAG = "freezelab.run_id"  # the MLflow tag that finds a run's earlier export
_MLFLOW_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.FAILED: "FAILED", RunStatus.DIVERGED: "FAILED",
                  RunStatus.STOPPED: "KILLED"}
Progress = Callable[[int, int, str], None]


TRACKERS = {"mlflow": "MLflow", "tensorboard": "TensorBoard"}  # key -> name, in the order the UI shows them


def export(tracker: str, store: RunStore, run_ids: list[str], target: str | Path,
           progress: Progress | None = None, with_model: bool = False) -> list:
    """Export runs to one of TRACKERS (`to_mlflow` or `to_tensorboard`). TrackerUnavailable when its library is
    not installed; ExportFailed, in one sentence, for whatever else stops it (a file where a folder belongs, no
    permission, a tracking server that refuses or does not answer). `with_model`: MLflow logs each run's model
    too (TensorBoard has no place for one)."""
    try:
        if tracker == "mlflow":
            return to_mlflow(store, run_ids, target, progress=progress, with_model=with_model)
        return to_tensorboard(store, run_ids, target, progress=progress)
    except TrackerUnavailable:
        raise
    except OSError as err:
        raise ExportFailed(f"Nothing more was exported to {str(target)[:200]}: "
                           f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}.") from err
    except Exception as err:  # the tracker library's own errors (MLflow's RestException, MlflowException, ...)
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ExportFailed(f"{TRACKERS[tracker]} at {str(target)[:200]} refused the export: {first}") from err


def default_targets() -> dict[str, Path]:
    """Where the app exports when the user names no place: beside the run store."""
    return {"mlflow": paths.home() / "mlruns", "tensorboard": paths.home() / "tensorboard"}


def viewer_command(tracker: str, target: str | Path) -> str:
    """The command that shows an export."""
    if tracker == "mlflow":
        return f"mlflow ui --backend-store-uri {mlflow_uri(target)}"
    return f"tensorboard --logdir {Path(target).expanduser()}"


class TrackerUnavailable(RuntimeError):
    """The tracker's library is not installed; the message says what to install."""


class ExportFailed(RuntimeError):
    """An export stopped part-way or never began; the message says where and why, in one sentence."""


def flat_params(value, prefix: str = "") -> dict[str, str | int | float | bool]:
    """A (nested) config as flat, dotted keys: {"model.backbone": "resnet18", "phases.0.plan.bn": "frozen", ...};
    tuples of plain values are joined with commas (empty ones read "")."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flat_params(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flat_params(v, f"{prefix}{i}."))
        return out
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return {prefix[:-1]: "None" if value is None else value}


@dataclasses.dataclass
class _Facts:
    params: dict
    tags: dict
    epochs: object  # store.curves: one row per epoch
    steps: object  # store.metrics.curves(kind="step"): one row per step
    started: float  # seconds since the epoch, when the run was created


def _runs_facts(store: RunStore, run_ids: list[str]):
    """What a tracker is told of each run, run by run."""
    table = store.runs().set_index("id")
    for run_id in run_ids:
        yield run_id, _facts(store, run_id, table.loc[run_id])


def _facts(store: RunStore, run_id: str, row) -> _Facts:
    cfg = store.config(run_id)
    tags = {"label": row.label, "status": row.status, "group": row.group, "backbone": cfg.model.backbone,
            "weights": cfg.model.weights, RUN_TAG: run_id}
    if row.message:
        tags["message"] = row.message
    params = {**flat_params(cfg), "params": int(row.params or 0), "trainable_params": int(row.trainable or 0)}
    return _Facts(params, tags, store.metrics.curves([run_id]), store.metrics.curves([run_id], kind="step"),
                  row.created.timestamp())


def _points(curve, name: str) -> list[tuple[int, float, float]]:
    """(step, training seconds, value) of one metric of a curve, where it was measured."""
    if name not in curve:
        return []
    rows = curve[["step", "seconds", name]].dropna()
    return [(int(step), float(seconds), float(value)) for step, seconds, value in rows.itertuples(index=False)]


# -----------------------------------------------------------------------------
# MLflow


def mlflow_uri(target: str | Path) -> str:
    """A tracking URI from a folder (MLflow's file store there) or a URI given as it is (http, sqlite, ...)."""
    text = str(target)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text) or text.startswith(("sqlite:", "databricks")):
        return text
    return Path(text).expanduser().resolve().as_uri()


def to_mlflow(store: RunStore, run_ids: list[str], target: str | Path, experiment: str = EXPERIMENT,
              progress: Progress | None = None, with_model: bool = False) -> list[str]:
    """Log each run to MLflow at `target`; returns the MLflow run ids, in the order given. `with_model`: each
    run's model at its latest checkpoint is logged too, as an MLflow PyTorch model named "model" (loaded back
    with `mlflow.pytorch.load_model`)."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise TrackerUnavailable("Exporting to MLflow needs it installed: pip install mlflow-skinny "
                                 "(or pip install -e '.[ray]').") from err
    uri = mlflow_uri(target)
    if urlparse(uri).scheme == "file":
        # MLflow 3 keeps its folder store working but refuses it unless asked: a folder is what a laptop has.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        Path(urlparse(uri).path).mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    models = None
    if with_model:  # one reader for every run: their images decoded once
        import torch

        from core.store.trained_models import TrainedModels

        models = TrainedModels(store, torch.device("cpu"))
    exported = []
    for i, (run_id, facts) in enumerate(_runs_facts(store, run_ids)):
        params, tags, epochs, steps = facts.params, facts.tags, facts.epochs, facts.steps
        for old in client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'"):
            client.delete_run(old.info.run_id)
        created = int(facts.started * 1000)
        run = client.create_run(experiment_id, start_time=created, tags=tags, run_name=tags["label"])
        metrics = [Metric(name, value, created + int(seconds * 1000), step)
                   for name in EPOCH_METRICS for step, seconds, value in _points(epochs, name)]
        metrics += [Metric("step_loss", value, created + int(seconds * 1000), step)
                    for step, seconds, value in _points(steps, "loss")]
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                         tags=[RunTag("freezelab.exported", "1")])
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics per batch
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
        checkpoint = store.checkpoints.path(run_id)
        if checkpoint.is_file():
            client.log_artifact(run.info.run_id, str(checkpoint), "checkpoint")
            if with_model:
                _log_model(uri, models, run_id, run.info.run_id)
        end = created + int((epochs.seconds.max() if not epochs.empty else 0) * 1000)
        client.set_terminated(run.info.run_id, _MLFLOW_STATUS.get(tags["status"], "FINISHED"), end_time=end)
        exported.append(run.info.run_id)
        if progress:
            progress(i + 1, len(run_ids), f"exported {tags['label']}")
    return exported


def _log_model(uri: str, models, run_id: str, mlflow_run: str) -> None:
    """The run's model as an MLflow PyTorch model in the MLflow run `mlflow_run`, with a signature read from two
    of its validation images (float, [0, 1], N x 3 x H x W) and its class names as a tag."""
    import mlflow
    import mlflow.pytorch
    import torch

    from core.data.datasets import to_float

    model, data = models.model_at(run_id)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=mlflow_run):
        mlflow.pytorch.log_model(model, name="model", input_example=to_float(data.val_x[:2]).numpy(),
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        mlflow.set_tag("classes", ",".join(data.classes))


# -----------------------------------------------------------------------------
# TensorBoard


def tensorboard_dir(store: RunStore, run_id: str, root: str | Path) -> Path:
    """Where a run's event files go: one folder per run, named by its label and id."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", store.label(run_id)).strip("_")[:60]
    return Path(root).expanduser() / f"{label}-{run_id}"


def to_tensorboard(store: RunStore, run_ids: list[str], root: str | Path,
                   progress: Progress | None = None) -> list[Path]:
    """Write each run's scalars (epoch metrics under "epoch/", the per-step loss under "step/") and its hparams
    (the flattened config, with the final validation accuracy and loss) as TensorBoard event files; returns
    the runs' folders."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise TrackerUnavailable("Exporting to TensorBoard needs it installed: pip install tensorboard "
                                 "(or pip install -e '.[ray]').") from err
    folders = []
    for i, (run_id, facts) in enumerate(_runs_facts(store, run_ids)):
        params, tags, epochs, steps, start = facts.params, facts.tags, facts.epochs, facts.steps, facts.started
        folder = tensorboard_dir(store, run_id, root)
        shutil.rmtree(folder, ignore_errors=True)  # replaced whole: no stale events from an earlier export
        with SummaryWriter(log_dir=str(folder)) as writer:
            for name in EPOCH_METRICS:
                for step, seconds, value in _points(epochs, name):
                    writer.add_scalar(f"epoch/{name}", value, step, walltime=start + seconds)
            for step, seconds, value in _points(steps, "loss"):
                writer.add_scalar("step/loss", value, step, walltime=start + seconds)
            final = epochs.iloc[-1] if not epochs.empty else None
            results = {"hparam/val_acc": float(final.val_acc) if final is not None else float("nan"),
                       "hparam/val_loss": float(final.val_loss) if final is not None else float("nan")}
            hparams = {k: v if isinstance(v, int | float | bool) else str(v) for k, v in params.items()}
            writer.add_hparams({**hparams, "label": tags["label"], "status": tags["status"]}, results, run_name=".")
        folders.append(folder)
        if progress:
            progress(i + 1, len(run_ids), f"exported {tags['label']}")
    return folders

