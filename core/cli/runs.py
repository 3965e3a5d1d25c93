"""`runs`: the run store from the command line. Each subcommand (list, show, resume, export-csv, delete) has a
parser of its own, with only its own options."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import progress
from core.cli.common import FLOAT, Refused, add_subcommands, failures
from core.store.runs import ConfigUnreadable, RunStore, config_to_json
from core.store.status import RESUMABLE, RunStatus
from core.training import rules

LISTED = ["id", "label", "status", "backbone", "weights", "trainable", "epochs", "val_acc", "seconds", "group"]


def cmd_list(args: argparse.Namespace) -> int:
    store = RunStore()
    table = store.runs()
    if table.empty:
        print("[]" if args.json else f"No runs in {store.path}.")
        return 0
    if args.json:  # for scripts: one object per run, numbers as numbers, missing ones null
        print(table[LISTED].to_json(orient="records", indent=1, date_format="iso"))
    else:
        print(table[LISTED].to_string(index=False, **FLOAT))
    return 0


def cmd_export_csv(args: argparse.Namespace) -> int:
    text = RunStore().metrics.export_csv(args.ids or None)
    if args.out:
        try:
            Path(args.out).write_text(text)
        except OSError as err:
            print(f"Cannot write {args.out}: {err.strerror or err}.", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _named(args: argparse.Namespace, store: RunStore) -> list[str]:
    """The run ids the command names, each held by the store; Refused in one line otherwise."""
    if not args.ids:
        raise Refused(f"`runs {args.action}` needs a run id (`{args.invocation.prog} runs list` shows them).")
    unknown = [r for r in args.ids if r not in set(store.runs().id)]
    if unknown:
        raise Refused(f"No run {', '.join(unknown)} in {store.path}.")
    return args.ids


def cmd_show(args: argparse.Namespace) -> int:
    store = RunStore()
    table = store.runs()
    for run_id in _named(args, store):
        try:
            cfg_json = json.dumps(json.loads(config_to_json(store.config(run_id))), indent=2)
        except ConfigUnreadable as err:
            print(err, file=sys.stderr)
            return 1
        if args.config:  # the config alone: `train --config` reads it back
            print(cfg_json)
            continue
        row = table.set_index("id").loc[run_id]
        if args.json:  # for scripts: the run's row, its epoch curve and its config, one object per run
            shown = json.loads(table[table.id == run_id].to_json(orient="records", date_format="iso"))[0]
            curve = store.metrics.curves([run_id]).drop(columns=["run_id", "label"], errors="ignore")
            shown["curve"] = json.loads(curve.to_json(orient="records"))
            shown["config"] = json.loads(cfg_json)
            print(json.dumps(shown, indent=1, default=str))
            continue
        print(f"{run_id}  {row.label}  [{row.status}]{'  ' + row.message if row.message else ''}")
        print(f"group {row.group or '—'}, {row.backbone} ({row.weights}), {row.trainable or 0:,} of "
              f"{row.params or 0:,} parameters train")
        curve = store.metrics.curves([run_id])
        if not curve.empty:
            shown = [c for c in ["epoch", "step", "seconds", "train_loss", "val_loss", "val_acc"] if c in curve]
            print(curve[shown].to_string(index=False, **FLOAT))
        print(f"config:\n{cfg_json}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Carry stopped, paused or interrupted runs on from their checkpoints: --epochs more (default: the rest of
    each one's budget), as a burst on the Train page does. --restart: the user's word that a run whose
    checkpoint is missing starts again from step 0."""
    import pandas as pd

    from core.execution.jobs import JobManager

    store = RunStore()
    run_ids = _named(args, store)
    if args.epochs is not None:
        rules.epochs(args.epochs, "A resumed burst")  # its sentence, exit 2 (main), before anything resumes
    store.leases.mark_interrupted()  # runs a process that has gone left 'running' resume too
    runs = store.runs().set_index("id").loc[run_ids]
    ended = runs[~runs.status.isin(RESUMABLE)]
    for run_id, row in ended.iterrows():
        print(f"{run_id} ({row.label}) is {row.status}: only {', '.join(RESUMABLE)} runs resume.", file=sys.stderr)
    if len(ended):
        return 2
    configs = [store.config(run_id) for run_id in run_ids]
    left = max(cfg.epochs - (int(done) if pd.notna(done) else 0)  # `epochs`: the last whole epoch stored
               for cfg, done in zip(configs, runs.epochs, strict=True))
    manager = JobManager(store)
    progress.watch(manager, run_ids, configs, args.epochs or max(left, 1), args.invocation, restart=args.restart)
    table = progress.results(manager, run_ids, args.invocation)
    for run_id, row in table[table.status == RunStatus.STOPPED].iterrows():  # why, when it did not go on
        print(f"{run_id} ({row.label}): {row.message}", file=sys.stderr)
    return failures(table)


def cmd_delete(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager

    store = RunStore()
    manager = JobManager(store)
    for run_id in _named(args, store):
        try:
            manager.delete(run_id)
        except RuntimeError as err:
            print(f"{run_id}: {err}", file=sys.stderr)
            return 1
        print(f"deleted {run_id}")
    return 0


def add_parsers(sub, prog: str) -> None:
    runs = sub.add_parser("runs", help="the run store: list, show ID, resume ID, export-csv, delete ID")
    actions = add_subcommands(runs, "action")
    p = actions.add_parser("list", help="every run: id, label, status, backbone, accuracy, seconds")
    p.add_argument("--json", action="store_true", help="JSON for scripts instead of a table")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("show", help="runs' curves and configs")
    p.add_argument("ids", nargs="*", help="run ids")
    p.add_argument("--config", action="store_true", help="print only the run's config JSON")
    p.add_argument("--json", action="store_true", help="JSON for scripts instead of tables")
    p.set_defaults(func=cmd_show)

    p = actions.add_parser("resume", help="stopped, paused or interrupted runs go on from their checkpoints")
    p.add_argument("ids", nargs="*", help="run ids")
    p.add_argument("--epochs", type=int, default=None, help="train this many epochs more (default: the rest of "
                   "each run's budget)")
    p.add_argument("--restart", action="store_true", help="a run whose checkpoint is missing starts again from "
                   "step 0 (its stored steps are deleted)")
    p.set_defaults(func=cmd_resume)

    p = actions.add_parser("export-csv", help="every metric of every run (or of the runs named) as CSV")
    p.add_argument("ids", nargs="*", help="run ids (default: all)")
    p.add_argument("--out", help="write to this file (default: standard output)")
    p.set_defaults(func=cmd_export_csv)

    p = actions.add_parser("delete", help="delete runs, their metrics and checkpoints")
    p.add_argument("ids", nargs="*", help="run ids")
    p.set_defaults(func=cmd_delete)
