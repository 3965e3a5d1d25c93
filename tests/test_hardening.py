"""Hardening III (issue 45), the parts with no module of their own to test them: the one place raw HTML is written
(fed hostile run names), and a link naming thousands of runs no one has."""

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from ui import live, raw_html

ROOT = Path(__file__).resolve().parents[1]

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "](javascript:alert(1))",
    "[click](javascript:alert(1))",
    "a\n\n[click](javascript:alert(1)) <img src=x onerror=alert(1)>",  # a blank line ends Markdown's HTML block
    "x\r\n \r\n<svg onload=alert(1)>",
    "<!-- --><iframe src=//evil.example>",
    "&lt;script&gt; & <style>body{background:url(//evil.example)}</style>",
]


def _curves(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two runs' epoch and step curves, the second named `name`."""
    labels = ["Feature extraction"] * 2 + [name]
    table = pd.DataFrame({"run_id": ["r1", "r1", "r2"], "label": labels, "step": [5, 10, 5],
                          "epoch": [1.0, 2.0, 1.0], "seconds": [0.1, 0.2, 0.3], "val_loss": [1.0, 0.5, 2.0],
                          "train_loss": [1.2, 0.6, 2.2], "val_acc": [0.5, 0.7, 0.2], "train_acc": [0.4, 0.6, 0.1]})
    steps = pd.DataFrame({"run_id": ["r1"] * 4 + ["r2"] * 4, "label": ["Feature extraction"] * 4 + [name] * 4,
                          "step": [1, 2, 3, 4] * 2, "epoch": [0.2, 0.4, 0.6, 0.8] * 2,
                          "seconds": np.linspace(0.01, 0.3, 8), "loss": np.linspace(2.3, 0.4, 8)})
    return table, steps


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from markup, with the text it would show."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_one_place_raw_html_is_written_lets_nothing_from_a_name_run(name):
    table, steps = _curves(name)
    markup = raw_html.checked(live.curves_svg(table, "epoch", steps))
    tokens = MarkdownIt("commonmark").parse(markup)
    assert [t.type for t in tokens] == ["html_block"]  # passed to the page whole, nothing in it read as Markdown
    found = _Elements()
    found.feed(MarkdownIt("commonmark").render(markup))  # what a Markdown renderer with raw HTML hands the browser
    assert {tag for tag, _ in found.elements} <= set(raw_html.ALLOWED)  # no script, img, a, iframe, style
    for tag, attrs in found.elements:
        assert set(attrs) <= raw_html.ALLOWED[tag] and not any(a.startswith("on") for a in attrs)
        assert not any("javascript:" in (v or "") or "url(" in (v or "") for v in attrs.values())
    shown = " ".join(found.text.split())
    assert " ".join(name.split()) in shown  # the name is shown as the text it is


@pytest.mark.parametrize(("markup", "says"), [
    ("<div><img src=x onerror=alert(1)></div>", "<img> is not an element"),
    ("<div onclick='alert(1)'>x</div>", "<div onclick=…> is not an attribute"),
    ("<div style='background:url(//evil.example/x.png)'>x</div>", "could run or fetch"),
    ("<svg><a href='javascript:alert(1)'>x</a></svg>", "<a> is not an element"),
    ("<span style='color:red'>a <img src=x onerror=alert(1)", "raw '<'"),  # a tag cut short at the end
    ("<div><!-- a comment --></div>", "A comment"),
])
def test_markup_that_could_run_or_fetch_is_refused_naming_what(markup, says):
    with pytest.raises(raw_html.UnsafeMarkup, match=re.escape(says)):
        raw_html.checked(markup)


def _raw_html_writers() -> dict[str, list[int]]:
    """Each app file (the entry point, pages, ui) with a call that writes raw HTML: an `unsafe_allow_html`
    argument, or a Streamlit component built from HTML. File -> line numbers."""
    files = [ROOT / "streamlit_app.py", *(ROOT / "app_pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]
    found: dict[str, list[int]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            named = ast.unparse(node.func)
            if any(k.arg == "unsafe_allow_html" for k in node.keywords) or named.endswith("components.html") \
                    or named.endswith("v1.html"):
                found.setdefault(str(path.relative_to(ROOT)), []).append(node.lineno)
    return found


def test_only_ui_raw_html_writes_raw_html():
    writers = _raw_html_writers()
    assert set(writers) == {"ui/raw_html.py"}, writers


# --- A link naming thousands of runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["app_pages/compare.py", "app_pages/explain.py", "app_pages/inside.py"])
def test_a_link_naming_five_thousand_unknown_runs_names_a_few_and_counts_the_rest(page):
    ids = [f"20250101-000000-{i:06x}" for i in range(5000)]
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.query_params["runs"] = ",".join(ids)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    said = [t.value for t in at.toast]
    assert len(said) == 1 and len(said[0]) < 300, [len(s) for s in said]
    assert ids[0] in said[0] and ids[2] in said[0] and ids[3] not in said[0] and "4,997 more" in said[0]
