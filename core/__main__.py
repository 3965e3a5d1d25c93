"""Command line over the same functions the app uses (`python -m core` is the same command).

    freezelab app                                 # start the Streamlit app (any further flags go to streamlit)
    freezelab train                               # the demo comparison: three recipes on digits 5-9
    freezelab train --preset two_phase --backbone resnet18 --data folder --path ~/images
    freezelab train --trainable layer4 --bn stats --lr-mult layer4=0.1 --backbone resnet18   # one plan
    freezelab train --config run.json             # a stored run's config again (freezelab runs show ID --config)
    freezelab train --recipe vgg16_truncated      # one of the reports' recipes (list: freezelab recipes)
    freezelab sweep --seeds 3                     # accuracy against frozen depth (Yosinski et al., 2014)
    freezelab sweep --engine ray                  # ...as Ray Tune trials (pip install -e '.[ray]')
    freezelab pretrain                            # the demo net on digits 0-4, into the local zoo
    freezelab pretrain --out core/models/assets/zoo --name demo-digits04 --replace   # ...the bundled one
    freezelab lr-find --preset fine_tune_top      # a learning-rate range test, with a suggested rate
    freezelab backbones                           # the registry
    freezelab runs list | show ID | resume ID [--epochs N] | export-csv [--out F] | delete ID
    freezelab export --mlflow DIR_OR_URI --tensorboard DIR [--runs ID ...]   # to experiment trackers
    freezelab report ID ID ... [--group G] --out report.html   # a comparison as one HTML file, offline
    freezelab export-model ID --out DIR [--format state_dict|torch_export|onnx]   # a model others can use
    freezelab bench [--quick] [--only loop app ...]   # speed and memory beside baselines: a table and a CSV
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from benchmarks.sections import SECTIONS
from core.data.datasets import SOURCES, DataConfig, DataUnavailable, list_classes, load_data
from core.execution import trainer
from core.freezing import BN_POLICIES, PRESET_KEYS, FreezePlan, Phase, presets
from core.models import backbones, zoo
from core.models.backbones import HeadConfig, ModelConfig
from core.models.own import MODEL_FILES_ENV
from core.runtime import paths, shares
from core.runtime.device import all_cores_but_one, describe_device
from core.runtime.version import version
from core.store.model_export import ModelFormat
from core.store.runs import (
    CONFIG_ERRORS,
    ENDED_BADLY,
    RESUMABLE,
    ConfigUnreadable,
    RunStatus,
    RunStore,
    config_from_json,
    config_to_json,
)
from core.training.config import (
    CURRENT_PLAN,
    DEMO_COMPARISON,
    DEMO_EPOCHS,
    DEMO_OPTIM,
    OPTIMIZERS,
    OptimConfig,
    RunConfig,
    comparison,
    named_by_what_it_trains,
)

# Torch, pandas and the training engine are imported by the commands that use them, not above: `--help`,
# `--version` and `runs list` answer without loading torch.
if TYPE_CHECKING:
    import pandas as pd

    from core.execution.jobs import JobManager

_FLOAT = {"float_format": lambda v: f"{v:.3f}", "na_rep": "—"}


class _Refused(Exception):
    """Arguments no run can be made from: said in one line (main), before anything is stored."""


def _data_config(args: argparse.Namespace, **overrides) -> DataConfig:
    """The data the arguments ask for, checked before any run is made from it: a folder must be given and hold
    classes, and the images must be at least the backbone's smallest input. Without --image-size, the images
    take the backbone's own size (its registry's: 28 px for the demo net, 64 for torchvision's)."""
    backbone = getattr(args, "backbone", None)
    size = args.image_size or (backbones.get_spec(backbone).image_size if backbone else DataConfig().image_size)
    cfg = DataConfig(source=args.data, path=args.path or "", task=args.task, image_size=size,
                     seed=args.seed, flip=args.flip, crop_pad=args.crop_pad, **overrides)
    if cfg.source == "folder":
        if not cfg.path:
            raise _Refused("--data folder needs --path DIR: a folder with one sub-folder per class.")
        try:
            list_classes(cfg)
        except DataUnavailable as err:
            raise _Refused(str(err)) from err
    if backbone and cfg.image_size < backbones.get_spec(backbone).min_size:
        raise _Refused(f"{backbone} needs images of at least {backbones.get_spec(backbone).min_size} pixels, not "
                       f"--image-size {cfg.image_size}.")
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager
    from core.experiments.report_recipes import beside_reported

    try:
        configs, recipe, data_cfg = _train_configs(args)
    except (ValueError, OSError) as err:
        print(err, file=sys.stderr)
        return 2
    manager = JobManager(RunStore(), slice_steps=args.slice_steps, threads=args.threads)
    run_ids = _train(manager, configs, "cli")
    table = _results(manager, run_ids)
    beside = beside_reported(recipe, manager.store, run_ids) if recipe else None
    if PROG.json:
        print(json.dumps({"runs": _records(table[SUMMARY_COLUMNS].reset_index()), "store": str(manager.store.path),
                          **({"beside_the_report": _records(beside)} if recipe else {})}, indent=1))
    elif recipe:
        print(f"\n{recipe.title}: beside the report (it trained on all 50,000 CIFAR-10 images; these runs on "
              f"{data_cfg.per_class or 'all'} per class of {data_cfg.source})")
        print(beside.to_string(index=False, **_FLOAT))
    return _failures(table)


PLAN_FLAGS = ("trainable", "bn", "lr_mult", "last_layers", "truncate_after")


def _train_configs(args: argparse.Namespace):
    """(configs, recipe or None, data config) the train command's arguments ask for; ValueError in words."""
    from core.experiments.report_recipes import RECIPES

    if args.config:
        try:
            cfg = config_from_json(Path(args.config).expanduser().read_text())
        except CONFIG_ERRORS as err:
            raise ValueError(f"{args.config} is not a FreezeLab run config ({err}); `{PROG.name} runs show ID "
                             "--config` writes one.") from err
        return [cfg], None, cfg.data
    recipe = RECIPES.get(args.recipe) if args.recipe else None
    if args.recipe and recipe is None:
        raise ValueError(f"Unknown recipe {args.recipe!r}; `{PROG.name} recipes` lists them.")
    args.data = args.data or ("cifar10" if recipe else "demo")  # a recipe trains on the report's data
    args.image_size = args.image_size or (recipe.image_size if recipe else None)  # None: the backbone's size
    data_cfg = _data_config(args, per_class=args.per_class)
    if recipe:
        return recipe.configs(data_cfg, args.weights, args.epochs, args.seed, not args.no_cache), recipe, data_cfg
    blocks = backbones.block_names(args.backbone)
    model = ModelConfig(args.backbone, args.weights, _head(args))
    optim = OptimConfig(name=args.optimizer, lr=args.lr, batch_size=args.batch_size, cosine=args.cosine)
    shared = dict(data=data_cfg, model=model, optim=optim, epochs=args.epochs or DEMO_EPOCHS, seed=args.seed,
                  patience=args.patience, feature_cache=not args.no_cache)
    own_plan = any(getattr(args, f) is not None for f in PLAN_FLAGS)
    keys = args.preset or ([] if own_plan else list(DEMO_COMPARISON))
    configs = comparison(presets(blocks, top_n=args.top_n), [k for k in keys if k != "current"], **shared)
    if own_plan or "current" in keys:  # the plan the flags describe: the Train page's "Current plan"
        configs.insert(0, RunConfig(phases=(Phase(_plan(args, blocks)),), label=CURRENT_PLAN, **shared))
    if args.same_lr:
        configs = [c.with_start_lr(args.lr) for c in configs]
    return named_by_what_it_trains(configs), None, data_cfg


def _plan(args: argparse.Namespace, blocks: tuple[str, ...]) -> FreezePlan:
    """The FreezePlan of the flags, checked against the backbone's blocks."""
    def known(block: str, flag: str) -> str:
        if block not in blocks:
            raise ValueError(f"{flag}: {args.backbone} has no block {block!r}; its blocks are {', '.join(blocks)}.")
        return block

    trainable = [known(b.strip(), "--trainable") for b in (args.trainable or "").split(",") if b.strip()]
    mults = []
    for pair in args.lr_mult or []:
        block, _, factor = pair.partition("=")
        try:
            mults.append((known(block.strip(), "--lr-mult"), float(factor)))
        except ValueError as err:
            raise ValueError(f"--lr-mult takes BLOCK=FACTOR (layer4=0.1), not {pair!r}: {err}") from err
    truncate = known(args.truncate_after, "--truncate-after") if args.truncate_after else None
    return FreezePlan(trainable=tuple(b for b in blocks if b in trainable), bn=args.bn or "frozen",
                      lr_mult=tuple(mults), truncate_after=truncate, last_layers=args.last_layers or None)


def _head(args: argparse.Namespace) -> HeadConfig:
    try:
        hidden = tuple(int(w) for w in (args.head_hidden or "").split(",") if w.strip())
    except ValueError as err:
        raise ValueError(f"--head-hidden takes widths separated by commas (128,64), not {args.head_hidden!r}.") from err
    return HeadConfig(args.head_pool, hidden, args.head_dropout)


def cmd_recipes(_: argparse.Namespace) -> int:
    import pandas as pd

    from core.experiments.report_recipes import listing

    with pd.option_context("display.max_colwidth", 200, "display.width", 250):
        print(listing().to_string(index=False))
    print(f"\nrun one: {PROG.name} train --recipe KEY [--per-class N] [--weights none] [--data demo]")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager
    from core.experiments import studies

    data_cfg = _data_config(args, per_class=args.per_class)
    optim = OptimConfig(name=args.optimizer, batch_size=args.batch_size)
    try:
        configs = studies.depth_sweep(data_cfg, ModelConfig(args.backbone, args.weights), optim, args.epochs,
                                          args.seeds, same_lr=args.same_lr, feature_cache=not args.no_cache)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    store = RunStore()
    if args.engine == "ray":
        from core.execution import ray_engine

        stop = threading.Event()
        try:
            with _stop_on_ctrl_c(stop):
                run_ids = ray_engine.run_sweep(store, configs, _group("sweep"), address=args.address,
                                               cpus=args.cpus, progress=_trial_bar(len(configs) * args.epochs),
                                               stop=stop)
        except ray_engine.RayUnavailable as err:
            print(err, file=sys.stderr)
            return 2
    else:
        manager = JobManager(store, slice_steps=args.slice_steps)
        run_ids = _train(manager, configs, "sweep")
    by_depth = studies.sweep_table(store, run_ids)
    runs = store.runs().set_index("id").loc[run_ids]
    stopped = int((runs.status == RunStatus.STOPPED).sum())
    if stopped:
        _say(f"\n{studies.UNEQUAL_BUDGETS}. {stopped} of {len(runs)} runs were stopped; each resumes from "
             f"where it stopped ({PROG.name} runs resume ID ..., or a burst on the app's Train page).")
    if PROG.json:
        print(json.dumps({"by_frozen_blocks": _records(by_depth), "runs": _records(
            runs[["label", "status", "epochs", "val_acc", "seconds"]].reset_index()), "store": str(store.path)},
            indent=1))
        return _failures(runs)
    print(f"\nFinal validation accuracy against frozen leading blocks ({args.seeds} seed(s) each, "
          f"{args.epochs} epochs; each setting at its own learning rate"
          f"{'' if not args.same_lr else f' — here all at {args.same_lr:g}'}):")
    print(by_depth.to_string(index=False, **_FLOAT))
    print(f"\nruns stored in {store.path}")
    return _failures(runs)


def _group(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextlib.contextmanager
def _stop_on_ctrl_c(stop: threading.Event):
    """The first Ctrl-C sets `stop` (the sweep then ends with every run saved and resumable, as the app's Stop
    leaves it); a second one interrupts at once, as Ctrl-C always does."""
    def first(signum, frame) -> None:
        print("\nstopping: each trial ends the epoch it is in and is saved; Ctrl-C again to abandon them",
              file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _trial_bar(total: int):
    bar = tqdm(total=total, unit="epoch", desc="trials", disable=None)  # None: quiet when not a terminal
    return lambda done, total, what: (bar.update(done - bar.n), bar.set_postfix_str(what, refresh=True))


def _train(manager: JobManager, configs: list[RunConfig], prefix: str) -> list[str]:
    """Create and train `configs` side by side with a progress bar per run; returns the run ids."""
    group, run_ids = _group(prefix), []
    try:
        for cfg in tqdm(configs, unit="run", desc="creating", leave=False, disable=len(configs) < 50 or None):
            run_ids.append(manager.create_run(cfg, group))
    except KeyboardInterrupt:  # nothing trains yet: what was created stays, ready to train
        print(f"\nstopped creating: {len(run_ids)} of {len(configs)} runs created, none trained; train them with "
              f"{PROG.name} runs resume {' '.join(run_ids[:3])}{' ...' if len(run_ids) > 3 else ''}",
              file=sys.stderr)
        return run_ids
    _watch(manager, run_ids, configs, epochs=max(cfg.epochs for cfg in configs))
    return run_ids


def _watch(manager: JobManager, run_ids: list[str], configs: list[RunConfig], epochs: int,
           restart: bool = False) -> None:
    """Train a burst of `epochs` for the runs side by side with a progress bar per run, until each ends its
    burst or budget; Ctrl-C stops them, each after its step with its checkpoint written."""
    _say(f"training on {describe_device(manager.device, manager.threads)}")
    terminal = sys.stderr.isatty()  # bars on a terminal; into a file or a pipe, one line per epoch instead
    bars = {r: tqdm(total=cfg.epochs, desc=cfg.label[:36].ljust(36), unit="epoch", position=i, disable=not terminal)
            for i, (r, cfg) in enumerate(zip(run_ids, configs, strict=True))}
    said: set[tuple] = set()  # the lines printed: (run, epoch), (run, what it prepares, which quarter)
    budgets = {r: cfg.epochs for r, cfg in zip(run_ids, configs, strict=True)}

    def draw() -> None:
        if not terminal:  # a download at each quarter; from the store, every epoch, however quickly they come
            for run_id in run_ids:
                if (ready := manager.snapshot(run_id).preparation) is not None:
                    fraction, words = ready
                    mark = (run_id, words.split(":")[0], int(fraction * 4))
                    if mark not in said:
                        said.add(mark)
                        print(f"{manager.store.label(run_id)}: {words}", file=sys.stderr, flush=True)
            for row in manager.store.curves(run_ids).itertuples():
                if (row.run_id, int(row.epoch)) not in said:
                    said.add((row.run_id, int(row.epoch)))
                    print(f"{row.label}: epoch {int(row.epoch)} of {budgets[row.run_id]}, val_acc {row.val_acc:.3f}",
                          file=sys.stderr, flush=True)
            return
        for run_id, bar in bars.items():
            snap = manager.snapshot(run_id)
            bar.n = round(snap.epoch, 2)
            if snap.preparation:  # a download of weights or data: say so, with how far it is
                bar.set_postfix_str(snap.preparation[1], refresh=False)
            elif snap.last_epoch:
                bar.set_postfix(val_acc=f"{snap.last_epoch['val_acc']:.3f}", refresh=False)
            else:
                bar.set_postfix_str("", refresh=False)
            bar.refresh()

    try:  # from the start: a Ctrl-C at any moment stops the runs
        manager.start(run_ids, epochs=epochs, restart=restart)
        while any(manager.is_busy(r) for r in run_ids):
            draw()
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nstopping: each run ends the step it is in and is saved", file=sys.stderr)
        manager.stop()
    manager.wait()
    draw()
    for bar in bars.values():
        bar.close()


SUMMARY_COLUMNS = ["label", "status", "trainable", "params", "epochs", "val_acc", "val_loss", "seconds", "cache"]


def _results(manager: JobManager, run_ids: list[str]) -> pd.DataFrame:
    """The runs' table (printed, with where they are stored, unless --json asked for JSON instead)."""
    table = manager.store.runs().set_index("id").loc[run_ids]
    snaps = {r: manager.snapshot(r) for r in run_ids}
    table["cache"] = ["on" if snaps[r].cache_on else "off" for r in run_ids]
    if not PROG.json:
        print("\n" + table[SUMMARY_COLUMNS].to_string(index=False, **_FLOAT))
        print(f"\nruns stored in {manager.store.path}")
    return table


def _records(frame: pd.DataFrame) -> list[dict]:
    """A table as JSON-ready rows: numbers as numbers, missing ones null, times in ISO 8601."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _say(text: str) -> None:
    """A line for people: on stdout, or on stderr when stdout carries JSON (--json)."""
    print(text, file=sys.stderr if PROG.json else sys.stdout, flush=True)


def _failures(table: pd.DataFrame) -> int:
    """Say which runs failed or diverged; the exit status (1 when any did)."""
    failed = table[table.status.isin(ENDED_BADLY)]
    for _, row in failed.iterrows():
        print(f"{row.label}: {row.status}: {row.message}", file=sys.stderr)
    return 1 if len(failed) else 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager
    from core.experiments import studies

    try:  # before training: a name it could not save under would waste the training
        zoo.check_new_name(args.name, args.out, args.replace)
    except ValueError as err:
        print(f"{err} (--replace overwrites an entry of yours)", file=sys.stderr)
        return 2
    data_cfg = _data_config(args, per_class=None, val_per_class=None)
    cfg = studies.pretrain_config(data_cfg, args.backbone, args.epochs, args.lr, args.batch_size, args.seed,
                                      label=f"pretrain {args.name}")
    manager = JobManager(RunStore(), slice_steps=args.slice_steps)
    run_ids = _train(manager, [cfg], "pretrain")
    if _failures(_results(manager, run_ids)):
        return 1
    folder = studies.save_to_zoo(manager.store, run_ids[0], args.name, command=args.command_line, root=args.out,
                                 replace=args.replace)
    manifest = json.loads((folder / "manifest.json").read_text())
    print(f"\nheld-out accuracy {manifest['source_accuracy']:.2%} (loss {manifest['source_loss']:.3f}) after "
          f"{manifest['epochs']} epochs, {manifest['seconds']:.0f} s of training")
    print(f"saved {folder}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from core.training import lr_find

    data_cfg = _data_config(args, per_class=args.per_class)
    recipes = presets(backbones.block_names(args.backbone))
    cfg = RunConfig.from_recipe(recipes[args.preset], data=data_cfg, model=ModelConfig(args.backbone, args.weights),
                                optim=OptimConfig(name=args.optimizer, batch_size=args.batch_size), seed=args.seed)
    try:
        with tqdm(total=args.steps, unit="step", desc="range test", disable=None) as bar:
            table = lr_find.lr_range_test(cfg, load_data(data_cfg), args.start, args.end, args.steps,
                                          progress=lambda done, total, what: bar.update(done - bar.n))
    except ValueError as err:  # start, end or steps out of range, said in words
        print(err, file=sys.stderr)
        return 2
    print(table.iloc[:: max(1, len(table) // 12)].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nsuggested learning rate for {cfg.label}: {lr_find.suggest(table):.2g} "
          f"(a tenth of where the smoothed loss was lowest; the preset's own: {cfg.phases[0].lr:g})")
    return 0


BACKBONE_HELP = (f"one of {', '.join(backbones.list_backbones())}, or any model as torchvision:<name> or "
                 "timm:<name>, its blocks found automatically (`backbones --all` lists the names)")


def _backbone(name: str) -> str:
    """A backbone argument, checked where it is parsed: a registered name, or a model torchvision or timm names."""
    try:
        backbones.get_spec(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"give a positive number, not {text!r}")
    return value


MODEL_FILE_HELP = ("your own network: a function in a Python file returning an nn.Module, or (module, blocks); "
                   "it becomes the backbone own:<file stem>.<function> (repeatable)")


def _register_model_files(argv: list[str]) -> list[str]:
    """Register the networks $FREEZELAB_MODEL_FILES and each --model-file name (before the arguments are parsed:
    --backbone own:... is checked against them); their backbone names, the flags' last."""
    given = argparse.ArgumentParser(add_help=False)
    given.add_argument("--model-file", action="append", default=[])
    files = given.parse_known_args(argv)[0].model_file
    if not files and not os.environ.get(MODEL_FILES_ENV):
        return []  # no torch imported for the usual commands
    from core.models import own

    own.register_from_environment()
    named = [own.register(f) for f in files]
    if files:  # processes this one starts (the app's server and trainer, Ray's workers) register them too
        os.environ[MODEL_FILES_ENV] = own.SEPARATOR.join(filter(None, [os.environ.get(MODEL_FILES_ENV, ""),
                                                                      *map(own.resolved, files)]))
    return named


def cmd_backbones(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.all:  # names only: finding a model's blocks means building it
        for library in backbones.LIBRARIES:
            names = backbones.any_model_names(library)
            print(f"{library}: {len(names)} models" + ("" if names else " (pip install 'freezelab[timm]')"))
            print("\n".join(f"  {n}" for n in names))
        return 0

    rows = [{"backbone": n, "family": backbones.get_spec(n).family, "size": backbones.get_spec(n).image_size,
             "blocks": ", ".join(backbones.block_names(n)), "pretrained": backbones.get_spec(n).pretrained}
            for n in backbones.list_backbones()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore()
    table = store.runs()
    if args.action == "list":
        if table.empty:
            print("[]" if args.json else f"No runs in {store.path}.")
            return 0
        columns = ["id", "label", "status", "backbone", "weights", "trainable", "epochs", "val_acc", "seconds",
                   "group"]
        if args.json:  # for scripts: one object per run, numbers as numbers, missing ones null
            print(table[columns].to_json(orient="records", indent=1, date_format="iso"))
        else:
            print(table[columns].to_string(index=False, **_FLOAT))
        return 0
    if args.action == "export-csv":
        text = store.export_csv(args.ids or None)
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
    if not args.ids:
        print(f"`runs {args.action}` needs a run id (`{PROG.name} runs list` shows them).", file=sys.stderr)
        return 2
    unknown = [r for r in args.ids if r not in set(table.id)]
    if unknown:
        print(f"No run {', '.join(unknown)} in {store.path}.", file=sys.stderr)
        return 2
    if args.action == "resume":
        return _resume(store, args.ids, args.epochs, args.restart)
    if args.action == "delete":
        from core.execution.jobs import JobManager

        manager = JobManager(store)
        for run_id in args.ids:
            try:
                manager.delete(run_id)
            except RuntimeError as err:
                print(f"{run_id}: {err}", file=sys.stderr)
                return 1
            print(f"deleted {run_id}")
        return 0
    for run_id in args.ids:  # show
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
            shown["curve"] = json.loads(store.curves([run_id]).drop(columns=["run_id", "label"], errors="ignore")
                                        .to_json(orient="records"))
            shown["config"] = json.loads(cfg_json)
            print(json.dumps(shown, indent=1, default=str))
            continue
        print(f"{run_id}  {row.label}  [{row.status}]{'  ' + row.message if row.message else ''}")
        print(f"group {row.group or '—'}, {row.backbone} ({row.weights}), {row.trainable or 0:,} of "
              f"{row.params or 0:,} parameters train")
        curve = store.curves([run_id])
        if not curve.empty:
            shown = [c for c in ["epoch", "step", "seconds", "train_loss", "val_loss", "val_acc"] if c in curve]
            print(curve[shown].to_string(index=False, **_FLOAT))
        print(f"config:\n{cfg_json}")
    return 0


def _resume(store: RunStore, run_ids: list[str], epochs: int | None, restart: bool) -> int:
    """Carry stopped, paused or interrupted runs on from their checkpoints: `epochs` more (default: the rest of
    each one's budget), as a burst on the Train page does. `restart`: the user's word that a run whose
    checkpoint is missing starts again from step 0."""
    import pandas as pd

    from core.execution.jobs import JobManager

    if epochs is not None and epochs < 1:
        print("--epochs must be at least 1.", file=sys.stderr)
        return 2
    store.mark_interrupted()  # runs a process that has gone left 'running' resume too
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
    _watch(manager, run_ids, configs, epochs=epochs or max(left, 1), restart=restart)
    table = _results(manager, run_ids)
    for run_id, row in table[table.status == RunStatus.STOPPED].iterrows():  # why, when it did not go on
        print(f"{run_id} ({row.label}): {row.message}", file=sys.stderr)
    return _failures(table)


def _runs_asked(store: RunStore, run_ids: list[str], group: str | None, when_none: str = "all") -> list[str]:
    """The runs named, or a group's; when neither, every run ("all") or none ("none": the command needs them
    named). _Refused, in one line, for an id the store does not hold or no runs at all."""
    known = list(store.runs().id)
    asked = run_ids or (store.group(group) if group else known if when_none == "all" else [])
    unknown = [r for r in asked if r not in known]
    if unknown:
        raise _Refused(f"No run {', '.join(unknown)} in {store.path} (`{PROG.name} runs list` shows them).")
    if not asked:
        raise _Refused(f"No runs in {store.path}." if when_none == "all" else
                       f"Name the runs (or --group G); `{PROG.name} runs list` shows them.")
    return asked


def cmd_export(args: argparse.Namespace) -> int:
    from core.insight import trackers

    if not (args.mlflow or args.tensorboard):
        print("Say where: --mlflow DIR_OR_URI and/or --tensorboard DIR.", file=sys.stderr)
        return 2
    store = RunStore()
    run_ids = _runs_asked(store, args.runs, args.group)
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
    run_ids = _runs_asked(store, args.run_ids, args.group, when_none="none")
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
    _runs_asked(store, [args.run_id], None)
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


APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"  # in a checkout, or installed beside `core`
# The app's Streamlit settings: beside the entry script in a checkout, inside `ui` once installed (pyproject).
SETTINGS = (APP.parent / ".streamlit" / "config.toml", APP.parent / "ui" / "streamlit_settings" / "config.toml")
CIFAR_JPG_DEFAULT = Path(os.environ.get("FREEZELAB_CIFAR_JPG", APP.parent.parent / "shared/data/cifar10-jpg"))


def streamlit_settings() -> list[str]:
    """The app's Streamlit settings (localhost only, upload bound, no error details in the browser, ...) as
    `streamlit run` flags: they apply from whatever folder the app starts, where Streamlit would read only that
    folder's .streamlit/config.toml."""
    import tomllib

    path = next((p for p in SETTINGS if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"FreezeLab's Streamlit settings are missing (neither {SETTINGS[0]} nor "
                                f"{SETTINGS[1]}): reinstall FreezeLab.")

    def flags(table: dict, prefix: str) -> list[str]:
        out = []
        for key, value in table.items():
            if isinstance(value, dict):
                out += flags(value, f"{prefix}{key}.")
            else:
                out.append(f"--{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}")
        return out

    return flags(tomllib.loads(path.read_text()), "")


def cmd_app(args: argparse.Namespace) -> int:
    """Start the Streamlit app, with its settings, from any folder; the trainer starts beside it."""
    if not APP.is_file():
        print(f"The app's files are not beside this package ({APP} is missing): reinstall FreezeLab "
              "(`pip install .` in its folder).", file=sys.stderr)
        return 2
    try:
        settings = streamlit_settings()
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if args.teacher_code:
        os.environ[shares.TEACHER_ENV] = args.teacher_code
    if args.max_model_size is not None:
        os.environ[shares.MAX_MODEL_ENV] = str(args.max_model_size)
    for variable, values, sep in ((shares.SHARE_ENV, args.share, os.pathsep), (shares.EXPORT_ENV, args.export_to,
                                  os.pathsep), (shares.TRACKING_ENV, args.tracking_uri, ",")):
        given = [str(Path(v).expanduser().resolve()) if sep == os.pathsep else v for v in values]
        if given:  # beside what the environment already shares
            os.environ[variable] = sep.join(filter(None, [os.environ.get(variable, ""), *given]))
    if trainer.in_own_process():  # it imports torch and builds the demo's runs while streamlit starts
        trainer.spawn_orphan(paths.home(), all_cores_but_one(), warm_up=True)
    command = [sys.executable, "-m", "streamlit", "run", str(APP), *settings, *args.streamlit_args]  # the user's last
    os.execv(sys.executable, command)  # the app becomes this process: Ctrl-C and signals reach it
    return 0  # not reached


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks import bench

    opts = bench.Options(quick=args.quick, epochs=1 if args.quick else args.epochs, repeats=args.repeats,
                         scale_images=args.scale_images, scale_sizes=tuple(args.scale_sizes), cifar=Path(args.cifar))
    bench.run(tuple(args.only or SECTIONS), opts, Path(args.out))
    return 0


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="demo", type=_backbone, metavar="NAME", help=BACKBONE_HELP)
    p.add_argument("--model-file", action="append", default=[], metavar="FILE.py:FUNCTION", help=MODEL_FILE_HELP)


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    """The Layers page's controls, as flags: together they make one run of that plan ("Current plan")."""
    g = p.add_argument_group("one plan of your own (the Layers page's controls; with --preset, beside the presets)")
    g.add_argument("--trainable", help="blocks that train, comma-separated (\"\" for none: feature extraction)")
    g.add_argument("--bn", choices=list(BN_POLICIES), help="BatchNorm in frozen blocks (default frozen)")
    g.add_argument("--lr-mult", action="append", metavar="BLOCK=FACTOR", help="scale a block's learning rate "
                   "(repeat for several)")
    g.add_argument("--last-layers", type=int, help="instead of whole blocks: train only the last N layers")
    g.add_argument("--truncate-after", metavar="BLOCK", help="drop every block after this one")
    h = p.add_argument_group("the head (every run)")
    h.add_argument("--head-pool", default="avg", choices=("avg", "flatten"), help="pooling before the head")
    h.add_argument("--head-hidden", default="", help="hidden layer widths, comma-separated (e.g. 128)")
    h.add_argument("--head-dropout", type=float, default=0.0)


def _add_data_args(p: argparse.ArgumentParser, task: str, crop_pad: int,
                   source: str | None = "demo") -> None:
    shown = source or "demo, or cifar10 for a recipe"
    p.add_argument("--data", default=source, choices=SOURCES, help=f"data source (default: {shown})")
    p.add_argument("--path", help="image folder (with --data folder)")
    p.add_argument("--task", default=task, help="demo task: source (digits 0-4) or target (digits 5-9)")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"pixels a side (default: the backbone's own size; `{PROG.name} backbones` lists each)")
    p.add_argument("--flip", action="store_true", help="augmentation: random horizontal flips")
    p.add_argument("--crop-pad", type=int, default=crop_pad, help="augmentation: pad-and-crop pixels")
    p.add_argument("--seed", type=int, default=0)


def _worth_showing(default) -> bool:
    """Whether `--help` says an option's default: not a switch's False, not None or "" (by identity: 0 is shown)."""
    return not (default is None or default is False or default == "" or default == argparse.SUPPRESS)


class _Help(argparse.RawDescriptionHelpFormatter):
    """The module's examples as written, and each option's default in its help where it has one worth saying
    (not a switch's False, not None) and the help does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = _worth_showing(action.default) and action.option_strings
        return (text + " (default: %(default)s)").strip() if shown and "default" not in text else text

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _worth_showing(action.default) and action.option_strings:
            action = copy.copy(action)  # argparse prints no help line for an option without help: give it one
            action.help = ""
            action.help = self._get_help_string(action)
        return super()._format_action(action)


def main(argv: list[str] | None = None, prog: str = "python -m core") -> int:
    try:
        return _main(argv, prog)
    except _Refused as err:
        print(err, file=sys.stderr)
        return 2
    except BrokenPipeError:  # `freezelab runs show ID | head`: the reader has what it wanted; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python flushes
        return 0


class _Prog:
    name = "python -m core"  # how the user called the command line, for the commands its messages suggest
    json = False  # --json: stdout carries one JSON document, for scripts; what is said for people goes to stderr


PROG = _Prog()


def _main(argv: list[str] | None, prog: str) -> int:
    PROG.name = prog
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.replace("freezelab ", f"{prog} "),
                                     formatter_class=_Help)  # the examples in the words the user typed
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_Help)  # each command's help too

    p = sub.add_parser("train", help="train runs side by side and store them (default: the demo comparison)")
    _add_data_args(p, task="target", crop_pad=0, source=None)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    _add_backbone_args(p)
    p.add_argument("--weights", default="pretrained", help="pretrained, none, file:<path> or zoo:<name>")
    p.add_argument("--config", help="a run config as JSON (what the run store keeps: `runs show ID --config`); "
                                    "the other run flags are then ignored")
    p.add_argument("--preset", action="append", choices=[*PRESET_KEYS, "current"], metavar="PRESET",
                   help=f"one of {', '.join(PRESET_KEYS)}, or current for the plan the flags below make (repeat "
                        f"for several; default: {', '.join(DEMO_COMPARISON)})")
    p.add_argument("--top-n", type=int, default=2, help="blocks the fine_tune_top preset trains")
    p.add_argument("--recipe", help="one of the reports' recipes, with its own backbone, head, optimiser and "
                                    f"budget (`{PROG.name} recipes` lists them); data defaults to CIFAR-10")
    p.add_argument("--epochs", type=int, default=None, help=f"default {DEMO_EPOCHS}, or the recipe's")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=DEMO_OPTIM.lr)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--same-lr", action="store_true", help="give every run --lr (unfair: presets otherwise train "
                                                          "at the rate suited to what they train)")
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    p.add_argument("--no-cache", action="store_true", help="never cache frozen features")
    p.add_argument("--slice-steps", type=int, default=5, help="steps per turn when interleaving runs")
    p.add_argument("--json", action="store_true", help="the summary as JSON on stdout, for scripts (progress and "
                   "messages go to stderr)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; the app uses "
                   "all cores but one, and CPU sums depend on it: give the same count to reproduce a run exactly)")
    _add_plan_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="pretrain a backbone from scratch and save it to the model zoo")
    _add_data_args(p, task="source", crop_pad=2)
    _add_backbone_args(p)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--name", default="my-digits04", help="zoo entry name (a taken one is refused)")
    p.add_argument("--out", type=Path, default=None, help="zoo folder (default: $FREEZELAB_HOME/zoo)")
    p.add_argument("--replace", action="store_true", help="overwrite an entry of that name in that folder")
    p.add_argument("--slice-steps", type=int, default=5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("recipes", help="list the reports' recipes and the figures they reported")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("sweep", help="transferability by depth: one run per number of frozen leading blocks, "
                                     "plus a from-scratch control (Yosinski et al., 2014)")
    _add_data_args(p, task="target", crop_pad=0)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    _add_backbone_args(p)
    p.add_argument("--weights", default="pretrained", help="pretrained, file:<path> or zoo:<name>")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--seeds", type=int, default=1, help="runs per setting, seeds 0 .. N-1")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--same-lr", type=float, default=None,
                   help="give every setting this one rate (default: each the rate suited to what it trains)")
    p.add_argument("--no-cache", action="store_true", help="never cache frozen features")
    p.add_argument("--engine", default="jobs", choices=("jobs", "ray"), help="jobs: this process's job manager; "
                   "ray: Ray Tune trials (optional install)")
    p.add_argument("--address", default=None, help="with --engine ray: an existing Ray cluster (default: start "
                                                   "a local one)")
    p.add_argument("--cpus", type=int, default=None, help="with --engine ray: CPUs of the local Ray")
    p.add_argument("--slice-steps", type=int, default=5, help="steps per turn when interleaving runs")
    p.add_argument("--json", action="store_true", help="the summary as JSON on stdout, for scripts (progress and "
                   "messages go to stderr)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("lr-find", help="learning-rate range test for a preset (Smith, 2017)")
    _add_data_args(p, task="target", crop_pad=0)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    _add_backbone_args(p)
    p.add_argument("--weights", default="pretrained", help="pretrained, none, file:<path> or zoo:<name>")
    p.add_argument("--preset", default="feature_extraction", choices=PRESET_KEYS, metavar="PRESET",
                   help=f"the preset whose first phase is tested: {', '.join(PRESET_KEYS)}")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--start", type=float, default=1e-6)
    p.add_argument("--end", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=60)
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("backbones", help="list the registered backbones and their blocks")
    p.add_argument("--all", action="store_true", help="also every model torchvision and timm name (usable as "
                   "torchvision:<name>, timm:<name>)")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("runs", help="the run store: list, show ID, resume ID, export-csv, delete ID")
    p.add_argument("action", choices=("list", "show", "resume", "export-csv", "delete"))
    p.add_argument("ids", nargs="*", help="run ids (show, resume, delete; export-csv: default all)")
    p.add_argument("--config", action="store_true", help="show: print only the run's config JSON")
    p.add_argument("--json", action="store_true", help="list, show: JSON for scripts instead of tables")
    p.add_argument("--epochs", type=int, default=None, help="resume: train this many epochs more (default: the "
                   "rest of each run's budget)")
    p.add_argument("--restart", action="store_true", help="resume: a run whose checkpoint is missing starts again "
                   "from step 0 (its stored steps are deleted)")
    p.add_argument("--out", help="export-csv: write to this file (default: standard output)")
    p.set_defaults(func=cmd_runs)

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

    p = sub.add_parser("bench", help="every speed and memory figure beside its baseline, measured in one run: "
                                     "one table, and a CSV")
    p.add_argument("--only", nargs="+", choices=SECTIONS,
                   help="some sections (default: all, in this order)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (what the tests run; the numbers mean nothing)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop measurement, after a warm-up")
    p.add_argument("--repeats", type=int, default=3, help="clicks of the demo comparison in Chromium")
    p.add_argument("--scale-images", type=int, default=50_000, help="training images for the scale section")
    p.add_argument("--scale-sizes", type=int, nargs="+", default=[32, 224], help="image sizes for the scale section")
    p.add_argument("--cifar", default=str(CIFAR_JPG_DEFAULT), help="the CIFAR-10 JPEG subset (train/, test/) to "
                   "time on and replicate; generated images stand in when it is missing")
    p.add_argument("--out", default="bench.csv", help="where the CSV goes (default: bench.csv here)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("app", help="start the Streamlit app; further arguments go to `streamlit run` "
                                   "(--server.address 0.0.0.0 shares it on a network)")
    p.add_argument("--share", action="append", default=[], metavar="DIR",
                   help="a folder browsers may read images and weights files from (repeatable; besides "
                        "$FREEZELAB_HOME/data and uploads)")
    p.add_argument("--export-to", action="append", default=[], metavar="DIR",
                   help="a folder browsers may export runs into (repeatable; besides $FREEZELAB_HOME)")
    p.add_argument("--tracking-uri", action="append", default=[], metavar="URI",
                   help="an MLflow tracking URI browsers may export runs to (repeatable; none by default)")
    p.add_argument("--teacher-code", metavar="CODE", help="a code that makes a browser the lesson's teacher: it "
                   "sees the class's predictions and results (no teacher view without one)")
    p.add_argument("--model-file", action="append", default=[], metavar="FILE.py:FUNCTION",
                   help="your own network, offered to every browser as a backbone (repeatable); a browser can "
                        "never name code to run")
    p.add_argument("--max-model-size", type=_positive_float, metavar="MILLIONS",
                   help="the largest torchvision or timm model a browser may build, in millions of parameters "
                        f"(default: ${{{shares.MAX_MODEL_ENV}}}, else {shares.DEFAULT_MAX_MODEL_M:.0f})")
    p.set_defaults(func=cmd_app)

    argv = sys.argv[1:] if argv is None else argv
    try:  # the operator's own networks, registered before the arguments that may name them are checked
        named = _register_model_files(argv)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    args, rest = parser.parse_known_args(argv)
    if named and "--backbone" not in argv and hasattr(args, "backbone"):
        args.backbone = named[-1]  # --model-file alone: that network is the backbone
    if args.func is cmd_app:
        args.streamlit_args = rest  # streamlit's own flags (--server.port 8502), passed on as they are
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.command_line = f"{prog} " + shlex.join(argv)  # recorded in manifests
    PROG.json = getattr(args, "json", False)
    return args.func(args)


def console() -> int:
    """The `freezelab` command (pyproject's entry point): the same subcommands, named as typed."""
    return main(prog="freezelab")


if __name__ == "__main__":
    raise SystemExit(main())
