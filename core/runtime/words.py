"""A value quoted in a sentence that refuses it: as Python writes it, cut to a readable length, so a link or a
file carrying pages of text is named, never echoed whole."""

from __future__ import annotations

QUOTED_CHARS = 60  # a toast's line or two


def quoted(value, limit: int = QUOTED_CHARS) -> str:
    """`value` as repr() writes it (quotes and escapes: a control character shows as one), at most `limit`
    characters; a longer one ends in "…"."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listed(values, most: int = 3) -> str:
    """The first `most` values quoted and joined ("'a', 'b', 'c' and 4 more"): a list of a thousand bad names is
    named by its first few and counted."""
    values = list(values)
    named = ", ".join(quoted(v) for v in values[:most])
    return named + (f" and {len(values) - most:,} more" if len(values) > most else "")
