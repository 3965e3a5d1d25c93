"""The run store's parts (core/store/): each keeps its own tables or files, a run's deletion reaches them all, an
older store's file gains what later parts added, and the classroom's predictions are fixed when taken."""

import sqlite3

from core.store.runs import RunStore, config_to_json
from core.store.status import RunProblem, RunStatus
from core.training.config import RunConfig
from core.training.events import BlockStats, BurstEnd, EpochEnd, StepEnd


def _trained(store: RunStore, label: str) -> str:
    """A run with a row in every table and file a run has: metrics, events, block statistics, a checkpoint and
    a weights' history, and a lease."""
    run_id = store.create(RunConfig(label=label))
    store.metrics.record(run_id, [StepEnd(1, 0.5, 2.0, 1e-3, 100.0, 0.1),
                                  EpochEnd(2, 1, 1.7, 0.4, 1.6, 0.45, 1e-3, 105.0, 0.2),
                                  BlockStats(2, 1, ("stem", "head"), (0.1, 0.2), (0.0, float("nan")), (1.0, 2.0)),
                                  BurstEnd(2, 1, "budget")])
    store.checkpoints.save(run_id, {"model": {"w": 1}, "counters": {"step": 2}})
    store.leases.claim(run_id, f"host:1:{label}")
    return run_id


def _rows_of(store: RunStore, run_id: str) -> dict[str, int]:
    """Rows naming `run_id` in each table of the file that names runs (by `run_id`, or the runs table by `id`),
    read from the file itself: a table a later part adds is counted without this test knowing of it."""
    with sqlite3.connect(store.path) as con:
        tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {}
        for table in tables:
            columns = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
            key = "id" if table == "runs" else "run_id" if "run_id" in columns else None
            if key:
                counts[table] = con.execute(f"SELECT COUNT(*) FROM {table} WHERE {key} = ?", (run_id,)).fetchone()[0]
    return counts


def test_deleting_a_run_empties_every_part_and_leaves_the_other_runs_whole(tmp_path):
    store = RunStore(tmp_path)
    keep, drop = _trained(store, "keep"), _trained(store, "drop")
    assert all(_rows_of(store, drop).values()) and set(_rows_of(store, drop)) >= {"runs", "metrics", "events",
                                                                                  "block_stats"}
    folder = store.checkpoints.path(drop).parent
    assert store.checkpoints.steps(drop) == [2] and folder.is_dir()

    store.delete(drop)
    assert not any(_rows_of(store, drop).values())  # no table keeps a row of it
    assert not folder.exists() and store.checkpoints.load(drop) is None and store.checkpoints.steps(drop) == []
    assert store.metrics.recorded_steps(drop) == 0 and store.metrics.events(drop).empty
    assert store.metrics.curves([drop]).empty and store.metrics.block_stats([drop]).empty
    # The other run keeps all it had.
    assert all(_rows_of(store, keep).values()) and store.checkpoints.load(keep)["counters"]["step"] == 2
    assert store.metrics.curves([keep]).val_acc.tolist() == [0.45] and len(store.metrics.block_stats([keep])) == 2


def test_a_prediction_is_written_once_and_the_tally_counts_each_session_once(tmp_path):
    classroom = RunStore(tmp_path).classroom
    assert classroom.record_prediction("ann", "race", "feature extraction") == "feature extraction"
    # Asked again (a reload, a second tab, a changed mind): the first prediction stands, and is what is answered.
    assert classroom.record_prediction("ann", "race", "fine-tune") == "feature extraction"
    assert classroom.record_prediction("bob", "race", "fine-tune") == "fine-tune"
    assert classroom.record_prediction("ann", "depth", "2 blocks") == "2 blocks"
    assert classroom.predictions("ann") == {"race": "feature extraction", "depth": "2 blocks"}
    assert classroom.predictions("carl") == {}
    assert classroom.prediction_tally("race") == {"feature extraction": 1, "fine-tune": 1}
    assert RunStore(tmp_path).classroom.predictions("ann")["race"] == "feature extraction"  # kept in the file


def test_the_classroom_keeps_teachers_whose_runs_every_session_sees(tmp_path):
    store = RunStore(tmp_path)
    mine, theirs, teachers, everyone = (store.create(RunConfig(label=s or "cli"), session=s)
                                        for s in ("ann", "bob", "teacher", ""))
    assert set(store.runs(session="ann").id) == {mine, everyone}
    store.classroom.add_teacher("teacher")
    assert store.classroom.teachers() == {"teacher"}
    assert set(store.runs(session="ann").id) == {mine, teachers, everyone}  # the teacher's runs, not bob's
    assert set(store.runs().id) == {mine, theirs, teachers, everyone}


def test_a_problem_is_kept_by_kind_and_a_new_status_or_a_lease_clears_it(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(RunConfig())
    store.set_status(run_id, RunStatus.STOPPED, "lost", RunProblem.CHECKPOINT_MISSING)
    assert store.problem(run_id) is RunProblem.CHECKPOINT_MISSING and store.status(run_id) == ("stopped", "lost")
    assert RunStore(tmp_path).problem(run_id) is RunProblem.CHECKPOINT_MISSING  # in the file, not in memory
    assert store.leases.claim(run_id, "host:1:a") is None  # it trains again: nothing stops it now
    assert store.problem(run_id) is RunProblem.NONE and store.status(run_id)[0] == "running"
    store.set_status(run_id, RunStatus.STOPPED, "lost", RunProblem.CHECKPOINT_MISSING)
    store.set_status(run_id, RunStatus.PAUSED)
    assert store.problem(run_id) is RunProblem.NONE and store.problem("no-such-run") is RunProblem.NONE


def test_a_store_from_before_sessions_leases_and_problems_opens_with_its_runs_everyones(tmp_path):
    """A file written by an older FreezeLab: the runs table without the columns parts added since."""
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:
        con.executescript("""
            CREATE TABLE runs (id TEXT PRIMARY KEY, label TEXT, grp TEXT, created REAL, updated REAL, status TEXT,
                               message TEXT, config TEXT, params INTEGER, trainable INTEGER);
            CREATE TABLE metrics (run_id TEXT, kind TEXT, step INTEGER, epoch REAL, seconds REAL, name TEXT,
                                  value REAL);""")
        con.execute("INSERT INTO runs VALUES ('old', 'an old run', '', 1, 1, 'paused', '', ?, 0, 0)",
                    (config_to_json(RunConfig(label="an old run")),))
        con.execute("INSERT INTO metrics VALUES ('old', 'epoch', 5, 1, 2.0, 'val_acc', 0.5)")
    store = RunStore(tmp_path)
    row = store.runs(session="anyone").set_index("id").loc["old"]
    assert row.session == "" and row.val_acc == 0.5 and row.steps == 5  # everyone's, its figures read
    assert store.problem("old") is RunProblem.NONE
    assert store.leases.claim("old", "host:1:a") is None and store.status("old")[0] == "running"
    assert store.leases.mark_interrupted() == 1 and store.status("old")[0] == "interrupted"
