"""Which process trains each run: processes that train (a job manager, a Ray sweep's driver) say every few
seconds that they are alive, and a run is held by at most one live process at a time. The run store's part
`store.leases`; it alone writes the `owners` table and the runs table's `owner` column, and with them the two
statuses a lease decides (running when taken, interrupted when its holder is gone), in the same statement.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import closing

from core.store.database import Database, Tables
from core.store.status import RunStatus

LEASE_S = 15.0  # an owner whose heartbeat is older than this is gone (sooner, when its pid is dead here)
TABLES = Tables("CREATE TABLE IF NOT EXISTS owners (id TEXT PRIMARY KEY, pid INTEGER, host TEXT, heartbeat REAL);",
                added=(("runs", "owner", "TEXT"),))  # the process training the run ("host:pid:nonce"), or NULL


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class Leases:
    def __init__(self, db: Database):
        self.db = db

    def heartbeat(self, owner: str) -> None:
        """Say that process `owner` ("host:pid:nonce") is alive."""
        host, pid, _ = owner.split(":")
        self.db.write("INSERT INTO owners VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET heartbeat = excluded.heartbeat",
                      (owner, int(pid), host, time.time()))

    def live_owners(self) -> set[str]:
        """Owners whose heartbeat is recent and, on this host, whose process still exists."""
        here = socket.gethostname()
        rows = self.db.rows("SELECT id, pid, host FROM owners WHERE heartbeat > ?", (time.time() - LEASE_S,))
        return {r["id"] for r in rows if r["host"] != here or _pid_alive(int(r["pid"]))}

    def claim(self, run_id: str, owner: str) -> str | None:
        """Make `owner` the process training `run_id` and mark it running; returns the live owner holding
        it instead (and claims nothing) when another process trains it."""
        live = self.live_owners()
        with closing(self.db.connect()) as con:
            con.execute("BEGIN IMMEDIATE")  # check and take in one step, across processes
            row = con.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
            holder = row["owner"] if row else None
            if holder and holder != owner and holder in live:
                con.rollback()
                return holder
            con.execute("UPDATE runs SET owner = ?, status = ?, message = '', problem = '', updated = ? "
                        "WHERE id = ?", (owner, RunStatus.RUNNING, time.time(), run_id))
            con.commit()
        return None

    def release(self, run_id: str, owner: str) -> None:
        self.db.write("UPDATE runs SET owner = NULL WHERE id = ? AND owner = ?", (run_id, owner))

    def mark_interrupted(self) -> int:
        """Runs left 'running' by a process that is gone become 'interrupted'; returns how many. Runs that a
        live process (another app server, the CLI) is training are left alone."""
        live = sorted(self.live_owners())
        with self.db.transaction() as con:
            cur = con.execute(
                "UPDATE runs SET status = ?, message = 'the process training it ended', problem = '', owner = NULL "
                f"WHERE status = ? AND (owner IS NULL OR owner NOT IN ({','.join('?' * len(live))}))",
                (RunStatus.INTERRUPTED, RunStatus.RUNNING, *live))
            return cur.rowcount
