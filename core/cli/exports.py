"""What leaves FreezeLab: `export` (runs to MLflow and TensorBoard), `report` (a comparison as one HTML file) and
`export-model` (a run's trained model as a file others can use), each beside its parser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from core.cli.common import runs_asked
from core.store.model_export import ModelFormat
from core.store.runs import RunStore


def cmd_export(args: argparse.Namespace) -> int:
    from core.insight import trackers

    if not (args.mlflow or args.tensorboard):
        print("Say where: --mlflow DIR_OR_URI and/or --tensorboard DIR.", file=sys.stderr)
        return 2
    store = RunStore()
    run_ids = runs_asked(store, args.runs, args.group, args.invocation.prog)
    try:
        for tracker, name in trackers.TRACKERS.items():
            target = getattr(args, tracker)
            if not target:
                continue
            with tqdm(total=len(run_ids), unit="run", desc=name, disable=None) as bar:
                trackers.export(tracker, store, run_ids, target, with_model=args.with_model,
                                progress=lambda done, total, what, bar=bar: bar.update(done - bar.n))
            print(f"{len(run_ids)} runs exported to {name} at {target}; look with: "
                  f"{trackers.viewer_command(tracker, target)}")
    except (trackers.TrackerUnavailable, trackers.ExportFailed) as err:
        print(err, file=sys.stderr)
        return 2
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import torch

    from core.insight import report
    from core.store.trained_models import TrainedModels

    store = RunStore()
    run_ids = runs_asked(store, args.run_ids, args.group, args.invocation.prog, when_none="none")
    with tqdm(total=4, unit="part", desc="report", disable=None, bar_format="{l_bar}{bar}| {postfix}") as bar:
        def progress(done: float, total: int, what: str) -> None:
            bar.n = done
            bar.set_postfix_str(what)

        text = report.report_html(store, run_ids, TrainedModels(store, torch.device("cpu")), args.image,
                                  progress=progress)
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as err:
        print(f"Cannot write {args.out}: {err.strerror or err}.", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(text.encode()) / 1e6:.1f} MB; opens offline in any browser)")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from core.store import model_export

    store = RunStore()
    runs_asked(store, [args.run_id], None, args.invocation.prog)
    try:
        path = model_export.export_model(store, args.run_id, args.out, args.format)
    except model_export.ExportUnavailable as err:
        print(err, file=sys.stderr)
        return 2
    except OSError as err:
        print(f"Cannot write {args.out}: {err.strerror or err}.", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.parent / model_export.MANIFEST} (class names, input size, normalisation, "
          "the run and its accuracy)")
    return 0


def add_parsers(sub, prog: str) -> None:
    p = sub.add_parser("export", help="export runs to MLflow and/or TensorBoard (optional installs)")
    p.add_argument("--mlflow", metavar="DIR_OR_URI", help="a folder (MLflow's file store) or a tracking URI")
    p.add_argument("--tensorboard", metavar="DIR", help="a log folder: one sub-folder of event files per run")
    p.add_argument("--runs", nargs="+", help="run ids (default: every run)")
    p.add_argument("--group", help="the runs of this group")
    p.add_argument("--with-model", action="store_true", help="MLflow: log each run's model too, as an MLflow "
                   "PyTorch model (mlflow.pytorch.load_model)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="a comparison as one self-contained HTML file (opens offline)")
    p.add_argument("run_ids", nargs="*", help="the runs, in the order to show them")
    p.add_argument("--group", help="the runs of this group (`runs list` shows groups)")
    p.add_argument("--out", default="freezelab-report.html", help="the file to write")
    p.add_argument("--image", type=int, default=0, help="the validation image the attribution maps explain")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export-model", help="a run's trained model as a file others can use, with a manifest")
    p.add_argument("run_id", help="the run (`runs list` shows them); its latest checkpoint is exported")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (made if missing)")
    p.add_argument("--format", default="state_dict", choices=[f.value for f in ModelFormat],
                   help="state_dict: weights, rebuilt with FreezeLab; torch_export: runs with torch alone "
                        "(torch.export.load); onnx: for ONNX Runtime (pip install 'freezelab[onnx]')")
    p.set_defaults(func=cmd_export_model)
