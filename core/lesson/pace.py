"""While a step's runs train: when they will end, in words."""

from __future__ import annotations

import math


def pace_words(done: float, total: float, elapsed_s: float, others: int) -> str:
    """When a step's runs will end, estimated from the pace they have kept so far (epochs `done` of `total` in
    `elapsed_s`), which already counts the turns they take with `others` browsers' runs on the same machine."""
    sharing = (f" {others} other browser{'s are' if others > 1 else ' is'} training too: runs take turns on this "
               "machine, so each goes slower." if others else "")
    if done <= 0 or elapsed_s <= 0:
        return "⏳ Starting…" + sharing
    left = elapsed_s * (total - done) / done
    return f"⏳ Training: {done:.1f} of {total:g} epochs, about {math.ceil(left)} s left at this pace." + sharing
