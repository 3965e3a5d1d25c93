"""What runs recorded while they trained: their metrics at each step and epoch, their events (phase switches,
the feature cache, bursts' ends) and their blocks' statistics. The run store's part `store.metrics`; it alone
writes these three tables.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Protocol

from core.store.database import Database, Tables
from core.training.events import BlockStats, BurstEnd, CacheStatus, EpochEnd, Event, PhaseSwitch, StepEnd

if TYPE_CHECKING:  # imported where tables are made: a server's first page draws before it needs pandas
    import pandas as pd

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_sec")
STEP_METRICS = ("loss", "lr", "images_per_sec")
METRICS = {"epoch": EPOCH_METRICS, "step": STEP_METRICS}  # by kind: the columns `curves` gives

TABLES = Tables("""
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, kind TEXT, step INTEGER, epoch REAL, seconds REAL, name TEXT, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, kind, step);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT, step INTEGER, epoch REAL, kind TEXT, detail TEXT, created REAL
);
CREATE TABLE IF NOT EXISTS block_stats (
    run_id TEXT, step INTEGER, epoch INTEGER, block TEXT, drift REAL, bn_drift REAL, grad_norm REAL
);
CREATE INDEX IF NOT EXISTS block_stats_run ON block_stats (run_id, step);
""")
_TABLES = ("metrics", "events", "block_stats")  # each holds rows of a run by its `run_id`, each row at a `step`

# The figures a runs listing shows of each run `r` of the runs table (RunStore.runs), read from this part's table:
# the SQL that reads it stays here.
FIGURES = """
    (SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id) AS steps,
    (SELECT MAX(epoch) FROM metrics m WHERE m.run_id = r.id AND kind = 'epoch') AS epochs,
    (SELECT MAX(seconds) FROM metrics m WHERE m.run_id = r.id) AS seconds,
    (SELECT MAX(value) FROM metrics m WHERE m.run_id = r.id AND name = 'val_acc') AS best_val_acc,
    (SELECT value FROM metrics m WHERE m.run_id = r.id AND name = 'val_acc' ORDER BY step DESC LIMIT 1) AS val_acc,
    (SELECT value FROM metrics m WHERE m.run_id = r.id AND name = 'val_loss' ORDER BY step DESC LIMIT 1) AS val_loss
"""


class RunTable(Protocol):
    """What this part asks of the runs table (RunStore answers): the names curves carry, and a mark on a run
    whose recorded past was cut back."""

    def labels(self, run_ids: list[str]) -> dict[str, str]: ...

    def recipe_kinds(self, run_ids: list[str]) -> dict[str, str]: ...

    def versions(self, run_ids: list[str]) -> tuple: ...

    def touch(self, run_id: str) -> None: ...


def _empty_curves() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=["run_id", "label", "step", "epoch", "seconds"])


class Metrics:
    def __init__(self, db: Database, runs: RunTable):
        self.db = db
        self.runs = runs

    def record(self, run_id: str, events: list[Event]) -> None:
        """Write a batch of training events in one transaction."""
        metrics, notes, blocks, now = [], [], [], time.time()
        for e in events:
            if isinstance(e, StepEnd):
                metrics += [(run_id, "step", e.step, e.epoch, e.seconds, k, getattr(e, k)) for k in STEP_METRICS]
            elif isinstance(e, EpochEnd):
                metrics += [(run_id, "epoch", e.step, e.epoch, e.seconds, k, getattr(e, k)) for k in EPOCH_METRICS]
            elif isinstance(e, BlockStats):
                blocks += [(run_id, e.step, e.epoch, *row)
                           for row in zip(e.blocks, e.drift, e.bn_drift, e.grad_norm, strict=True)]
            elif isinstance(e, PhaseSwitch | CacheStatus | BurstEnd):
                kind = {PhaseSwitch: "phase", CacheStatus: "cache", BurstEnd: "burst"}[type(e)]
                detail = json.dumps(dataclasses.asdict(e))
                notes.append((run_id, e.step, getattr(e, "epoch", None), kind, detail, now))
        with self.db.transaction() as con:
            con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", metrics)
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", notes)
            con.executemany("INSERT INTO block_stats VALUES (?, ?, ?, ?, ?, ?, ?)", blocks)

    def forget_after(self, run_id: str, step: int) -> None:
        """Drop metrics and events past `step`: a run resumed from a checkpoint redoes them."""
        with self.db.transaction() as con:
            for table in _TABLES:
                con.execute(f"DELETE FROM {table} WHERE run_id = ? AND step > ?", (run_id, step))
        # The redone rows may take the very row ids the dropped ones had: the mark moves curves_version.
        self.runs.touch(run_id)

    def delete(self, run_id: str, con: sqlite3.Connection) -> None:
        """Drop every row of the run, in the caller's transaction (RunStore.delete takes a run from every part
        at once)."""
        for table in _TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def recorded_steps(self, run_id: str) -> int:
        """The last training step the store holds for the run (0 for none)."""
        step = self.db.rows("SELECT MAX(step) AS step FROM metrics WHERE run_id = ?", (run_id,))[0]["step"]
        return int(step) if step is not None else 0

    def step_log(self) -> pd.DataFrame:
        """(run_id, step) of every recorded training step, in the order the steps were written."""
        return self.db.read("SELECT run_id, step FROM metrics WHERE kind = 'step' AND name = 'loss' ORDER BY rowid")

    def curves(self, run_ids: list[str] | None = None, kind: str = "epoch") -> pd.DataFrame:
        """Wide table, one row per run and step: run_id, label, step, epoch, seconds, then the metrics, then the
        run's recipe kind (its colour's key)."""
        where, args = "kind = ?", (kind,)
        if run_ids is not None:
            if not run_ids:
                return _empty_curves()
            where += f" AND run_id IN ({','.join('?' * len(run_ids))})"
            args += tuple(run_ids)
        # Pivoted by SQLite (one column per metric name) rather than by pandas' pivot_table: the live view
        # reads this every time steps arrive, and read-then-pivot_table took three times as long.
        columns = ", ".join(f"AVG(CASE WHEN name = '{name}' THEN value END) AS {name}"
                            for name in sorted(METRICS[kind]))
        wide = self.db.read(f"SELECT run_id, step, epoch, seconds, {columns} FROM metrics WHERE {where} "
                            "GROUP BY run_id, step, epoch, seconds", args)
        present = list(dict.fromkeys(wide.run_id))
        labels = self.runs.labels(present)
        if len(labels) < len(present):  # rows of a run the runs table no longer holds are no curve
            wide = wide[wide.run_id.isin(labels)].reset_index(drop=True)
        if wide.empty:
            return _empty_curves()
        wide.insert(1, "label", wide.run_id.map(labels))
        wide["recipe"] = wide.run_id.map(self.runs.recipe_kinds(present))
        order = {r: i for i, r in enumerate(run_ids or sorted(set(wide.run_id)))}  # the caller's order
        return wide.sort_values(["run_id", "step"], key=lambda c: c.map(order) if c.name == "run_id" else c,
                                ignore_index=True)

    def curves_version(self, run_ids: list[str]) -> tuple:
        """A cheap key that moves whenever `curves(run_ids)` could read differently: the runs' metric rows
        (how many, the newest) and the runs' own rows (labels, last change: `forget_after` marks one)."""
        marks = ",".join("?" * len(run_ids))
        row = self.db.rows(f"SELECT COUNT(*), MAX(rowid) FROM metrics WHERE run_id IN ({marks})", tuple(run_ids))[0]
        return tuple(row), self.runs.versions(run_ids)

    def export_csv(self, run_ids: list[str] | None = None) -> str:
        """The epoch curves of the given runs (all when None) as CSV text."""
        buf = io.StringIO()
        self.curves(run_ids).to_csv(buf, index=False)
        return buf.getvalue()

    def block_stats(self, run_ids: list[str]) -> pd.DataFrame:
        """Per run, epoch and block (in forward order, the head last): weight drift, BatchNorm drift and
        mean gradient norm (NaN where there is none: no BatchNorm, or a frozen block)."""
        marks = ",".join("?" * len(run_ids))
        return self.db.read(f"SELECT run_id, step, epoch, block, drift, bn_drift, grad_norm FROM block_stats "
                            f"WHERE run_id IN ({marks}) ORDER BY rowid", tuple(run_ids))

    def events(self, run_id: str) -> pd.DataFrame:
        table = self.db.read("SELECT step, epoch, kind, detail FROM events WHERE run_id = ? ORDER BY rowid",
                             (run_id,))
        table["detail"] = [json.loads(d) for d in table["detail"]]
        return table
