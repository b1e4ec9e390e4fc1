"""Find a data file inside an installed package, with a clear error if the package is missing."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np


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


def aeon_archive(name: str, splits: str | tuple[str, ...] = ("TRAIN", "TEST")) -> tuple[Any, np.ndarray]:
    """A UCR/UEA archive set bundled in aeon's wheel (``aeon/datasets/data/<name>/<name>_<SPLIT>.ts``), as aeon
    reads it: ``x [N, channels, T]`` float64 (a list of ``[channels, T_i]`` arrays when lengths differ) and the
    labels or targets; several ``splits`` are concatenated in the order given."""
    from aeon.datasets import load_from_ts_file

    parts = [
        load_from_ts_file(str(package_file("aeon", "datasets", "data", name, f"{name}_{s.upper()}.ts")))
        for s in ((splits,) if isinstance(splits, str) else splits)
    ]
    if all(isinstance(x, np.ndarray) for x, _ in parts):
        x: Any = np.concatenate([x for x, _ in parts])
    else:
        x = [a for xs, _ in parts for a in xs]
    return x, np.concatenate([np.asarray(y) for _, y in parts])
