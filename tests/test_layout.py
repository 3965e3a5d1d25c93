"""The house's shape, read from the source: core/ in tiers that import only downwards, no import cycle,
the engine free of Streamlit, pages that reach the engine's training through ui."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# core's tiers, lowest first: a module imports from its own tier or the ones before it, never after.
TIERS = ("core.runtime", "core.data", "core.models", "core.freezing", "core.training", "core.links", "core.store",
         "core.execution", "core.experiments", "core.insight", "core.lesson", "core.cli", "core.__main__")
# The command line (core.cli, and core.__main__ that starts it) is the top: the engine below never reaches it.
COMMAND_LINE = ("core.cli", "core.__main__")
MAX_CORE_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for folder in ("core", "ui", "benchmarks") for p in (ROOT / folder).rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every module `path` imports (at any depth, type-only imports too), as the module a name resolves to."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def tier(module: str) -> int:
    return next(i for i, t in enumerate(TIERS) if module == t or module.startswith(t + "."))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("core.") and m != "core"))
def test_core_imports_only_its_own_tier_and_those_below(module):
    upward = [m for m in imports(MODULES[module]) if m.startswith("core.") and tier(m) > tier(module)]
    assert not upward, f"{module} (tier {TIERS[tier(module)]}) imports from above it: {upward}"


def test_the_engine_never_imports_streamlit_ui_or_the_benchmarks():
    for module, path in MODULES.items():
        if module.split(".")[0] == "core":
            bad = {m for m in imports(path) if m.split(".")[0] in ("streamlit", "ui", "benchmarks", "app_pages")}
            if module == "core.cli.bench":  # `freezelab bench` starts it; its parser lists the sections
                bad -= {"benchmarks.bench", "benchmarks.sections"}
            assert not bad, f"{module} imports {bad}"


def _in_command_line(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in COMMAND_LINE)


def test_only_the_command_line_reaches_the_command_line_and_only_its_bench_command_the_benchmarks():
    """The engine is a library that the app, the command line and the tests call: none of it imports the command
    line (whose flags, messages and processes are its user's) or the benchmarks (outside the engine, beside it)."""
    for module, path in MODULES.items():
        if module.split(".")[0] != "core":
            continue
        benchmarks = {m for m in imports(path) if m.split(".")[0] == "benchmarks"}
        if _in_command_line(module):
            assert module == "core.cli.bench" or not benchmarks, f"{module} imports {benchmarks}: only `bench` may"
        else:
            bad = benchmarks | {m for m in imports(path) if _in_command_line(m)}
            assert not bad, f"{module} imports {bad}"


def test_no_module_of_the_engine_is_over_600_lines():
    long = {m: n for m, p in MODULES.items() if m.split(".")[0] == "core"
            and (n := len(p.read_text().splitlines())) > MAX_CORE_LINES}
    assert not long, f"over {MAX_CORE_LINES} lines (split each by what its parts do): {long}"


def test_no_import_cycle():
    graph = {m: {i for i in imports(p) if i in MODULES} for m, p in MODULES.items()}
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(m):], m]))
        if m in done:
            return
        path.append(m)
        for n in sorted(graph[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_pages_reach_training_only_through_ui():
    """Pages hold widgets and charts: the job manager, the trainer and Ray are ui's to hold."""
    for page in sorted((ROOT / "app_pages").glob("*.py")):
        execution = [m for m in imports(page) if m.startswith("core.execution")]
        assert not execution, f"{page.name} imports {execution}"


def test_the_engine_names_no_page_file():
    """core/ names the app's pages by key at most (the lesson's "go deeper": ui resolves it): a path into
    app_pages/ would be a dependency upward that no import shows."""
    named = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "core").rglob("*.py"))
             if "app_pages" in p.read_text()]
    assert not named, f"these name app_pages/: {named}"


def test_every_package_folder_is_installed():
    """pyproject.toml lists packages by hand (the repository's layout is kept in the wheel): a sub-package left
    out of the list is missing from every install and fails only there."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for folder in ("core", "ui", "benchmarks")
               for p in (ROOT / folder).rglob("__init__.py")}
    assert folders <= listed, f"not in pyproject.toml's packages: {sorted(folders - listed)}"


def test_the_engines_docstring_lists_the_tiers_this_test_holds():
    """core/__init__.py tells a reader the tiers; it says what this file enforces, in the same order."""
    import core

    arrows = core.__doc__.split("to this list):", 1)[1].split("\n\n", 1)[0]
    assert tuple(f"core.{t.strip()}" for t in arrows.replace("\n", " ").split("→")) == TIERS
