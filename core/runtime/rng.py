"""torch's global RNG is one per process and shared by every thread: this module owns the one lock on it.

Dropout and stochastic depth can only draw from the global RNG, so each run keeps its own copy of that
state (`RunState.rng`) and swaps it in for each training step under `LOCK`. Everything else that draws
from it (building a seeded model, re-initialising layers for the sanity check) does so inside `seeded`,
under the same lock, and leaves the global state as it found it. No thread then rewinds or consumes
another's draws, so every run replays exactly however the threads interleave. The lock binds only the
code that takes it: every draw FreezeLab makes from the global RNG goes through this module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

LOCK = threading.RLock()  # re-entrant: a seeded build may run inside another seeded section


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from torch's global RNG seeded with `seed`, alone, and restore it afterwards."""
    import torch  # here, not above: the registry that imports this module stays torch-free

    with LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

