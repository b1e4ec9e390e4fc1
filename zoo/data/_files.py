"""Find a data file inside an installed package, with a clear error if the package is missing."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def package_file(package: str, *parts: str) -> Path:
    """Path of a file shipped inside ``package`` (imported lazily, never downloaded)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed: run `pip install -e .` first")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path


def cache_dir(kind: str) -> Path:
    """Folder for arrays a loader derives from its package files (parsed corpora, rendered audio features).

    It lives outside the checkout — ``$RNNZOO_CACHE`` or ``~/.cache/rnn-zoo`` — so every clone and CI run on a
    machine shares one copy; each cache file is keyed by the settings and tool versions that made it, and is
    rebuilt from the packages (never downloaded) when missing.
    """
    root = Path(os.environ.get("RNNZOO_CACHE") or Path.home() / ".cache" / "rnn-zoo")
    path = root / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
