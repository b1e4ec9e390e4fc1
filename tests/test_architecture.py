"""The layout's promises, checked: `streaming` builds on `zoo` and never the reverse, the `rnnzoo` command line
sits above both and neither imports it; no module inside a package imports that package's facade (its
``__init__``: `zoo.load` and the rest are for users, the modules below use `zoo.loaders`); no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "streaming", "rnnzoo")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports, anywhere in the file (inside functions too; not TYPE_CHECKING).
    ``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg``."""
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
                sub = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in modules else node.module for t in sub]
            for target in targets:
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def test_zoo_never_imports_streaming_and_neither_imports_the_command_line() -> None:
    below = {"zoo": {"streaming", "rnnzoo"}, "streaming": {"rnnzoo"}}
    offenders = {
        (m, t)
        for m, targets in import_graph().items()
        for t in targets
        if t.split(".")[0] in below.get(m.split(".")[0], set())
    }
    assert not offenders, sorted(offenders)


def test_no_module_inside_a_package_imports_its_facade() -> None:
    offenders = sorted(
        (m, t)
        for m, targets in import_graph().items()
        for t in targets
        if t in PACKAGES and m.startswith(t + ".")
    )
    assert not offenders, offenders


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()

    def edges(m: str) -> set[str]:
        return graph[m]

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
