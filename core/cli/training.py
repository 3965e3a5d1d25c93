"""The commands that train: `train` (runs side by side), `sweep` (transferability by depth), `pretrain` (a
backbone into the zoo) and `lr-find` (a learning-rate range test), each beside its parser."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from tqdm import tqdm

from core.cli import progress
from core.cli.common import (
    FLOAT,
    add_backbone_args,
    add_data_args,
    add_json_flag,
    failures,
    records,
)
from core.cli.configs import data_config, head_of_flags, plan_of_flags
from core.data.datasets import DataConfig, load_data
from core.freezing import BN_POLICIES, PRESET_KEYS, recipes_for
from core.models import backbones, zoo
from core.models.backbones import ModelConfig
from core.store.runs import CONFIG_ERRORS, RunStore, config_from_json
from core.store.status import RunStatus
from core.training.config import (
    CURRENT,
    DEMO_COMPARISON,
    DEMO_EPOCHS,
    DEMO_OPTIM,
    OPTIMIZERS,
    OptimConfig,
    RunConfig,
    comparison,
    validate_new_run,
)

PLAN_FLAGS = ("trainable", "bn", "lr_mult", "last_layers", "truncate_after")


def cmd_train(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager
    from core.experiments.report_recipes import beside_reported

    invocation = args.invocation
    try:
        configs, recipe, data_cfg = train_configs(args)
    except (ValueError, OSError) as err:
        print(err, file=sys.stderr)
        return 2
    manager = JobManager(RunStore(), slice_steps=args.slice_steps, threads=args.threads)
    run_ids = progress.train(manager, configs, "cli", invocation)
    table = progress.results(manager, run_ids, invocation)
    beside = beside_reported(recipe, manager.store, run_ids) if recipe else None
    if invocation.json:
        print(json.dumps({"runs": records(table[progress.SUMMARY_COLUMNS].reset_index()),
                          "store": str(manager.store.path),
                          **({"beside_the_report": records(beside)} if recipe else {})}, indent=1))
    elif recipe:
        print(f"\n{recipe.title}: beside the report (it trained on all 50,000 CIFAR-10 images; these runs on "
              f"{data_cfg.per_class or 'all'} per class of {data_cfg.source})")
        print(beside.to_string(index=False, **FLOAT))
    return failures(table)


def train_configs(args: argparse.Namespace):
    """(configs, report recipe or None, data config) the train command's arguments ask for; ValueError in
    words."""
    from core.experiments.report_recipes import RECIPES

    prog = args.invocation.prog
    if args.config:
        try:
            cfg = config_from_json(Path(args.config).expanduser().read_text())
        except CONFIG_ERRORS as err:
            raise ValueError(f"{args.config} is not a FreezeLab run config ({err}); `{prog} runs show ID "
                             "--config` writes one.") from err
        validate_new_run(cfg)
        return [cfg], None, cfg.data
    recipe = RECIPES.get(args.report_recipe) if args.report_recipe else None
    if args.report_recipe and recipe is None:
        raise ValueError(f"Unknown report recipe {args.report_recipe!r}; `{prog} report-recipes` lists them.")
    args.data = args.data or ("cifar10" if recipe else "demo")  # a report recipe trains on the report's data
    args.image_size = args.image_size or (recipe.image_size if recipe else None)  # None: the backbone's size
    data_cfg = data_config(args, per_class=args.per_class)
    if recipe:
        configs = recipe.configs(data_cfg, args.weights, args.epochs, args.seed, not args.no_cache)
        for cfg in configs:
            validate_new_run(cfg)
        return configs, recipe, data_cfg
    model = ModelConfig(args.backbone, args.weights, head_of_flags(args))
    optim = OptimConfig(name=args.optimizer, lr=args.lr, batch_size=args.batch_size, cosine=args.cosine)
    epochs = DEMO_EPOCHS if args.epochs is None else args.epochs  # --epochs 0 is refused, not the default
    shared = dict(data=data_cfg, model=model, optim=optim, epochs=epochs, seed=args.seed, patience=args.patience,
                  feature_cache=not args.no_cache)
    own_plan = any(getattr(args, f) is not None for f in PLAN_FLAGS)
    keys = list(args.preset or ([] if own_plan else DEMO_COMPARISON))
    if own_plan and CURRENT not in keys:  # the plan the flags describe: the Train page's "Current plan"
        keys.insert(0, CURRENT)
    plan = plan_of_flags(args) if CURRENT in keys else None
    configs = comparison(recipes_for(backbones.block_names(args.backbone), top_n=args.top_n), keys, plan=plan,
                         bn=args.bn, same_lr=args.lr if args.same_lr else None, **shared)
    return configs, None, data_cfg


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager
    from core.experiments import studies

    invocation = args.invocation
    data_cfg = data_config(args, per_class=args.per_class)
    optim = OptimConfig(name=args.optimizer, batch_size=args.batch_size)
    same_lr = args.lr if args.same_lr else None
    try:
        configs = studies.depth_sweep(data_cfg, ModelConfig(args.backbone, args.weights), optim, args.epochs,
                                      args.seeds, same_lr=same_lr, feature_cache=not args.no_cache)
        for cfg in configs:
            validate_new_run(cfg)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    store = RunStore()
    if args.engine == "ray":
        from core.execution import ray_engine

        stop = threading.Event()
        try:
            with progress.stop_on_ctrl_c(stop):
                run_ids = ray_engine.run_sweep(store, configs, progress.group_name("sweep"), address=args.address,
                                               cpus=args.cpus, progress=progress.trial_bar(len(configs) * args.epochs),
                                               stop=stop)
        except ray_engine.RayUnavailable as err:
            print(err, file=sys.stderr)
            return 2
    else:
        run_ids = progress.train(JobManager(store, slice_steps=args.slice_steps), configs, "sweep", invocation)
    by_depth = studies.sweep_table(store, run_ids)
    runs = store.runs().set_index("id").loc[run_ids]
    stopped = int((runs.status == RunStatus.STOPPED).sum())
    if stopped:
        invocation.say(f"\n{studies.UNEQUAL_BUDGETS}. {stopped} of {len(runs)} runs were stopped; each resumes "
                       f"from where it stopped ({invocation.prog} runs resume ID ..., or a burst on the app's Train "
                       "page).")
    if invocation.json:
        print(json.dumps({"by_frozen_blocks": records(by_depth), "runs": records(
            runs[["label", "status", "epochs", "val_acc", "seconds"]].reset_index()), "store": str(store.path)},
            indent=1))
        return failures(runs)
    print(f"\nFinal validation accuracy against frozen leading blocks ({args.seeds} seed(s) each, "
          f"{args.epochs} epochs; each setting at its own learning rate"
          f"{'' if same_lr is None else f' — here all at {same_lr:g}'}):")
    print(by_depth.to_string(index=False, **FLOAT))
    print(f"\nruns stored in {store.path}")
    return failures(runs)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from core.execution.jobs import JobManager
    from core.experiments import studies

    try:  # before training: a name it could not save under would waste the training
        zoo.check_new_name(args.name, args.out, args.replace)
    except ValueError as err:
        print(f"{err} (--replace overwrites an entry of yours)", file=sys.stderr)
        return 2
    data_cfg = data_config(args, per_class=None, val_per_class=None)
    cfg = studies.pretrain_config(data_cfg, args.backbone, args.epochs, args.lr, args.batch_size, args.seed,
                                  label=f"pretrain {args.name}")
    validate_new_run(cfg)
    manager = JobManager(RunStore(), slice_steps=args.slice_steps)
    run_ids = progress.train(manager, [cfg], "pretrain", args.invocation)
    if failures(progress.results(manager, run_ids, args.invocation)):
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

    data_cfg = data_config(args, per_class=args.per_class)
    recipes = recipes_for(backbones.block_names(args.backbone))
    cfg = RunConfig.from_recipe(recipes[args.preset], data=data_cfg, model=ModelConfig(args.backbone, args.weights),
                                optim=OptimConfig(name=args.optimizer, batch_size=args.batch_size), seed=args.seed)
    validate_new_run(cfg)
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


# --- parsers --------------------------------------------------------------------------------------------------

def add_parsers(sub, prog: str) -> None:
    _add_train_parser(sub, prog)
    _add_pretrain_parser(sub, prog)
    _add_sweep_parser(sub, prog)
    _add_lr_find_parser(sub, prog)


def _add_run_args(p: argparse.ArgumentParser, prog: str, weights: str = "pretrained, none, file:<path> or zoo:<name>",
                  **data) -> None:
    """The data, its amount, the backbone and its weights: what every run of these commands is made of."""
    add_data_args(p, prog, **data)
    p.add_argument("--per-class", type=int, default=DataConfig().per_class, help="training images per class")
    add_backbone_args(p)
    p.add_argument("--weights", default="pretrained", help=weights)


def _add_train_parser(sub, prog: str) -> None:
    p = sub.add_parser("train", help="train runs side by side and store them (default: the demo comparison)")
    _add_run_args(p, prog, task="target", crop_pad=0, source=None)
    p.add_argument("--config", help="a run config as JSON (what the run store keeps: `runs show ID --config`); "
                                    "the other run flags are then ignored")
    p.add_argument("--preset", action="append", choices=[*PRESET_KEYS, CURRENT], metavar="PRESET",
                   help=f"one of {', '.join(PRESET_KEYS)}, or current for the plan the flags below make (repeat "
                        f"for several; default: {', '.join(DEMO_COMPARISON)})")
    p.add_argument("--top-n", type=int, default=2, help="blocks the fine_tune_top preset trains")
    p.add_argument("--report-recipe", metavar="KEY", help="one of the reports' recipes, with its own backbone, "
                   f"head, optimiser and budget (`{prog} report-recipes` lists them); data defaults to CIFAR-10")
    p.add_argument("--epochs", type=int, default=None, help=f"default {DEMO_EPOCHS}, or the report recipe's")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=DEMO_OPTIM.lr)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--same-lr", action="store_true", help="give every run --lr (unfair: presets otherwise train "
                                                          "at the rate suited to what they train)")
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    p.add_argument("--no-cache", action="store_true", help="never cache frozen features")
    p.add_argument("--slice-steps", type=int, default=5, help="steps per turn when interleaving runs")
    add_json_flag(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; the app uses "
                   "all cores but one, and CPU sums depend on it: give the same count to reproduce a run exactly)")
    _add_plan_args(p)
    p.set_defaults(func=cmd_train)


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    """The Layers page's controls, as flags: together they make one run of that plan ("Current plan")."""
    g = p.add_argument_group("one plan of your own (the Layers page's controls; with --preset, beside the presets)")
    g.add_argument("--trainable", help="blocks that train, comma-separated (\"\" for none: feature extraction)")
    g.add_argument("--bn", metavar="POLICY",
                   help=f"BatchNorm in frozen blocks: {', '.join(BN_POLICIES)} (default frozen)")
    g.add_argument("--lr-mult", action="append", metavar="BLOCK=FACTOR", help="scale a block's learning rate "
                   "(repeat for several)")
    g.add_argument("--last-layers", type=int, help="instead of whole blocks: train only the last N layers")
    g.add_argument("--truncate-after", metavar="BLOCK", help="drop every block after this one")
    h = p.add_argument_group("the head (every run)")
    h.add_argument("--head-pool", default="avg", choices=("avg", "flatten"), help="pooling before the head")
    h.add_argument("--head-hidden", default="", help="hidden layer widths, comma-separated (e.g. 128)")
    h.add_argument("--head-dropout", type=float, default=0.0)


def _add_pretrain_parser(sub, prog: str) -> None:
    p = sub.add_parser("pretrain", help="pretrain a backbone from scratch and save it to the model zoo")
    add_data_args(p, prog, task="source", crop_pad=2)
    add_backbone_args(p)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--name", default="my-digits04", help="zoo entry name (a taken one is refused)")
    p.add_argument("--out", type=Path, default=None, help="zoo folder (default: $FREEZELAB_HOME/zoo)")
    p.add_argument("--replace", action="store_true", help="overwrite an entry of that name in that folder")
    p.add_argument("--slice-steps", type=int, default=5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_pretrain)


def _add_sweep_parser(sub, prog: str) -> None:
    p = sub.add_parser("sweep", help="transferability by depth: one run per number of frozen leading blocks, "
                                     "plus a from-scratch control (Yosinski et al., 2014)")
    _add_run_args(p, prog, weights="pretrained, file:<path> or zoo:<name>", task="target", crop_pad=0)
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--seeds", type=int, default=1, help="runs per setting, seeds 0 .. N-1")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=DEMO_OPTIM.lr, help="the one rate every setting trains at with "
                                                                   "--same-lr")
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--same-lr", action="store_true",
                   help="give every setting --lr (otherwise each trains at the rate suited to what it trains)")
    p.add_argument("--no-cache", action="store_true", help="never cache frozen features")
    p.add_argument("--engine", default="jobs", choices=("jobs", "ray"), help="jobs: this process's job manager; "
                   "ray: Ray Tune trials (optional install)")
    p.add_argument("--address", default=None, help="with --engine ray: an existing Ray cluster (default: start "
                                                   "a local one)")
    p.add_argument("--cpus", type=int, default=None, help="with --engine ray: CPUs of the local Ray")
    p.add_argument("--slice-steps", type=int, default=5, help="steps per turn when interleaving runs")
    add_json_flag(p)
    p.set_defaults(func=cmd_sweep)


def _add_lr_find_parser(sub, prog: str) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test for a preset (Smith, 2017)")
    _add_run_args(p, prog, task="target", crop_pad=0)
    p.add_argument("--preset", default="feature_extraction", choices=PRESET_KEYS, metavar="PRESET",
                   help=f"the preset whose first phase is tested: {', '.join(PRESET_KEYS)}")
    p.add_argument("--optimizer", default=DEMO_OPTIM.name, choices=OPTIMIZERS)
    p.add_argument("--batch-size", type=int, default=DEMO_OPTIM.batch_size)
    p.add_argument("--start", type=float, default=1e-6)
    p.add_argument("--end", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=60)
    p.set_defaults(func=cmd_lr_find)
