"""The run store: one embedded SQLite file, `$FREEZELAB_HOME/runs.sqlite`, with every run's config,
status, metrics and events; checkpoints beside it in `$FREEZELAB_HOME/runs/<id>/checkpoint.pt`.

Each call opens its own connection, so worker threads and the Streamlit script thread can share a store.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import socket
import sqlite3
import time
import uuid
from contextlib import closing
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from core.runtime import paths
from core.training.config import ConfigInvalid, RunConfig, config_from_plain, recipe_kind, validate_config
from core.training.events import BlockStats, BurstEnd, CacheStatus, EpochEnd, Event, PhaseSwitch, StepEnd

if TYPE_CHECKING:  # imported where tables are made: a server's first page draws before it needs pandas
    import pandas as pd


class RunStatus(StrEnum):
    """A run's status, as the store keeps it (the values are what is written)."""
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"


STATUSES = {  # each status in words, for the pages' legends
    RunStatus.CREATED: "not trained yet",
    RunStatus.RUNNING: "a burst is training it now",
    RunStatus.PAUSED: "its last burst ended; it can train on",
    RunStatus.FINISHED: "trained for all its epochs, or stopped early by its validation loss",
    RunStatus.STOPPED: "stopped by the user; it can train on",
    RunStatus.FAILED: "an error ended it (see its message)",
    RunStatus.DIVERGED: "its loss stopped being a finite number",
    RunStatus.INTERRUPTED: "the app ended while it trained; it resumes from its last checkpoint",
}
# Statuses a new burst can carry on from; a run that ended these ways has nothing more to give.
RESUMABLE = (RunStatus.CREATED, RunStatus.PAUSED, RunStatus.STOPPED, RunStatus.INTERRUPTED)
ENDED_BADLY = (RunStatus.FAILED, RunStatus.DIVERGED)
ENDED = (RunStatus.FINISHED, *ENDED_BADLY)
HISTORY = 12  # weight snapshots kept per run (the first and the latest ones)
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_sec")
STEP_METRICS = ("loss", "lr", "images_per_sec")
METRICS = {"epoch": EPOCH_METRICS, "step": STEP_METRICS}  # by kind: the columns `curves` gives

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, label TEXT, grp TEXT, created REAL, updated REAL, status TEXT, message TEXT,
    config TEXT, params INTEGER, trainable INTEGER
);
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
CREATE TABLE IF NOT EXISTS owners (id TEXT PRIMARY KEY, pid INTEGER, host TEXT, heartbeat REAL);
CREATE TABLE IF NOT EXISTS predictions (session TEXT, step TEXT, choice TEXT, at REAL, PRIMARY KEY (session, step));
CREATE TABLE IF NOT EXISTS teachers (session TEXT PRIMARY KEY, at REAL);
"""
ID_ATTEMPTS = 8  # ids drawn before creating a run gives up (two made in one second share one at odds of 1 in 16M)
# The runs a session may see: its own, everyone's (the command line's), and the teacher's (core/lesson.py).
_VISIBLE = "(? IS NULL OR session = '' OR session = ? OR session IN (SELECT session FROM teachers))"
LEASE_S = 15.0  # an owner whose heartbeat is older than this is gone (sooner, when its pid is dead here)
_TABLES = (("metrics", "run_id"), ("events", "run_id"), ("block_stats", "run_id"))  # a run's rows, by key


# -----------------------------------------------------------------------------
# Configs <-> JSON


def config_to_json(cfg: RunConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


class ConfigUnreadable(ValueError):
    """A stored run config that is not valid JSON or not a RunConfig; the message names the run."""


class CheckpointUnreadable(ValueError):
    """A checkpoint file that exists but cannot be read."""


class StoreDamaged(RuntimeError):
    """A run store that SQLite cannot read; the file is left as it is."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"The run store {path} is damaged ({reason}). It was left as it is; start a fresh store "
                         f"beside it to go on (the damaged file is kept, renamed).")
        self.path = path


CONFIG_ERRORS = (json.JSONDecodeError, TypeError, KeyError, ValueError, StopIteration)  # a damaged config


def config_from_json(text: str) -> RunConfig:
    """A run config from JSON, checked whole (core/training/config.py: types, unknown keys, ranges)."""
    try:
        plain = json.loads(text)
    except RecursionError as err:  # JSON nested thousands deep: no config is
        raise ConfigInvalid("the JSON is nested far deeper than any run config") from err
    return config_from_plain(plain)


def _read_checkpoint(path: Path, mmap: bool = False) -> dict:
    try:
        import torch  # here: listing and reading runs needs no torch

        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # a truncated or foreign file: say so, never guess
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]  # some errors carry no message
        raise CheckpointUnreadable(f"{path} cannot be read ({reason})") from err


def _save(path: Path, obj: dict) -> None:
    """torch.save, written atomically; torch imported here, where a trainer (which has it) saves."""
    import torch

    paths.atomic_write(path, lambda f: torch.save(obj, f))


def run_names(table: pd.DataFrame) -> dict[str, str]:
    """Display name of each run in `table` (columns run_id, label): its label, followed by the end of its
    id where another run in the table has the same label (two "Feature extraction" runs stay apart)."""
    runs = table[["run_id", "label"]].drop_duplicates("run_id")
    repeated = set(runs.label[runs.label.duplicated(keep=False)])
    return {r.run_id: f"{r.label} · {r.run_id[-6:]}" if r.label in repeated else r.label for r in runs.itertuples()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _model_fields(text: str) -> tuple[str, str, bool, str]:
    """(backbone, weights, readable, recipe kind) of a stored config, without failing on a damaged one."""
    try:
        cfg = config_from_json(text)
        kind = recipe_kind(cfg)
    except (*CONFIG_ERRORS, KeyError):
        return "unreadable", "unreadable", False, "custom"
    return cfg.model.backbone, cfg.model.weights, True, kind


# -----------------------------------------------------------------------------
# The store


class RunStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or paths.home())
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "runs.sqlite"
        if self.path.exists():  # a damaged file must be said in words, and never be written to
            try:
                with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as con:
                    verdict = con.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.DatabaseError as err:
                raise StoreDamaged(self.path, str(err)) from err
            if verdict != "ok":
                raise StoreDamaged(self.path, verdict)
        with closing(self._connect()) as con, con:
            con.executescript(_SCHEMA)
            columns = {row["name"] for row in con.execute("PRAGMA table_info(runs)")}
            if "owner" not in columns:
                con.execute("ALTER TABLE runs ADD COLUMN owner TEXT")  # stores from before leases
            if "session" not in columns:  # stores from before sessions: their runs are everyone's
                con.execute("ALTER TABLE runs ADD COLUMN session TEXT NOT NULL DEFAULT ''")

    @staticmethod
    def set_aside(root: Path | None = None) -> Path:
        """Move a damaged store (and its journal files) aside, unchanged, so a fresh one can start; returns
        where it went."""
        path = Path(root or paths.home()) / "runs.sqlite"
        aside = path.with_name(f"runs.damaged-{time.strftime('%Y%m%d-%H%M%S')}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
        return aside

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")  # readers never wait for the training thread's writes
        con.row_factory = sqlite3.Row
        return con

    def _write(self, sql: str, rows: list[tuple] | tuple = ()) -> None:
        with closing(self._connect()) as con, con:
            if isinstance(rows, list):
                con.executemany(sql, rows)
            else:
                con.execute(sql, rows)

    def _read(self, sql: str, args: tuple = ()) -> pd.DataFrame:
        """A table (for what pages show); a few rows a caller looks up are `_rows`, without pandas."""
        import pandas as pd

        with closing(self._connect()) as con:
            return pd.read_sql_query(sql, con, params=args)

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Rows by column name. Point reads use these: a trainer starts and a click is answered without importing
        pandas (half a second of CPU on a laptop, taken from the trainer's start)."""
        with closing(self._connect()) as con:
            return con.execute(sql, args).fetchall()

    # runs -------------------------------------------------------------------
    def create(self, cfg: RunConfig, group: str = "", session: str = "", params: int = 0, trainable: int = 0) -> str:
        """A new run; runs created together for one comparison share a `group`. `session`: the browser session
        that made it ("" for the command line and other tools: everyone's). A config no run can train with is
        refused before anything is stored (ConfigInvalid)."""
        validate_config(cfg)
        for attempt in range(ID_ATTEMPTS):  # thousands created in one second may draw an id twice: draw again
            run_id, now = self._new_id(), time.time()
            try:
                self._write("INSERT INTO runs (id, label, grp, created, updated, status, message, config, params, "
                            "trainable, session) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?)",
                            (run_id, cfg.label or run_id, group, now, now, RunStatus.CREATED, config_to_json(cfg),
                             params, trainable, session))
                return run_id
            except sqlite3.IntegrityError:
                if attempt == ID_ATTEMPTS - 1:
                    raise
        raise AssertionError("not reached")

    @staticmethod
    def _new_id() -> str:
        """A run id: when it was made (ids sort by time) and 24 random bits."""
        return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]

    def session(self, run_id: str) -> str:
        """The session that made a run ("" when none did, or the run is gone)."""
        return self.sessions([run_id])[run_id]

    def sessions(self, run_ids: list[str]) -> dict[str, str]:
        """The session that made each of these runs ("" when none did, or the run is gone), in one read."""
        rows = self._rows(f"SELECT id, session FROM runs WHERE id IN ({','.join('?' * len(run_ids))})",
                          tuple(run_ids)) if run_ids else []
        made = {row["id"]: row["session"] for row in rows}
        return {run_id: made.get(run_id, "") for run_id in run_ids}

    def group_of(self, run_id: str) -> str:
        """The group a run belongs to ("" when none, or the run is gone)."""
        rows = self._rows("SELECT grp FROM runs WHERE id = ?", (run_id,))
        return rows[0]["grp"] if rows else ""

    def group(self, group: str | None = None, prefix: str = "", session: str | None = None) -> list[str]:
        """Run ids of `group`, oldest first; of the newest group (whose name starts with `prefix`) when None,
        among the runs `session` may see (all when None)."""
        if group is None:
            newest = self._rows("SELECT grp FROM runs WHERE grp != '' AND grp LIKE ? ESCAPE '\\' "
                                f"AND {_VISIBLE} ORDER BY created DESC LIMIT 1",
                                (prefix.replace("_", "\\_") + "%", session, session))
            if not newest:
                return []
            group = newest[0]["grp"]
        return [row["id"] for row in self._rows("SELECT id FROM runs WHERE grp = ? ORDER BY created, rowid", (group,))]

    def set_status(self, run_id: str, status: str, message: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"Unknown status {status!r}; one of {list(STATUSES)}.")
        self._write("UPDATE runs SET status = ?, message = ?, updated = ? WHERE id = ?",
                    (status, message, time.time(), run_id))

    def lengthen(self, run_id: str, epochs: int) -> RunConfig:
        """Give a run `epochs` more in its budget (its stored config's `epochs`); a finished run can then train on
        (status paused). Returns the new config."""
        cfg = self.config(run_id)
        longer = dataclasses.replace(cfg, epochs=cfg.epochs + epochs)
        status = self.status(run_id)[0]
        self._write("UPDATE runs SET config = ?, status = ?, updated = ? WHERE id = ?",
                    (config_to_json(longer), RunStatus.PAUSED if status == RunStatus.FINISHED else status,
                     time.time(), run_id))
        return longer

    def set_params(self, run_id: str, params: int, trainable: int) -> None:
        self._write("UPDATE runs SET params = ?, trainable = ? WHERE id = ?", (params, trainable, run_id))

    def status(self, run_id: str) -> tuple[str, str]:
        rows = self._rows("SELECT status, message FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"No run {run_id!r} in {self.path}.")
        return rows[0]["status"], rows[0]["message"]

    def label(self, run_id: str) -> str:
        rows = self._rows("SELECT label FROM runs WHERE id = ?", (run_id,))
        return rows[0]["label"] if rows else run_id

    def config(self, run_id: str) -> RunConfig:
        rows = self._rows("SELECT config FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"No run {run_id!r} in {self.path}.")
        try:
            return config_from_json(rows[0]["config"])
        except CONFIG_ERRORS as err:
            raise ConfigUnreadable(f"The stored config of run {run_id} cannot be read ({err}); the run can be "
                                   "compared and deleted, not trained or analysed.") from err

    # ownership: which process trains a run --------------------------------
    def heartbeat(self, owner: str) -> None:
        """Say that process `owner` ("host:pid:nonce") is alive."""
        host, pid, _ = owner.split(":")
        self._write("INSERT INTO owners VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET heartbeat = excluded.heartbeat",
                    (owner, int(pid), host, time.time()))

    def live_owners(self) -> set[str]:
        """Owners whose heartbeat is recent and, on this host, whose process still exists."""
        here = socket.gethostname()
        rows = self._rows("SELECT id, pid, host FROM owners WHERE heartbeat > ?", (time.time() - LEASE_S,))
        return {r["id"] for r in rows if r["host"] != here or _pid_alive(int(r["pid"]))}

    def claim(self, run_id: str, owner: str) -> str | None:
        """Make `owner` the process training `run_id` and mark it running; returns the live owner holding
        it instead (and claims nothing) when another process trains it."""
        live = self.live_owners()
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")  # check and take in one step, across processes
            row = con.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
            holder = row["owner"] if row else None
            if holder and holder != owner and holder in live:
                con.rollback()
                return holder
            con.execute("UPDATE runs SET owner = ?, status = ?, message = '', updated = ? WHERE id = ?",
                        (owner, RunStatus.RUNNING, time.time(), run_id))
            con.commit()
        return None

    def release(self, run_id: str, owner: str) -> None:
        self._write("UPDATE runs SET owner = NULL WHERE id = ? AND owner = ?", (run_id, owner))

    def mark_interrupted(self) -> int:
        """Runs left 'running' by a process that is gone become 'interrupted'; returns how many. Runs that a
        live process (another app server, the CLI) is training are left alone."""
        live = sorted(self.live_owners())
        with closing(self._connect()) as con, con:
            cur = con.execute(
                "UPDATE runs SET status = ?, message = 'the process training it ended', owner = NULL "
                f"WHERE status = ? AND (owner IS NULL OR owner NOT IN ({','.join('?' * len(live))}))",
                (RunStatus.INTERRUPTED, RunStatus.RUNNING, *live))
            return cur.rowcount

    def runs(self, session: str | None = None) -> pd.DataFrame:
        """One row per run, newest first, with its latest and best validation figures; only the runs `session`
        may see (its own and everyone's) unless None."""
        import pandas as pd

        table = self._read(f"""
            SELECT r.id, r.label, r.status, r.message, r.params, r.trainable, r.created, r.grp AS "group", r.config,
                   r.session,
                   (SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id) AS steps,
                   (SELECT MAX(epoch) FROM metrics m WHERE m.run_id = r.id AND kind = 'epoch') AS epochs,
                   (SELECT MAX(seconds) FROM metrics m WHERE m.run_id = r.id) AS seconds,
                   (SELECT MAX(value) FROM metrics m WHERE m.run_id = r.id AND name = 'val_acc') AS best_val_acc,
                   (SELECT value FROM metrics m WHERE m.run_id = r.id AND name = 'val_acc'
                    ORDER BY step DESC LIMIT 1) AS val_acc,
                   (SELECT value FROM metrics m WHERE m.run_id = r.id AND name = 'val_loss'
                    ORDER BY step DESC LIMIT 1) AS val_loss
            FROM runs r WHERE {_VISIBLE} ORDER BY r.created DESC""", (session, session))
        models = [_model_fields(c) for c in table.pop("config")]
        table.insert(3, "backbone", [m[0] for m in models])
        table.insert(4, "weights", [m[1] for m in models])
        table["readable"] = pd.Series([m[2] for m in models], index=table.index, dtype=bool)  # False: damaged config
        table["recipe"] = [m[3] for m in models]  # its colour's key (recipe_kind)
        table["created"] = pd.to_datetime(table["created"], unit="s")
        return table

    def delete(self, run_id: str) -> None:
        with closing(self._connect()) as con, con:
            for table, key in (*_TABLES, ("runs", "id")):
                con.execute(f"DELETE FROM {table} WHERE {key} = ?", (run_id,))
        shutil.rmtree(self.root / "runs" / run_id, ignore_errors=True)

    # metrics and events -----------------------------------------------------
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
        with closing(self._connect()) as con, con:
            con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", metrics)
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", notes)
            con.executemany("INSERT INTO block_stats VALUES (?, ?, ?, ?, ?, ?, ?)", blocks)

    def step_log(self) -> pd.DataFrame:
        """(run_id, step) of every recorded training step, in the order the steps were written."""
        return self._read("SELECT run_id, step FROM metrics WHERE kind = 'step' AND name = 'loss' ORDER BY rowid")

    def forget_after(self, run_id: str, step: int) -> None:
        """Drop metrics and events past `step`: a run resumed from a checkpoint redoes them."""
        with closing(self._connect()) as con, con:
            for table, key in _TABLES:
                con.execute(f"DELETE FROM {table} WHERE {key} = ? AND step > ?", (run_id, step))
            # The redone rows may take the very row ids the dropped ones had: the update moves curves_version.
            con.execute("UPDATE runs SET updated = ? WHERE id = ?", (time.time(), run_id))

    def curves(self, run_ids: list[str] | None = None, kind: str = "epoch") -> pd.DataFrame:
        """Wide table, one row per run and step: run_id, label, step, epoch, seconds, then the metrics."""
        import pandas as pd

        where, args = "m.kind = ?", (kind,)
        if run_ids is not None:
            if not run_ids:
                return pd.DataFrame(columns=["run_id", "label", "step", "epoch", "seconds"])
            where += f" AND m.run_id IN ({','.join('?' * len(run_ids))})"
            args += tuple(run_ids)
        # Pivoted by SQLite (one column per metric name) rather than by pandas' pivot_table: the live view
        # reads this every time steps arrive, and read-then-pivot_table took three times as long.
        columns = ", ".join(f"AVG(CASE WHEN m.name = '{name}' THEN m.value END) AS {name}"
                            for name in sorted(METRICS[kind]))
        wide = self._read(f"""SELECT m.run_id, r.label, m.step, m.epoch, m.seconds, {columns}
                              FROM metrics m JOIN runs r ON r.id = m.run_id WHERE {where}
                              GROUP BY m.run_id, r.label, m.step, m.epoch, m.seconds""", args)
        if wide.empty:
            return pd.DataFrame(columns=["run_id", "label", "step", "epoch", "seconds"])
        wide["recipe"] = wide.run_id.map(self.recipe_kinds(list(dict.fromkeys(wide.run_id))))
        order = {r: i for i, r in enumerate(run_ids or sorted(set(wide.run_id)))}  # the caller's order
        return wide.sort_values(["run_id", "step"], key=lambda c: c.map(order) if c.name == "run_id" else c,
                                ignore_index=True)

    def recipe_kinds(self, run_ids: list[str]) -> dict[str, str]:
        """Each run's recipe kind (training.config.recipe_kind), "custom" where its config cannot be read."""
        marks = ",".join("?" * len(run_ids))
        with closing(self._connect()) as con:
            rows = con.execute(f"SELECT id, config FROM runs WHERE id IN ({marks})", run_ids).fetchall()
        return {row[0]: _model_fields(row[1])[3] for row in rows}

    def curves_version(self, run_ids: list[str]) -> tuple:
        """A cheap key that moves whenever `curves(run_ids)` could read differently: the runs' metric rows
        (how many, the newest) and the runs' own rows (labels, last update: `forget_after` sets it)."""
        marks = ",".join("?" * len(run_ids))
        with closing(self._connect()) as con:
            rows = con.execute(f"SELECT COUNT(*), MAX(rowid) FROM metrics WHERE run_id IN ({marks})", run_ids)
            runs = con.execute(f"SELECT id, label, updated FROM runs WHERE id IN ({marks}) ORDER BY id", run_ids)
            return tuple(rows.fetchone()), tuple(map(tuple, runs.fetchall()))

    def block_stats(self, run_ids: list[str]) -> pd.DataFrame:
        """Per run, epoch and block (in forward order, the head last): weight drift, BatchNorm drift and
        mean gradient norm (NaN where there is none: no BatchNorm, or a frozen block)."""
        marks = ",".join("?" * len(run_ids))
        return self._read(f"SELECT run_id, step, epoch, block, drift, bn_drift, grad_norm FROM block_stats "
                          f"WHERE run_id IN ({marks}) ORDER BY rowid", tuple(run_ids))

    def events(self, run_id: str) -> pd.DataFrame:
        table = self._read("SELECT step, epoch, kind, detail FROM events WHERE run_id = ? ORDER BY rowid", (run_id,))
        table["detail"] = [json.loads(d) for d in table["detail"]]
        return table

    # the lesson's predictions ---------------------------------------------------
    def record_prediction(self, session: str, step: str, choice: str) -> None:
        """A browser session's prediction for a lesson step (its first one stands: predictions come before runs)."""
        self._write("INSERT OR IGNORE INTO predictions (session, step, choice, at) VALUES (?, ?, ?, ?)",
                    (session, step, choice, time.time()))

    def add_teacher(self, session: str) -> None:
        """Mark a browser session as the lesson's teacher: every session sees its runs (only it changes them)."""
        self._write("INSERT OR IGNORE INTO teachers (session, at) VALUES (?, ?)", (session, time.time()))

    def teachers(self) -> set[str]:
        return {row["session"] for row in self._rows("SELECT session FROM teachers")}

    def prediction_tally(self, step: str) -> dict[str, int]:
        """How many sessions predicted each choice for a lesson step (who predicted what is not told)."""
        rows = self._rows("SELECT choice, COUNT(*) AS n FROM predictions WHERE step = ? GROUP BY choice", (step,))
        return {row["choice"]: int(row["n"]) for row in rows}

    def export_csv(self, run_ids: list[str] | None = None) -> str:
        """The epoch curves of the given runs (all when None) as CSV text."""
        buf = io.StringIO()
        self.curves(run_ids).to_csv(buf, index=False)
        return buf.getvalue()

    # checkpoints ------------------------------------------------------------
    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "runs" / run_id / "checkpoint.pt"

    def save_checkpoint(self, run_id: str, saved: dict, history: bool = True) -> Path:
        """The run's latest full checkpoint (written atomically: a failed write leaves the previous one),
        plus, with `history`, its weights at this step in the run's history."""
        path = self.checkpoint_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, saved)
        step = saved.get("counters", {}).get("step")
        if history and step is not None:
            self.keep_weights(run_id, step, saved["model"])
        return path

    def keep_weights(self, run_id: str, step: int, weights: dict) -> None:
        """Add the run's weights at `step` to its history (HISTORY of them: the first and the latest)."""
        history = self.checkpoint_path(run_id).parent / "history"
        history.mkdir(parents=True, exist_ok=True)
        _save(history / f"step-{step:08d}.pt", weights)
        for old in sorted(history.glob("step-*.pt"))[1:-HISTORY + 1]:
            old.unlink()

    def checkpoint_steps(self, run_id: str) -> list[int]:
        """Steps at which the run's weights were kept: its start, each epoch's end and each burst's end."""
        history = self.checkpoint_path(run_id).parent / "history"
        return sorted(int(p.stem.split("-")[1]) for p in history.glob("step-*.pt"))

    def weights_at(self, run_id: str, step: int) -> dict:
        """The weights a run kept at `step`; KeyError when it kept none, CheckpointUnreadable when they cannot be
        read."""
        path = self.checkpoint_path(run_id).parent / "history" / f"step-{step:08d}.pt"
        if not path.is_file():
            raise KeyError(f"Run {run_id} kept no weights at step {step}.")
        return _read_checkpoint(path)

    def load_checkpoint(self, run_id: str, mmap: bool = False) -> dict | None:
        """The run's latest checkpoint; None when it has none; CheckpointUnreadable when it cannot be read.
        `mmap`: map the tensors' storage instead of reading it (to check a file cheaply)."""
        path = self.checkpoint_path(run_id)
        return _read_checkpoint(path, mmap) if path.is_file() else None

    def recorded_steps(self, run_id: str) -> int:
        """The last training step the store holds for the run (0 for none)."""
        step = self._rows("SELECT MAX(step) AS step FROM metrics WHERE run_id = ?", (run_id,))[0]["step"]
        return int(step) if step is not None else 0
