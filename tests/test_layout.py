"""The house's shape, read from the source: core/ in tiers that import only downwards, no import cycle,
the engine free of Streamlit, pages that reach the engine's training through ui."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# core's tiers, lowest first: a module imports from its own tier or the ones before it, never after.
TIERS = ("core.runtime", "core.data", "core.models", "core.freezing", "core.training", "core.setups", "core.store",
         "core.execution", "core.experiments", "core.insight", "core.lesson", "core.__main__")


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
            if module == "core.__main__":  # `freezelab bench` starts it; its parser lists the sections
                bad -= {"benchmarks.bench", "benchmarks.sections"}
            assert not bad, f"{module} imports {bad}"


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
