"""The rendered-speech cache: feature arrays in ``~/.cache/rnn-zoo/speech``, named by a hash of what shapes them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from zoo.data._files import cache_dir
from zoo.data.speech.espeak import espeak_version


def cache_key(config: dict) -> str:
    """The hash that names a cached speech array file: ``config`` and the espeak-ng version."""
    return hashlib.sha256(
        json.dumps({**config, "espeak": espeak_version()}, sort_keys=True).encode()
    ).hexdigest()


def cached(name: str, config: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays from ``~/.cache/rnn-zoo/speech/<name>-<hash>.npz``, building and saving them on the first call."""
    path = cache_dir("speech") / f"{name}-{cache_key(config)[:12]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return arrays
