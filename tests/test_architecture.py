"""The layout's promises, checked: `streaming` builds on `zoo` and never the reverse; no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "streaming")
# The one sanctioned exception: the rnnzoo command line registers the streaming sub-commands.
ENTRY_POINT = "zoo.cli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports, anywhere in the file (inside functions too; not TYPE_CHECKING)."""
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # drop `if TYPE_CHECKING:` blocks: they never run
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                node.body = []
        edges = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def test_zoo_never_imports_streaming() -> None:
    offenders = {
        (m, t)
        for m, targets in import_graph().items()
        for t in targets
        if m.split(".")[0] == "zoo" and t.split(".")[0] == "streaming" and m != ENTRY_POINT
    }
    assert not offenders, sorted(offenders)


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()

    # A module importing its own package's __init__ (e.g. `import zoo` for the public API) is not a cycle of
    # the design, but every other loop is: look for one with depth-first search.
    def edges(m: str) -> set[str]:
        return {t for t in graph[m] if not (m.startswith(t + ".") and t in PACKAGES)}

    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        state[m] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))
