"""The trainer: the app's training in a process of its own beside the app's server (`python -m
core.execution.trainer_server`, started by the server's client: core/execution/trainer_client.py).

Why: in the server's process, the training thread shares one interpreter lock with Streamlit's script threads
and its event loop. Each redraw of the live view then stalls training (a thread that holds the lock a fifth
of the time slowed the demo by 12-18% on this machine; the same work in another process, not at all), and
stopping the server stopped every run. Here one `JobManager` lives in a separate process; the app talks to it
through a `TrainerClient`: both implement the one interface to training (core/execution/interface.py). Curves
never travel this way: the trainer writes them to the run store (SQLite, shared), and the pages read them there.

    app (server process)                              trainer (this module)
    TrainerClient.start(...)  -- localhost + key -->  JobManager.start(...)
    Metrics.curves(...)      <---- run store -----   Metrics.record(...)

A trainer serves one $FREEZELAB_HOME. It is found through `trainer.json` there (its pid and port, the code and
the settings it runs with) and `trainer.key` (a random key, readable by its owner only: multiprocessing checks it
with a challenge before anything is unpickled). It holds `trainer.lock` while it lives, so two servers starting
at once get one trainer. It is started detached: a restarted server finds it still training. It ends by itself
once nothing trains and no server has been connected for `IDLE_EXIT_S`. On SIGTERM, or when asked
(`shut_down`), it stops its runs after their current step and checkpoints them, as the server used to. Its
output goes to `trainer.log`.

What it trusts: a caller that proves it holds the key is a server of this home, run by this user; who asks
inside that server (`by`, a `Caller` the server makes from the browser session it serves) travels with each call
and is checked here, by the `JobManager` (ownership, and the operator's bounds on what a browser's run names), so
a run made through the trainer is judged by the trainer's own settings. Those must be the server's: `trainer.json`
names the code it runs (`code_version`) and the settings it judges by (`settings_fingerprint`), and a server that
finds other code or other settings there replaces it (its runs stop after their step, checkpointed; a burst
resumes them).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import pickle
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge
from pathlib import Path
from typing import TYPE_CHECKING

from core.execution.interface import SHUTDOWN_WAIT_S, TRAINING_CALLS
from core.runtime import paths
from core.runtime.settings import Settings, settings
from core.runtime.shares import Caller

if TYPE_CHECKING:  # imported where used: `python -m core.execution.trainer_server` takes its lock before torch
    from core.execution.jobs import JobManager

STARTED = time.monotonic()  # when this module was imported: in a trainer, its first moment (its log says since when)
IDLE_EXIT_S = 120.0  # a trainer with nothing to train and no server connected ends after this long
HANDSHAKE_S = 5.0  # how long either side waits for the other to prove it holds the key (it takes milliseconds)
ALREADY_SERVED = 3  # a trainer's exit code when another trainer serves its home already
# What a client may ask: the interface's training calls, and to end the trainer; anything else is refused.
CALLS = TRAINING_CALLS | {"shut_down"}


@functools.cache
def code_version() -> str:
    """A fingerprint of the code a trainer runs (every module of `core`): a server talks only to a trainer that
    runs the code it has."""
    core = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(core.rglob("*.py")):
        digest.update(path.relative_to(core).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def settings_fingerprint(value: Settings | None = None) -> str:
    """A fingerprint of the settings a trainer judges and builds runs by (what a browser may read, the model size
    limit, the operator's own networks; this process's by default): a server talks only to a trainer that holds
    its browsers to its own operator's bounds."""
    value = value or settings()
    text = json.dumps([[str(p) for p in value.share], value.max_model_m, value.model_files])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def address_file(home: Path) -> Path:
    return home / "trainer.json"


def key_file(home: Path) -> Path:
    return home / "trainer.key"


def log_file(home: Path) -> Path:
    return home / "trainer.log"


def serve(lock, threads: int | None = None, idle_exit_s: float = IDLE_EXIT_S, warm_up: bool = False) -> int:
    """Be the trainer of $FREEZELAB_HOME, holding its `lock`, until told to stop, sent SIGTERM, or idle and
    unconnected for `idle_exit_s`; returns the process's exit code. `warm_up`: build the demo comparison's runs
    at once, before any server asks (the Start page's button then trains at once, however soon it is clicked)."""
    from core.execution.jobs import JobManager
    from core.store.runs import RunStore
    from core.training.config import demo_comparison

    home = paths.home()
    manager = JobManager(RunStore(home), threads=threads)
    done = threading.Event()
    key = secrets.token_bytes(32)
    served = _Served(manager, done, key)
    if warm_up:
        served.prepare_ahead(demo_comparison())
    paths.atomic_write(key_file(home), lambda f: f.write(key), mode=0o600)  # only this user may talk to it
    listener = Listener(("127.0.0.1", 0))  # no key here: accept() never waits on a caller; _answer checks it
    threading.Thread(target=_accept, args=(listener, served), daemon=True, name="freezelab-trainer-accept").start()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    me = {"pid": os.getpid(), "port": listener.address[1], "code": code_version(),
          "settings": settings_fingerprint()}
    paths.atomic_write(address_file(home), lambda f: f.write(json.dumps(me).encode()))
    print(f"trainer {me['pid']} serves {home} on port {me['port']} ({time.monotonic() - STARTED:.1f} s after it "
          "started)", flush=True)
    try:
        while not done.wait(0.5):
            if served.idle_for() > idle_exit_s and not any(manager.is_busy(r) for r in manager.snapshots()):
                break
    finally:
        listener.close()  # no new callers; a server that calls now gets a new trainer once this one has gone
        manager.stop()  # each run stops after its step and writes its checkpoint...
        manager.wait(SHUTDOWN_WAIT_S)  # ...before the address goes: `shut_down` waits for that
        with contextlib.suppress(OSError, ValueError):
            if json.loads(address_file(home).read_text()) == me:
                address_file(home).unlink()
        lock.close()
    return 0


def hold_lock(home: Path):
    """`trainer.lock`, held for this process's life (the OS lets go when it dies); None when another
    process holds it. Without fcntl (Windows) nothing is held, and two trainers could start at once."""
    home.mkdir(parents=True, exist_ok=True)
    f = open(home / "trainer.lock", "a+b")  # noqa: SIM115 - held until the trainer ends
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def lock_held(home: Path) -> bool:
    """Whether a trainer of `home` is running or starting."""
    lock = hold_lock(home)
    if lock is None:
        return True
    lock.close()  # closing lets go of the lock
    return False


class _Served:
    """What the trainer's connections share: the manager, the stop flag, the threads building runs ahead,
    and how many servers are connected (and since when none has been)."""

    def __init__(self, manager: JobManager, done: threading.Event, key: bytes):
        self.manager, self.done, self.key = manager, done, key
        self._lock = threading.Lock()
        self._clients, self._since = 0, time.monotonic()
        self._ahead: list[threading.Thread] = []

    def joined(self) -> None:
        with self._lock:
            self._clients += 1

    def left(self) -> None:
        with self._lock:
            self._clients -= 1
            self._since = time.monotonic()

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self._clients else time.monotonic() - self._since

    def call(self, method: str, args: tuple, kwargs: dict):
        if method not in CALLS:
            raise ValueError(f"The trainer does not answer {method!r}.")
        if not isinstance(kwargs.get("by", Caller.command_line()), Caller):  # the JobManager judges who asks
            raise TypeError("A call's `by` says who asks: a core.runtime.shares.Caller.")
        if method == "ready":  # this trainer's pid, or None while it builds runs asked for ahead
            with self._lock:
                return None if any(t.is_alive() for t in self._ahead) else os.getpid()
        if method == "shut_down":
            self.done.set()
            return None
        if method == "prepare_ahead":  # seconds of work: the caller does not wait for it
            self.prepare_ahead(*args)
            return None
        result = getattr(self.manager, method)(*args, **kwargs)
        return None if method == "start" else result  # start's thread stays here

    def prepare_ahead(self, configs: list) -> None:
        """Build runs for `configs` ahead in a thread of their own (a run asked for meanwhile waits for it)."""
        def build() -> None:
            t0 = time.monotonic()
            self.manager.prepare_ahead(configs)
            now = time.monotonic()
            print(f"built {len(configs)} runs ahead in {now - t0:.1f} s ({now - STARTED:.1f} s after the trainer "
                  "started)", flush=True)

        thread = threading.Thread(target=build, daemon=True, name="freezelab-ahead")
        with self._lock:  # started under the lock: "ready" never sees it before it is alive
            self._ahead = [t for t in self._ahead if t.is_alive()] + [thread]
            thread.start()


def _accept(listener: Listener, served: _Served) -> None:
    while not served.done.is_set():
        try:
            conn = listener.accept()
        except OSError:  # the listener was closed: the trainer is ending
            return
        except Exception:  # a caller that hung up half-way
            continue
        threading.Thread(target=_answer, args=(conn, served), daemon=True, name="freezelab-trainer-client").start()


def _answer(conn: Connection, served: _Served) -> None:
    """Check the caller's key (within HANDSHAKE_S: a process that connects and never speaks holds only its own
    thread), then answer its calls, one at a time, until it hangs up."""
    try:
        within(HANDSHAKE_S, conn, lambda: (deliver_challenge(conn, served.key), answer_challenge(conn, served.key)))
    except Exception:  # a wrong key (AuthenticationError), silence, or no FreezeLab server at all
        conn.close()
        return
    served.joined()
    try:
        while True:
            try:
                method, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return
            try:
                conn.send(("ok", served.call(method, args, kwargs)))
            except Exception as err:  # the caller raises it again, as if the manager were in its own process
                conn.send(("error", err if _picklable(err) else RuntimeError(f"{type(err).__name__}: {err}")))
    finally:
        served.left()
        conn.close()


def _picklable(obj) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:
        return False
    return True


def within(seconds: float, conn: Connection, handshake: Callable[[], object]) -> None:
    """Run `handshake` on `conn`, hanging up the line if it takes longer than `seconds` (a blocked read then
    ends, and `handshake` raises)."""
    cut = threading.Timer(seconds, _hang_up, args=(conn,))
    cut.daemon = True
    cut.start()
    try:
        handshake()
    finally:
        cut.cancel()


def _hang_up(conn: Connection) -> None:
    """End a connection's socket for both sides, waking a thread blocked reading it (closing the descriptor
    alone would not)."""
    with contextlib.suppress(OSError):
        line = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            line.shutdown(socket.SHUT_RDWR)
        finally:
            line.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m core.execution.trainer_server`: the lock is taken before torch is imported, so a second trainer
    started by mistake ends at once (ALREADY_SERVED) instead of after seconds of importing."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.execution.trainer_server", description="The app's "
                                     "training process (the app starts it; see core/execution/trainer_server.py).")
    parser.add_argument("--threads", type=int, help="torch threads to train with (default: torch's)")
    parser.add_argument("--idle-exit", type=float, default=IDLE_EXIT_S,
                        help="end after this many seconds with nothing to train and no server connected")
    parser.add_argument("--warm-up", action="store_true", help="build the demo comparison's runs at once")
    args = parser.parse_args(argv)
    lock = hold_lock(paths.home())
    if lock is None:
        print(f"another trainer serves {paths.home()}", flush=True)
        return ALREADY_SERVED
    from core.models import own

    try:  # the operator's own networks ($FREEZELAB_MODEL_FILES), as the app that started it registered them
        own.register_from_environment()
    except own.ModelFileRefused as err:
        print(f"not offered: {err}", flush=True)  # the app says it too; the other backbones still train
    return serve(lock, args.threads, args.idle_exit, args.warm_up)


if __name__ == "__main__":
    sys.exit(main())
