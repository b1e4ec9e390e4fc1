"""The documentation site builds with no warning, and its API reference covers the whole `zoo` facade.

The build (slow: ~10 s, it renders every page) is the one .ci/run makes: `mkdocs build --strict`, which turns
every warning — a broken link or anchor, a page missing from the nav, a docstring mkdocstrings cannot read —
into a failure. The coverage check is quick: it reads `zoo.__all__` from the source.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _facade_names() -> list[str]:
    tree = ast.parse((ROOT / "zoo" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]
    raise AssertionError("zoo/__init__.py has no __all__")


def test_api_reference_covers_every_facade_name() -> None:
    page = (ROOT / "docs" / "api" / "zoo.md").read_text()
    documented = set(re.findall(r"^::: zoo\.(?:\w+\.)?(\w+)\s*$", page, flags=re.M))
    missing = [name for name in _facade_names() if name not in documented]
    assert not missing, f"docs/api/zoo.md has no '::: zoo.<name>' entry for {missing}"


@pytest.mark.slow
def test_site_builds_strictly_without_warnings(tmp_path: Path) -> None:
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2 (not a build warning)
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - start
    log = run.stdout + run.stderr
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert run.returncode == 0 and not warnings, log
    site = tmp_path / "site"
    for page in ("index.html", "architecture.html", "api/zoo.html", "api/core.html", "api/worker.html"):
        assert (site / page).is_file(), page
    zoo_page = (site / "api" / "zoo.html").read_text()
    for name in ("zoo.list_models", "zoo.load", "zoo.fit.fit", "zoo.export.export"):
        assert f'id="{name}"' in zoo_page, name
    assert (site / "images" / "architecture.svg").is_file()
    print(f"site built in {seconds:.1f} s")
