"""The one place the app writes raw HTML into a page (`st.markdown(..., unsafe_allow_html=True)`): the live view's
curves, an inline SVG that `st.html` would drop (its sanitiser keeps HTML, not SVG). Whatever is written here passes
`checked` first: only the elements and attributes that drawing uses, no attribute value that could run or fetch
anything, no comment or declaration, and no blank line (a blank line ends Markdown's HTML block, and what follows
it, a run's name included, would be read as Markdown). tests/test_hardening.py feeds it hostile names and holds
every other page and helper to `st.html` and plain Markdown.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# What the live view's SVG and its legend use (ui/live.py): elements, and each one's attributes.
ALLOWED: dict[str, frozenset[str]] = {
    "div": frozenset({"class", "style"}),
    "span": frozenset({"style"}),
    "svg": frozenset({"viewbox", "width", "height", "role", "aria-label", "xmlns", "style"}),
    "line": frozenset({"x1", "y1", "x2", "y2", "stroke", "stroke-width", "stroke-opacity", "stroke-dasharray"}),
    "polyline": frozenset({"points", "fill", "stroke", "stroke-width", "stroke-opacity", "stroke-dasharray"}),
    "circle": frozenset({"cx", "cy", "r", "fill"}),
    "text": frozenset({"x", "y", "fill", "font-size", "text-anchor", "transform"}),
}
# Inside an allowed attribute's value: what could run script or reach another address (a style's url(), an
# old browser's expression(), a javascript: or data: address).
_UNSAFE_VALUE = re.compile(r"javascript:|vbscript:|data:|url\s*\(|expression\s*\(|@import|[<>\\]", re.I)


class UnsafeMarkup(ValueError):
    """Markup this module will not write, naming what in it is not allowed."""


class _Gate(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=False)  # text as written: an escaped "&lt;" stays apart from a raw "<"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED:
            raise UnsafeMarkup(f"<{tag}> is not an element the app draws.")
        for name, value in attrs:
            if name not in ALLOWED[tag]:
                raise UnsafeMarkup(f"<{tag} {name}=…> is not an attribute the app draws.")
            if value and _UNSAFE_VALUE.search(value):
                raise UnsafeMarkup(f"<{tag} {name}=…> holds a value that could run or fetch something.")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag not in ALLOWED:
            raise UnsafeMarkup(f"</{tag}> is not an element the app draws.")

    def handle_data(self, data: str) -> None:
        if "<" in data:  # what the parser could not read as a tag (one cut short at the end): no raw "<" in text
            raise UnsafeMarkup("Text holds a raw '<': names are escaped before they are drawn.")

    def handle_comment(self, data: str) -> None:
        raise UnsafeMarkup("A comment is not drawn.")

    def handle_decl(self, decl: str) -> None:
        raise UnsafeMarkup("A declaration is not drawn.")

    handle_pi = unknown_decl = handle_decl


def checked(markup: str) -> str:
    """`markup` as it may be written raw: its lines with no blank one between them (Markdown keeps it one HTML
    block, passed through untouched), every element and attribute on ALLOWED and no value that could run or fetch
    anything; UnsafeMarkup otherwise. Text between the tags is the caller's to escape (html.escape), and reads
    as text whatever it holds: the parser sees any tag an unescaped name would make, and refuses it."""
    one_block = "\n".join(line for line in markup.splitlines() if line.strip())
    gate = _Gate()
    gate.feed(one_block)
    gate.close()
    return one_block


def write(box, markup: str) -> None:
    """Draw `markup` raw in the Streamlit container `box` (st.empty(), a column, `st` itself), once `checked`."""
    box.markdown(checked(markup), unsafe_allow_html=True)
