"""The run store's one SQLite file, `$FREEZELAB_HOME/runs.sqlite`: opening it (a damaged file is named, never
written to), its tables (each part of the store declares its own: `Tables`), and the three ways its parts reach it.

Each call opens its own connection, so worker threads and the Streamlit script thread can share a store; the
file is in WAL mode, so readers never wait for the training thread's writes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where tables are made: a server's first page draws before it needs pandas
    import pandas as pd


class StoreDamaged(RuntimeError):
    """A run store that SQLite cannot read; the file is left as it is."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"The run store {path} is damaged ({reason}). It was left as it is; start a fresh store "
                         f"beside it to go on (the damaged file is kept, renamed).")
        self.path = path


@dataclass(frozen=True)
class Tables:
    """What one part of the store keeps in the file: `create`, its CREATE ... IF NOT EXISTS statements, and
    `added`, the columns (table, column, declaration) it added to tables after stores were made without them:
    an older file gains them when it is opened."""
    create: str
    added: tuple[tuple[str, str, str], ...] = ()


class Database:
    def __init__(self, path: Path, tables: Iterable[Tables]):
        self.path = path
        if path.exists():  # a damaged file must be said in words, and never be written to
            try:
                with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                    verdict = con.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.DatabaseError as err:
                raise StoreDamaged(path, str(err)) from err
            if verdict != "ok":
                raise StoreDamaged(path, verdict)
        with self.transaction() as con:
            for part in tables:  # in order: a part may add columns to a table an earlier one made
                con.executescript(part.create)
                for table, column, declaration in part.added:
                    if column not in {row["name"] for row in con.execute(f"PRAGMA table_info({table})")}:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    @staticmethod
    def set_aside(path: Path) -> Path:
        """Move a damaged file (and its journal files) aside, unchanged, so a fresh one can start; returns where
        it went."""
        aside = path.with_name(f"{path.stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
        return aside

    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")  # readers never wait for the training thread's writes
        con.row_factory = sqlite3.Row
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection whose statements are committed together when the block ends (rolled back on an error)."""
        with closing(self.connect()) as con, con:
            yield con

    def write(self, sql: str, rows: list[tuple] | tuple = ()) -> None:
        """One statement, or the same statement for each of a list of rows, in one transaction."""
        with self.transaction() as con:
            if isinstance(rows, list):
                con.executemany(sql, rows)
            else:
                con.execute(sql, rows)

    def read(self, sql: str, args: tuple = ()) -> pd.DataFrame:
        """A table (for what pages show); a few rows a caller looks up are `rows`, without pandas."""
        import pandas as pd

        with closing(self.connect()) as con:
            return pd.read_sql_query(sql, con, params=args)

    def rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Rows by column name. Point reads use these: a trainer starts and a click is answered without importing
        pandas (half a second of CPU on a laptop, taken from the trainer's start)."""
        with closing(self.connect()) as con:
            return con.execute(sql, args).fetchall()
