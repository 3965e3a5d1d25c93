"""Training as a terminal shows it: runs created and trained side by side with a bar per run (or one line per
epoch into a file or a pipe), Ctrl-C stopping them with every run saved, and the table of how they ended."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from tqdm import tqdm

from core.cli.common import FLOAT, Invocation
from core.runtime.device import describe_device

if TYPE_CHECKING:
    import pandas as pd

    from core.execution.jobs import JobManager
    from core.training.config import RunConfig

SUMMARY_COLUMNS = ["label", "status", "trainable", "params", "epochs", "val_acc", "val_loss", "seconds", "cache"]


def group_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextlib.contextmanager
def stop_on_ctrl_c(stop: threading.Event):
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


def trial_bar(total: int):
    bar = tqdm(total=total, unit="epoch", desc="trials", disable=None)  # None: quiet when not a terminal
    return lambda done, total, what: (bar.update(done - bar.n), bar.set_postfix_str(what, refresh=True))


def train(manager: JobManager, configs: list[RunConfig], prefix: str, invocation: Invocation) -> list[str]:
    """Create and train `configs` side by side with a progress bar per run; returns the run ids."""
    group, run_ids = group_name(prefix), []
    try:
        for cfg in tqdm(configs, unit="run", desc="creating", leave=False, disable=len(configs) < 50 or None):
            run_ids.append(manager.create_run(cfg, group))
    except KeyboardInterrupt:  # nothing trains yet: what was created stays, ready to train
        print(f"\nstopped creating: {len(run_ids)} of {len(configs)} runs created, none trained; train them with "
              f"{invocation.prog} runs resume {' '.join(run_ids[:3])}{' ...' if len(run_ids) > 3 else ''}",
              file=sys.stderr)
        return run_ids
    watch(manager, run_ids, configs, max(cfg.epochs for cfg in configs), invocation)
    return run_ids


def watch(manager: JobManager, run_ids: list[str], configs: list[RunConfig], epochs: int, invocation: Invocation,
          restart: bool = False) -> None:
    """Train a burst of `epochs` for the runs side by side with a progress bar per run, until each ends its
    burst or budget; Ctrl-C stops them, each after its step with its checkpoint written."""
    invocation.say(f"training on {describe_device(manager.device, manager.threads)}")
    terminal = sys.stderr.isatty()  # bars on a terminal; into a file or a pipe, one line per epoch instead
    bars = {r: tqdm(total=cfg.epochs, desc=cfg.label[:36].ljust(36), unit="epoch", position=i, disable=not terminal)
            for i, (r, cfg) in enumerate(zip(run_ids, configs, strict=True))}
    budgets = {r: cfg.epochs for r, cfg in zip(run_ids, configs, strict=True)}
    draw = _bars_drawn(manager, bars) if terminal else _lines_said(manager, run_ids, budgets)
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


def _bars_drawn(manager: JobManager, bars: dict[str, tqdm]):
    """What redraws the runs' bars on a terminal: each run's epoch, and its download or its last accuracy."""
    def draw() -> None:
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

    return draw


def _lines_said(manager: JobManager, run_ids: list[str], budgets: dict[str, int]):
    """What says the runs' progress into a file or a pipe: a download at each quarter; from the store, every
    epoch, however quickly they come; each line once."""
    said: set[tuple] = set()  # the lines printed: (run, epoch), (run, what it prepares, which quarter)

    def draw() -> None:
        for run_id in run_ids:
            if (ready := manager.snapshot(run_id).preparation) is not None:
                fraction, words = ready
                mark = (run_id, words.split(":")[0], int(fraction * 4))
                if mark not in said:
                    said.add(mark)
                    print(f"{manager.store.label(run_id)}: {words}", file=sys.stderr, flush=True)
        for row in manager.store.metrics.curves(run_ids).itertuples():
            if (row.run_id, int(row.epoch)) not in said:
                said.add((row.run_id, int(row.epoch)))
                print(f"{row.label}: epoch {int(row.epoch)} of {budgets[row.run_id]}, val_acc {row.val_acc:.3f}",
                      file=sys.stderr, flush=True)

    return draw


def results(manager: JobManager, run_ids: list[str], invocation: Invocation) -> pd.DataFrame:
    """The runs' table (printed, with where they are stored, unless --json asked for JSON instead)."""
    table = manager.store.runs().set_index("id").loc[run_ids]
    snaps = {r: manager.snapshot(r) for r in run_ids}
    table["cache"] = ["on" if snaps[r].cache_on else "off" for r in run_ids]
    if not invocation.json:
        print("\n" + table[SUMMARY_COLUMNS].to_string(index=False, **FLOAT))
        print(f"\nruns stored in {manager.store.path}")
    return table
