"""The run store: one SQLite file, `$FREEZELAB_HOME/runs.sqlite` (core/store/database.py), and a folder of files
beside it, `$FREEZELAB_HOME/runs/`. `RunStore` is what callers open; it keeps the runs table itself (each run's
config, label, group, session, status) and holds a part for each other thing kept, each the one writer of its
tables or files:

    store.metrics      what runs recorded while they trained: curves, events, block statistics (metrics.py)
    store.checkpoints  each run's latest checkpoint and its weights' history, on disk (checkpoints.py)
    store.leases       which live process trains each run (leases.py)
    store.classroom    the lesson's predictions and teachers, by browser session (classroom.py)

Each call opens its own connection, so worker threads and the Streamlit script thread can share a store.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from core.runtime import paths
from core.store import classroom, leases, metrics
from core.store.checkpoints import (
    Checkpoints,
)
from core.store.classroom import Classroom
from core.store.database import (
    Database,
    Tables,
)
from core.store.leases import (
    Leases,
)
from core.store.metrics import (
    Metrics,
)
from core.store.status import (
    STATUSES,
    RunProblem,
    RunStatus,
)
from core.training.config import ConfigInvalid, RunConfig, config_from_plain, recipe_kind, validate_config

if TYPE_CHECKING:  # imported where tables are made: a server's first page draws before it needs pandas
    import pandas as pd


FILE = "runs.sqlite"  # in the store's root
TABLES = Tables("""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, label TEXT, grp TEXT, created REAL, updated REAL, status TEXT, message TEXT,
    config TEXT, params INTEGER, trainable INTEGER
);
""", added=(("runs", "session", "TEXT NOT NULL DEFAULT ''"),  # stores from before sessions: their runs are everyone's
            ("runs", "problem", "TEXT NOT NULL DEFAULT ''")))  # a RunProblem
ID_ATTEMPTS = 8  # ids drawn before creating a run gives up (two made in one second share one at odds of 1 in 16M)


# -----------------------------------------------------------------------------
# Configs <-> JSON


def config_to_json(cfg: RunConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


class ConfigUnreadable(ValueError):
    """A stored run config that is not valid JSON or not a RunConfig; the message names the run."""


CONFIG_ERRORS = (json.JSONDecodeError, TypeError, KeyError, ValueError, StopIteration)  # a damaged config


def config_from_json(text: str) -> RunConfig:
    """A run config from JSON, checked whole (core/training/config.py: types, unknown keys, ranges)."""
    try:
        plain = json.loads(text)
    except RecursionError as err:  # JSON nested thousands deep: no config is
        raise ConfigInvalid("the JSON is nested far deeper than any run config") from err
    return config_from_plain(plain)


def run_names(table: pd.DataFrame) -> dict[str, str]:
    """Display name of each run in `table` (columns run_id, label): its label, followed by the end of its
    id where another run in the table has the same label (two "Feature extraction" runs stay apart)."""
    runs = table[["run_id", "label"]].drop_duplicates("run_id")
    repeated = set(runs.label[runs.label.duplicated(keep=False)])
    return {r.run_id: f"{r.label} · {r.run_id[-6:]}" if r.label in repeated else r.label for r in runs.itertuples()}


def _model_fields(text: str) -> tuple[str, str, bool, str]:
    """(backbone, weights, readable, recipe kind) of a stored config, without failing on a damaged one."""
    try:
        cfg = config_from_json(text)
        kind = recipe_kind(cfg)
    except (*CONFIG_ERRORS, KeyError):
        return "unreadable", "unreadable", False, "custom"
    return cfg.model.backbone, cfg.model.weights, True, kind


def _marks(items: list) -> str:
    return ",".join("?" * len(items))


# -----------------------------------------------------------------------------
# The store


class RunStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or paths.home())
        self.root.mkdir(parents=True, exist_ok=True)
        # The runs table first: the parts' rows hang off its runs, and the leases add a column to it.
        self.db = Database(self.root / FILE, (TABLES, metrics.TABLES, leases.TABLES, classroom.TABLES))
        self.path = self.db.path
        self.metrics = Metrics(self.db, self)
        self.checkpoints = Checkpoints(self.root / "runs")
        self.leases = Leases(self.db)
        self.classroom = Classroom(self.db)

    @staticmethod
    def set_aside(root: Path | None = None) -> Path:
        """Move a damaged store's file (and its journal files) aside, unchanged, so a fresh one can start; returns
        where it went."""
        return Database.set_aside(Path(root or paths.home()) / FILE)

    # making and removing runs -------------------------------------------------
    def create(self, cfg: RunConfig, group: str = "", session: str = "", params: int = 0, trainable: int = 0) -> str:
        """A new run; runs created together for one comparison share a `group`. `session`: the browser session
        that made it ("" for the command line and other tools: everyone's). A config no run can train with is
        refused before anything is stored (ConfigInvalid)."""
        validate_config(cfg)
        for attempt in range(ID_ATTEMPTS):  # thousands created in one second may draw an id twice: draw again
            run_id, now = self._new_id(), time.time()
            try:
                self.db.write("INSERT INTO runs (id, label, grp, created, updated, status, message, config, params, "
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

    def delete(self, run_id: str) -> None:
        """Remove a run from every part: its rows, at once, then its files."""
        with self.db.transaction() as con:
            self.metrics.delete(run_id, con)
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self.checkpoints.delete(run_id)

    # what a run is ----------------------------------------------------------
    def config(self, run_id: str) -> RunConfig:
        rows = self.db.rows("SELECT config FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"No run {run_id!r} in {self.path}.")
        try:
            return config_from_json(rows[0]["config"])
        except CONFIG_ERRORS as err:
            raise ConfigUnreadable(f"The stored config of run {run_id} cannot be read ({err}); the run can be "
                                   "compared and deleted, not trained or analysed.") from err

    def label(self, run_id: str) -> str:
        rows = self.db.rows("SELECT label FROM runs WHERE id = ?", (run_id,))
        return rows[0]["label"] if rows else run_id

    def labels(self, run_ids: list[str]) -> dict[str, str]:
        """The label of each of these runs the store holds, in one read."""
        rows = self.db.rows(f"SELECT id, label FROM runs WHERE id IN ({_marks(run_ids)})", tuple(run_ids))
        return {row["id"]: row["label"] for row in rows}

    def recipe_kinds(self, run_ids: list[str]) -> dict[str, str]:
        """Each run's recipe kind (training.config.recipe_kind), "custom" where its config cannot be read."""
        rows = self.db.rows(f"SELECT id, config FROM runs WHERE id IN ({_marks(run_ids)})", tuple(run_ids))
        return {row["id"]: _model_fields(row["config"])[3] for row in rows}

    def session(self, run_id: str) -> str:
        """The session that made a run ("" when none did, or the run is gone)."""
        return self.sessions([run_id])[run_id]

    def sessions(self, run_ids: list[str]) -> dict[str, str]:
        """The session that made each of these runs ("" when none did, or the run is gone), in one read."""
        rows = self.db.rows(f"SELECT id, session FROM runs WHERE id IN ({_marks(run_ids)})",
                            tuple(run_ids)) if run_ids else []
        made = {row["id"]: row["session"] for row in rows}
        return {run_id: made.get(run_id, "") for run_id in run_ids}

    def _visible(self, session: str | None) -> tuple[str, tuple]:
        """(SQL condition, its arguments) on the runs `session` may see: its own, everyone's (the command line's)
        and the teacher's (core/lesson.py); all when None."""
        if session is None:
            return "1", ()
        seen = sorted({"", session, *self.classroom.teachers()})
        return f"session IN ({_marks(seen)})", tuple(seen)

    def group_of(self, run_id: str) -> str:
        """The group a run belongs to ("" when none, or the run is gone)."""
        rows = self.db.rows("SELECT grp FROM runs WHERE id = ?", (run_id,))
        return rows[0]["grp"] if rows else ""

    def group(self, group: str | None = None, prefix: str = "", session: str | None = None) -> list[str]:
        """Run ids of `group`, oldest first; of the newest group (whose name starts with `prefix`) when None,
        among the runs `session` may see (all when None)."""
        if group is None:
            visible, args = self._visible(session)
            newest = self.db.rows("SELECT grp FROM runs WHERE grp != '' AND grp LIKE ? ESCAPE '\\' "
                                  f"AND {visible} ORDER BY created DESC LIMIT 1",
                                  (prefix.replace("_", "\\_") + "%", *args))
            if not newest:
                return []
            group = newest[0]["grp"]
        return [row["id"] for row in self.db.rows("SELECT id FROM runs WHERE grp = ? ORDER BY created, rowid",
                                                  (group,))]

    # where a run stands -----------------------------------------------------
    def status(self, run_id: str) -> tuple[str, str]:
        """(status, message) of the run."""
        rows = self.db.rows("SELECT status, message FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"No run {run_id!r} in {self.path}.")
        return rows[0]["status"], rows[0]["message"]

    def problem(self, run_id: str) -> RunProblem:
        """What stopped the run, where something can be done about it (RunProblem.NONE otherwise, or when the
        run is gone)."""
        rows = self.db.rows("SELECT problem FROM runs WHERE id = ?", (run_id,))
        return RunProblem(rows[0]["problem"]) if rows else RunProblem.NONE

    def set_status(self, run_id: str, status: str, message: str = "", problem: RunProblem = RunProblem.NONE) -> None:
        """Give the run a status, with what there is to say of it; `problem`: what stopped it, by kind (a new
        status clears the one before)."""
        if status not in STATUSES:
            raise ValueError(f"Unknown status {status!r}; one of {list(STATUSES)}.")
        self.db.write("UPDATE runs SET status = ?, message = ?, problem = ?, updated = ? WHERE id = ?",
                      (status, message, RunProblem(problem), time.time(), run_id))

    def lengthen(self, run_id: str, epochs: int) -> RunConfig:
        """Give a run `epochs` more in its budget (its stored config's `epochs`); a finished run can then train on
        (status paused). Returns the new config."""
        cfg = self.config(run_id)
        longer = dataclasses.replace(cfg, epochs=cfg.epochs + epochs)
        status = self.status(run_id)[0]
        self.db.write("UPDATE runs SET config = ?, status = ?, updated = ? WHERE id = ?",
                      (config_to_json(longer), RunStatus.PAUSED if status == RunStatus.FINISHED else status,
                       time.time(), run_id))
        return longer

    def set_params(self, run_id: str, params: int, trainable: int) -> None:
        self.db.write("UPDATE runs SET params = ?, trainable = ? WHERE id = ?", (params, trainable, run_id))

    def touch(self, run_id: str) -> None:
        """Mark the run changed (its `updated`) though its own row did not: its recorded past was cut back."""
        self.db.write("UPDATE runs SET updated = ? WHERE id = ?", (time.time(), run_id))

    def versions(self, run_ids: list[str]) -> tuple:
        """(id, label, last change) of each of these runs, by id: moves whenever one of their rows changes."""
        rows = self.db.rows(f"SELECT id, label, updated FROM runs WHERE id IN ({_marks(run_ids)}) ORDER BY id",
                            tuple(run_ids))
        return tuple(map(tuple, rows))

    # every run --------------------------------------------------------------
    def runs(self, session: str | None = None) -> pd.DataFrame:
        """One row per run, newest first, with its latest and best validation figures; only the runs `session`
        may see (its own and everyone's) unless None."""
        import pandas as pd

        visible, args = self._visible(session)
        table = self.db.read(f"""
            SELECT r.id, r.label, r.status, r.message, r.params, r.trainable, r.created, r.grp AS "group", r.config,
                   r.session, {metrics.FIGURES}
            FROM runs r WHERE {visible} ORDER BY r.created DESC""", args)
        models = [_model_fields(c) for c in table.pop("config")]
        table.insert(3, "backbone", [m[0] for m in models])
        table.insert(4, "weights", [m[1] for m in models])
        table["readable"] = pd.Series([m[2] for m in models], index=table.index, dtype=bool)  # False: damaged config
        table["recipe"] = [m[3] for m in models]  # its colour's key (recipe_kind)
        table["created"] = pd.to_datetime(table["created"], unit="s")
        return table

