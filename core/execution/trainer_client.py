"""The app's side of the trainer (core/execution/trainer_server.py): `TrainerClient`, the one interface to
training (core/execution/interface.py) with each call forwarded to the trainer of this $FREEZELAB_HOME, and
finding, starting, asking and stopping that trainer.

`FREEZELAB_TRAINER=thread` keeps training in the server's process instead (the in-process page tests do):
`in_own_process` says which.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import TYPE_CHECKING

from core.execution.interface import SHUTDOWN_WAIT_S, TRAINING_CALLS, Training
from core.execution.trainer_server import (
    ALREADY_SERVED,
    HANDSHAKE_S,
    address_file,
    code_version,
    key_file,
    lock_held,
    log_file,
    settings_fingerprint,
    within,
)
from core.runtime import settings as operator
from core.runtime.settings import TRAINER_MODES, settings
from core.runtime.shares import COMMAND_LINE, Caller

if TYPE_CHECKING:
    from core.store.runs import RunStore

MODE_ENV = operator.TRAINER  # "process" (the app's default) or "thread"
START_TIMEOUT_S = 120.0  # how long a server waits for a trainer to answer (it imports torch: seconds)
CALL_TIMEOUT_S = 60.0  # how long a page waits for one answer (they take milliseconds) before saying so
# What a call meets when no trainer answers: no address yet or a half-written one, a dead port, a wrong key.
_NO_ANSWER = (OSError, ValueError, KeyError, EOFError, AuthenticationError)


def in_own_process() -> bool:
    """Whether the app trains in a trainer process (the default) rather than in a thread of its server."""
    mode = settings().trainer
    if mode not in TRAINER_MODES:
        raise ValueError(f"{MODE_ENV} must be 'process' or 'thread', not {mode!r}.")
    return mode == "process"


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
              restart: bool = False, *, by: Caller = COMMAND_LINE) -> None:
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


def spawn(home: Path, threads: int | None = None, warm_up: bool = False,
          env: Mapping[str, str] | None = None) -> subprocess.Popen | None:
    """Start a trainer for `home`, detached from this process (it outlives it), unless one is running or
    starting already (it holds the lock from its first moment; importing torch takes it seconds); returns at
    once. `warm_up`: it builds the demo comparison's runs as soon as it has imported torch. `env`: its
    environment (default: this process's, with its settings: `Settings.to_environ`)."""
    if lock_held(home):
        return None
    home.mkdir(parents=True, exist_ok=True)
    with open(log_file(home), "ab") as log:  # the child holds its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "core.execution.trainer_server", *(["--threads", str(threads)] if threads else []),
             *(["--warm-up"] if warm_up else [])],
            cwd=Path(__file__).resolve().parents[2],
            env={**({**os.environ, **settings().to_environ()} if env is None else env), operator.HOME: str(home)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def spawn_orphan(home: Path, threads: int | None = None, warm_up: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
    """Start a trainer as `spawn` does, but as no child of this process: for one that never waits for its
    children (`freezelab app` becomes the Streamlit server, which would keep an ended trainer as a zombie until
    it exits). A short-lived intermediate starts it and exits, so the system adopts it."""
    if not hasattr(os, "fork"):  # Windows has no zombies to avoid
        spawn(home, threads, warm_up, env)
        return
    pid = os.fork()
    if pid == 0:  # the intermediate: only starts the trainer (a forked copy of a threaded process does no more)
        code = 1
        try:
            spawn(home, threads, warm_up, env)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def connect(home: Path, threads: int | None = None) -> Connection:
    """A connection to the trainer of `home`; one is started when none is running or starting, and in place of
    one that runs other code than this process, or judges by other settings (`settings_fingerprint`)."""
    with contextlib.suppress(*_NO_ANSWER):
        found = json.loads(address_file(home).read_text())
        if found.get("code") == code_version() and found.get("settings") == settings_fingerprint():
            return _dial(home)
        print(f"The trainer of {home} runs other code, or other settings, than this server: replacing it (its runs "
              "stop after their step, checkpointed; a burst resumes them).", file=sys.stderr, flush=True)
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
        if (proc is None or code is not None) and not lock_held(home):  # the one that was starting is gone
            proc = spawn(home, threads)
        time.sleep(0.1)
    if isinstance(last, NotATrainer):  # something answered all along, and it was no trainer of this home
        raise RuntimeError(str(last))
    raise RuntimeError(f"The trainer did not answer within {START_TIMEOUT_S:.0f} s; see {log_file(home)}.")


class NotATrainer(OSError):
    """What answers at the address in trainer.json is not this home's FreezeLab trainer."""


def _dial(home: Path) -> Connection:
    where = json.loads(address_file(home).read_text())
    key = key_file(home).read_bytes()
    conn = Client(("127.0.0.1", where["port"]))  # the key is checked below, within a time bound
    try:
        within(HANDSHAKE_S, conn, lambda: (answer_challenge(conn, key), deliver_challenge(conn, key)))
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


