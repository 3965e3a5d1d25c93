"""Training in a process of its own beside the app's server: the trainer.

Why: in the server's process, the training thread shares one interpreter lock with Streamlit's script threads
and its event loop. Each redraw of the live view then stalls training (a thread that holds the lock a fifth
of the time slowed the demo by 12-18% on this machine; the same work in another process, not at all), and
stopping the server stopped every run. Here one `JobManager` lives in a separate process; the app talks to it
through a `TrainerClient`: both implement the one interface to training (core/execution/interface.py). Curves
never travel this way: the trainer writes them to the run store (SQLite, shared), and the pages read them there.

    app (server process)                              trainer (python -m core trainer)
    TrainerClient.start(...)  -- localhost + key -->  JobManager.start(...)
    RunStore.curves(...)      <---- run store -----   RunStore.record(...)

A trainer serves one $FREEZELAB_HOME. It is found through `trainer.json` there (its pid and port) and
`trainer.key` (a random key, readable by its owner only: multiprocessing checks it with a challenge before
anything is unpickled). It holds `trainer.lock` while it lives, so two servers starting at once get one
trainer. It is started detached: a restarted server finds it still training. It ends by itself once nothing
trains and no server has been connected for `IDLE_EXIT_S`. On SIGTERM, or when asked (`shut_down`), it stops
its runs after their current step and checkpoints them, as the server used to. Its output goes to
`trainer.log`. Because it outlives servers, a server started from newer code (an upgrade, a `git pull`) could
find one running older code: `trainer.json` names the code it runs (`code_version`), and a server that finds
other code there replaces it (its runs stop after their step, checkpointed; a burst resumes them).

`FREEZELAB_TRAINER=thread` keeps training in the server's process instead (the in-process page tests do).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import json
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener, answer_challenge, deliver_challenge
from pathlib import Path
from typing import TYPE_CHECKING

from core.execution.interface import SHUTDOWN_WAIT_S, TRAINING_CALLS, Training
from core.runtime import paths

if TYPE_CHECKING:  # imported where used: `python -m core.execution.trainer` takes its lock before it imports torch
    from core.execution.jobs import JobManager
    from core.store.runs import RunStore

STARTED = time.monotonic()  # when this module was imported: in a trainer, its first moment (its log says since when)
MODE_ENV = "FREEZELAB_TRAINER"  # "process" (the app's default) or "thread"
IDLE_EXIT_S = 120.0  # a trainer with nothing to train and no server connected ends after this long
START_TIMEOUT_S = 120.0  # how long a server waits for a trainer to answer (it imports torch: seconds)
CALL_TIMEOUT_S = 60.0  # how long a page waits for one answer (they take milliseconds) before saying so
HANDSHAKE_S = 5.0  # how long either side waits for the other to prove it holds the key (it takes milliseconds)
# What a call meets when no trainer answers: no address yet or a half-written one, a dead port, a wrong key.
_NO_ANSWER = (OSError, ValueError, KeyError, EOFError, AuthenticationError)
ALREADY_SERVED = 3  # a trainer's exit code when another trainer serves its home already
# What a client may ask: the interface's training calls, and to end the trainer; anything else is refused.
CALLS = TRAINING_CALLS | {"shut_down"}


def in_own_process() -> bool:
    """Whether the app trains in a trainer process (the default) rather than in a thread of its server."""
    mode = os.environ.get(MODE_ENV, "process")
    if mode not in ("process", "thread"):
        raise ValueError(f"{MODE_ENV} must be 'process' or 'thread', not {mode!r}.")
    return mode == "process"


@functools.cache
def code_version() -> str:
    """A fingerprint of the code a trainer runs (every module of `core`): a server talks only to a trainer that
    runs the code it has."""
    core = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(core.rglob("*.py")):
        digest.update(path.relative_to(core).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def address_file(home: Path) -> Path:
    return home / "trainer.json"


def key_file(home: Path) -> Path:
    return home / "trainer.key"


def log_file(home: Path) -> Path:
    return home / "trainer.log"


# -----------------------------------------------------------------------------
# The trainer's side


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
    me = {"pid": os.getpid(), "port": listener.address[1], "code": code_version()}
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


def _hold_lock(home: Path):
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


def _lock_held(home: Path) -> bool:
    """Whether a trainer of `home` is running or starting."""
    lock = _hold_lock(home)
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
        _within(HANDSHAKE_S, conn, lambda: (deliver_challenge(conn, served.key), answer_challenge(conn, served.key)))
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


# -----------------------------------------------------------------------------
# The server's side


def _forwarded(call: str):
    """A client method that asks the trainer for `call`, with the interface's signature in words."""
    def forward(self, *args, **kwargs):
        return self._call(call, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = call
    forward.__doc__ = getattr(Training, call).__doc__
    return forward


def _forwarding(cls):
    """Give `cls` a forwarding method for each training call it does not define itself."""
    for call in TRAINING_CALLS:
        if call not in cls.__dict__:
            setattr(cls, call, _forwarded(call))
    abc.update_abstractmethods(cls)
    return cls


@_forwarding
class TrainerClient(Training):
    """The pages' job manager when training runs in the trainer: each training call goes to the trainer
    (started when none answers). Reads of stored models stay in the server (core/store/trained_models.py)."""

    in_this_process = False

    def __init__(self, store: RunStore, threads: int | None = None):
        super().__init__()
        self.store = store
        self.threads = threads
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def start(self, run_ids: list[str], steps: int | None = None, epochs: int | None = None,
              restart: bool = False, by: str | None = None) -> None:
        self._call("start", run_ids, steps=steps, epochs=epochs, restart=restart, by=by)  # the thread stays there

    def ready(self) -> bool:
        """Whether the warm-up has asked the trainer for its runs and the trainer answers, not building any
        ahead; never starts a trainer, never waits."""
        if self._warming_up():
            return False
        try:
            return bool(ask(self.store.root, "ready"))
        except OSError:
            return False

    def warm_up(self, configs: list) -> None:
        """Start the trainer (it imports torch meanwhile, seconds), then ask it to build `configs` ahead."""
        spawn(self.store.root, self.threads)
        super().warm_up(configs)

    def close(self) -> None:
        """Hang up (the trainer goes on training)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- the line -------------------------------------------------------------------
    def _call(self, method: str, *args, **kwargs):
        with self._lock:
            for attempt in (1, 2):  # a trainer that has ended (idle, or killed) is started again, once
                try:
                    if self._conn is None:
                        self._conn = connect(self.store.root, self.threads)
                    answer = _exchange(self._conn, method, args, kwargs, self.store.root)
                    break
                except TimeoutError:
                    self._conn.close()  # an answer may still come: this line is not used again
                    self._conn = None
                    raise
                except _NO_ANSWER:
                    self._conn = None
                    if attempt == 2:
                        raise
        return _unwrap(answer)


def spawn(home: Path, threads: int | None = None, warm_up: bool = False) -> subprocess.Popen | None:
    """Start a trainer for `home`, detached from this process (it outlives it), unless one is running or
    starting already (it holds the lock from its first moment; importing torch takes it seconds); returns at
    once. `warm_up`: it builds the demo comparison's runs as soon as it has imported torch."""
    if _lock_held(home):
        return None
    home.mkdir(parents=True, exist_ok=True)
    with open(log_file(home), "ab") as log:  # the child holds its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "core.execution.trainer", *(["--threads", str(threads)] if threads else []),
             *(["--warm-up"] if warm_up else [])],
            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "FREEZELAB_HOME": str(home)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def spawn_orphan(home: Path, threads: int | None = None, warm_up: bool = False) -> None:
    """Start a trainer as `spawn` does, but as no child of this process: for one that never waits for its
    children (`freezelab app` becomes the Streamlit server, which would keep an ended trainer as a zombie until
    it exits). A short-lived intermediate starts it and exits, so the system adopts it."""
    if not hasattr(os, "fork"):  # Windows has no zombies to avoid
        spawn(home, threads, warm_up)
        return
    pid = os.fork()
    if pid == 0:  # the intermediate: only starts the trainer (a forked copy of a threaded process does no more)
        code = 1
        try:
            spawn(home, threads, warm_up)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def connect(home: Path, threads: int | None = None) -> Connection:
    """A connection to the trainer of `home`; one is started when none is running or starting, and in place of
    one that runs other code than this process."""
    with contextlib.suppress(*_NO_ANSWER):
        if json.loads(address_file(home).read_text()).get("code") == code_version():
            return _dial(home)
        print(f"The trainer of {home} runs other code than this server: replacing it (its runs stop after their "
              "step, checkpointed; a burst resumes them).", file=sys.stderr, flush=True)
        shut_down(home)
    proc = spawn(home, threads)
    deadline, last = time.monotonic() + START_TIMEOUT_S, None
    while time.monotonic() < deadline:
        code = proc.poll() if proc is not None else None
        if code is not None and code != ALREADY_SERVED:
            raise RuntimeError(f"The trainer exited at start (code {code}); see {log_file(home)}.")
        try:
            conn = _dial(home)
        except _NO_ANSWER as err:
            last = err
        else:
            if proc is not None:  # ours: waited for in the background, or its end would leave a zombie here
                threading.Thread(target=proc.wait, name="trainer-reaper", daemon=True).start()
            return conn
        if (proc is None or code is not None) and not _lock_held(home):  # the one that was starting is gone
            proc = spawn(home, threads)
        time.sleep(0.1)
    if isinstance(last, NotATrainer):  # something answered all along, and it was no trainer of this home
        raise RuntimeError(str(last))
    raise RuntimeError(f"The trainer did not answer within {START_TIMEOUT_S:.0f} s; see {log_file(home)}.")


class NotATrainer(OSError):
    """What answers at the address in trainer.json is not this home's FreezeLab trainer."""


def _within(seconds: float, conn: Connection, handshake: Callable[[], object]) -> None:
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


def _dial(home: Path) -> Connection:
    where = json.loads(address_file(home).read_text())
    key = key_file(home).read_bytes()
    conn = Client(("127.0.0.1", where["port"]))  # the key is checked below, within a time bound
    try:
        _within(HANDSHAKE_S, conn, lambda: (answer_challenge(conn, key), deliver_challenge(conn, key)))
    except Exception as err:
        conn.close()
        raise NotATrainer(f"What answers on port {where['port']} (named in {address_file(home)}) is not the "
                          f"FreezeLab trainer of {home}: it did not prove it holds {key_file(home).name} within "
                          f"{HANDSHAKE_S:.0f} s.") from err
    return conn


def _exchange(conn: Connection, method: str, args: tuple, kwargs: dict, home: Path) -> tuple[str, object]:
    """Send one call and return the trainer's ("ok", value) or ("error", exception); TimeoutError when it
    does not answer within CALL_TIMEOUT_S."""
    conn.send((method, args, kwargs))
    if not conn.poll(CALL_TIMEOUT_S):
        raise TimeoutError(f"The trainer did not answer {method!r} within {CALL_TIMEOUT_S:.0f} s; see "
                           f"{log_file(home)}.")
    return conn.recv()


def _unwrap(answer: tuple[str, object]):
    """The call's value, or the manager's own error raised again here."""
    status, value = answer
    if status == "error":
        raise value
    return value


def ask(home: Path, method: str, *args, **kwargs):
    """One call to the trainer of `home` on a connection of its own; OSError when none answers."""
    try:
        with _dial(home) as conn:
            answer = _exchange(conn, method, args, kwargs, home)
    except _NO_ANSWER as err:
        raise OSError(f"No trainer answers for {home}.") from err
    return _unwrap(answer)


def shut_down(home: Path, timeout: float | None = None) -> None:
    """Stop the trainer of `home`, if one answers, and wait (at most `timeout`; by default as long as it waits
    for its runs) until its runs are checkpointed and it has gone (tests and the benchmark tidy up with this)."""
    try:
        ask(home, "shut_down")
    except OSError:
        return  # none answers
    deadline = time.monotonic() + (SHUTDOWN_WAIT_S + 10 if timeout is None else timeout)
    while address_file(home).exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """`python -m core.execution.trainer`: the lock is taken before torch is imported, so a second trainer started by
    mistake ends at once (ALREADY_SERVED) instead of after seconds of importing."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.execution.trainer", description="The app's training process "
                                     "(the app starts it; see core/execution/trainer.py).")
    parser.add_argument("--threads", type=int, help="torch threads to train with (default: torch's)")
    parser.add_argument("--idle-exit", type=float, default=IDLE_EXIT_S,
                        help="end after this many seconds with nothing to train and no server connected")
    parser.add_argument("--warm-up", action="store_true", help="build the demo comparison's runs at once")
    args = parser.parse_args(argv)
    lock = _hold_lock(paths.home())
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
