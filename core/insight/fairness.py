"""What a comparison held equal, in words for the page that shows it beside the curves (the Train page's live
view): a comparison teaches the right lesson when only what it compares differs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from core.training.config import RunConfig

# What a comparison may hold equal, besides what each run trains (its phases, the thing compared): the name,
# the value read from a RunConfig, and the value in words.
_ASPECTS: tuple[tuple[str, Callable[[RunConfig], object], Callable[[object], str]], ...] = (
    ("data", lambda c: c.data, lambda d: f"{d.source}, {d.per_class or 'all'} per class, {d.image_size} px"),
    ("backbone", lambda c: {"backbone": c.model.backbone, "head": c.model.head}, lambda v: v["backbone"]),
    ("weights", lambda c: c.model.weights, str),
    ("epochs", lambda c: c.epochs, str),
    ("batch size", lambda c: c.optim.batch_size, str),
    ("optimizer", lambda c: {"name": c.optim.name, "weight_decay": c.optim.weight_decay,
                             "momentum": c.optim.momentum, "cosine": c.optim.cosine}, lambda v: v["name"]),
    ("learning rate", lambda c: c.start_lr, lambda v: f"{v:g}"),
    ("BatchNorm in frozen blocks", lambda c: tuple(dict.fromkeys(p.plan.bn for p in c.phases)), ", ".join),
    ("early stopping", lambda c: c.patience, lambda v: "off" if v is None else f"after {v} epochs"),
    ("seed", lambda c: c.seed, str),
)


def _parts(value, name: str = "") -> dict[str, object]:
    """A compared value's plain parts by dotted name (dataclasses and dicts opened up): `head.dropout`."""
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if not isinstance(value, dict):
        return {name: value}
    return {k: v for key, part in value.items() for k, v in _parts(part, f"{name}.{key}" if name else key).items()}


def held_equal(configs: list[RunConfig]) -> str:
    """What the runs of a comparison share, and where they differ besides what each trains, in words for the
    page that shows them; '' for fewer than two runs. A comparison teaches the right lesson when only what it
    compares differs, and each run gets a learning rate suited to what it trains."""
    if len(configs) < 2:
        return ""
    equal, differ = [], []
    for name, value, words in _ASPECTS:
        values = [value(c) for c in configs]
        if all(v == values[0] for v in values):
            equal.append(f"{name} ({words(values[0])})")
            continue
        said = [words(v) for v in values]
        if len(set(said)) < len({repr(v) for v in values}):  # the short words hide a difference: name its parts
            parts = [_parts(v) for v in values]
            moved = [k for k in parts[0] if any(p[k] != parts[0][k] for p in parts)]
            said = [f"{s}, " + ", ".join(f"{k} {p[k]}" for k in moved) for s, p in zip(said, parts, strict=True)]
        differ.append(f"{name} (" + "; ".join(f"{c.label or f'run {i + 1}'} {s}"
                                              for i, (c, s) in enumerate(zip(configs, said, strict=True))) + ")")
    text = "Held equal: " + (", ".join(equal) if equal else "nothing") + "."
    return text + (f" Besides what each trains, they differ in {' and '.join(differ)}." if differ else "")

