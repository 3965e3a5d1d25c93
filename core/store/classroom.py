"""The lesson's classroom, as the server keeps it: each browser's predictions for the lesson's steps, and which
browsers are teachers. Browsers are named by their session id (ui/session.py), which outlives reloads. The run
store's part `store.classroom`; it alone writes these tables.
"""

from __future__ import annotations

import time

from core.store.database import Database, Tables

TABLES = Tables("""
CREATE TABLE IF NOT EXISTS predictions (session TEXT, step TEXT, choice TEXT, at REAL, PRIMARY KEY (session, step));
CREATE TABLE IF NOT EXISTS teachers (session TEXT PRIMARY KEY, at REAL);
""")


class Classroom:
    def __init__(self, db: Database):
        self.db = db

    def record_prediction(self, session: str, step: str, choice: str) -> str:
        """A browser session's prediction for a lesson step; its first one stands (predictions come before runs,
        and a reload must not change one). Returns the prediction that stands."""
        with self.db.transaction() as con:
            con.execute("INSERT OR IGNORE INTO predictions (session, step, choice, at) VALUES (?, ?, ?, ?)",
                        (session, step, choice, time.time()))
            return con.execute("SELECT choice FROM predictions WHERE session = ? AND step = ?",
                               (session, step)).fetchone()["choice"]

    def predictions(self, session: str) -> dict[str, str]:
        """The predictions a browser session has made: its choice by lesson step."""
        rows = self.db.rows("SELECT step, choice FROM predictions WHERE session = ? ORDER BY at", (session,))
        return {row["step"]: row["choice"] for row in rows}

    def prediction_tally(self, step: str) -> dict[str, int]:
        """How many sessions predicted each choice for a lesson step (who predicted what is not told)."""
        rows = self.db.rows("SELECT choice, COUNT(*) AS n FROM predictions WHERE step = ? GROUP BY choice", (step,))
        return {row["choice"]: int(row["n"]) for row in rows}

    def add_teacher(self, session: str) -> None:
        """Mark a browser session as the lesson's teacher: every session sees its runs (only it changes them)."""
        self.db.write("INSERT OR IGNORE INTO teachers (session, at) VALUES (?, ?)", (session, time.time()))

    def teachers(self) -> set[str]:
        return {row["session"] for row in self.db.rows("SELECT session FROM teachers")}
