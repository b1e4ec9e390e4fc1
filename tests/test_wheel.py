"""A built wheel carries every module and every shipped model, and works outside the checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build_wheel(out: Path) -> Path:
    # Built from a fresh copy of what the project ships: setuptools never deletes stale files from a checkout's
    # build/ folder, so a module removed from the tree could still ride along in a wheel built in place.
    source = out.parent / "source"
    for item in ("rnnzoo", "zoo", "streaming", "saved_models"):
        shutil.copytree(ROOT / item, source / item, ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / item, source / item)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip_wheel, "-w", str(out), str(source)], check=True, capture_output=True)
    (wheel,) = out.glob("rnn_zoo-*.whl")
    return wheel


@pytest.mark.slow  # 16 s: builds and installs the wheel
def test_wheel_installed_elsewhere_lists_verifies_and_loads_every_model(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        p.relative_to(ROOT).as_posix()
        for d in ("rnnzoo", "zoo", "streaming")
        for p in (ROOT / d).rglob("*.py")
    }
    shipped = {n for n in names if n.endswith(".py")}
    assert sources == shipped, f"missing: {sorted(sources - shipped)}, stale: {sorted(shipped - sources)}"
    models = {
        "zoo/" + p.relative_to(ROOT).as_posix() for p in (ROOT / "saved_models").rglob("*") if p.is_file()
    }
    assert models and models <= names, f"model files missing from the wheel: {sorted(models - names)[:5]}"
    assert "zoo/card.schema.json" in names  # the cards' schema travels with the package that reads them
    page = {p.relative_to(ROOT).as_posix() for p in (ROOT / "streaming" / "static").rglob("*") if p.is_file()}
    assert page and page <= names, f"live page files missing from the wheel: {sorted(page - names)}"  # no CDN

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    # The wheel's own dependencies (TensorFlow, …) are borrowed from this environment through a path entry
    # rather than downloaded again: only the package itself comes from the wheel. A path added by a .pth
    # line does not run that folder's .pth files, so this environment's editable `zoo` stays invisible.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json, zoo, zoo.cards as c; names = zoo.list_models(); "
        "print(json.dumps({'file': zoo.__file__, 'names': names, 'schema': c.SCHEMA_FILE.is_file(), "
        "'params': {n: zoo.load(n).count_params() for n in names}}))"
    )
    done = subprocess.run(
        [str(python), "-I", "-c", code], cwd=elsewhere, check=True, capture_output=True, text=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(venv)), result["file"]
    assert result["schema"]
    from zoo import cards

    assert result["names"] and set(result["names"]) == set(cards.shipped())
    for name, params in result["params"].items():
        assert params == cards.read_card(cards.model_dir(name)).parameters, name

    listing = subprocess.run(
        [str(venv / "bin" / "rnnzoo"), "list"], cwd=elsewhere, check=True, capture_output=True, text=True
    )
    assert all(name in listing.stdout for name in result["names"])
