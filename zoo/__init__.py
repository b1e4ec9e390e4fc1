"""rnn-zoo: pretrained Keras 3 recurrent networks, loaded offline in one call.

>>> import zoo
>>> zoo.list_models()
>>> model = zoo.load("activity-gru-causal")
>>> zoo.card("activity-gru-causal")["test_metrics"]["accuracy"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_keras_quietly() -> None:
    """Import Keras (and its backend) once, with file descriptor 2 muted: TensorFlow's C++ runtime writes
    start-up lines (absl, oneDNN) straight to it, which no environment variable silences; errors still raise."""
    import sys

    if "keras" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_keras_quietly()

from zoo import cards  # noqa: E402
from zoo.registry import REGISTRY, UnknownModelError, get_spec  # noqa: E402

if TYPE_CHECKING:
    import keras
    import numpy as np

__all__ = ["list_models", "card", "load", "train", "evaluate", "test_data", "UnknownModelError"]


def list_models() -> list[str]:
    """Names of the pretrained models shipped in ``saved_models/``, in registry order."""
    present = set(cards.shipped())
    return [name for name in REGISTRY if name in present]


def _folder(name: str) -> Path:
    get_spec(name)  # unknown names fail here, with suggestions
    return cards.model_dir(name)


def card(name: str) -> dict:
    """The model card of a shipped model: task, data, split, metrics, baselines, recipe, sha256."""
    return cards.read_card(_folder(name))


def load(name: str) -> keras.Model:
    """Load a shipped model offline, after checking its sha256 against the card (Keras ``safe_mode``)."""
    import keras

    folder = _folder(name)
    path = cards.verify(folder, cards.read_card(folder))
    return keras.models.load_model(path, safe_mode=True, compile=False)


def test_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out raw inputs ``[N, T, F]`` of a model's dataset and their labels or targets."""
    from zoo.tasks import TASKS

    return TASKS[get_spec(name).task].test_data()


def train(name: str, out: str | Path | None = None, verbose: int = 1, **overrides: object) -> dict:
    """Retrain a registry model (``cell=``, ``units=``, ``layers=``, ``epochs=``, ``seed=``… override the
    recipe) and write it with its card to ``out/<name>/`` (default: ``saved_models/``). Returns the card."""
    from zoo.training import train_and_export

    spec = get_spec(name).with_overrides(**overrides)
    return train_and_export(spec, Path(out) if out else None, verbose=verbose)


def evaluate(name: str) -> dict:
    """Re-measure a shipped model on its test split; returns the fresh test metrics."""
    from zoo.tasks import TASKS

    spec = get_spec(name)
    task = TASKS[spec.task]
    model = load(name)
    return task.evaluate(model, task.prepare(spec.recipe.seed, spec.head), spec.head)
