"""What every task provides, and the arrays it hands to the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from zoo.backend import keras


@dataclass
class Prepared:
    """A task's data, split and ready to fit.

    ``x_*`` are raw inputs ``[N, T, F]`` (the model normalises them itself); ``y_*`` are training targets in
    the shape the head emits; regression targets are fitted as ``(y - target_mean) / target_std`` and the
    scale is folded back into the head afterwards. ``dataset``, ``split`` and ``preprocessing`` go to the card.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_outputs: int
    norm_mean: np.ndarray
    norm_var: np.ndarray
    dataset: dict
    split: dict
    preprocessing: dict
    target_mean: float = 0.0
    target_std: float = 1.0
    # Token models (``Architecture.embedding`` > 0): inputs are ids in [0, vocab_size) instead of readings.
    vocab_size: int = 0
    # Files written beside the model (file name -> JSON content, e.g. a tokenizer's vocabulary); the card
    # lists each with its sha256, and `zoo.load` verifies them.
    assets: dict = field(default_factory=dict)
    # Training + validation data for a `Recipe.refit` final fit, when the task prepares it itself (e.g. with the
    # validation series augmented like the training ones); None: the two splits concatenated.
    x_refit: np.ndarray | None = None
    y_refit: np.ndarray | None = None


class Task(Protocol):
    """The part of a model that is not its architecture or its training recipe."""

    kind: str
    heads: tuple[str, ...]

    def prepare(self, seed: int, head: str) -> Prepared:
        """Load, split and shape the data for ``head``."""
        ...

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out raw inputs ``[N, T, F]`` and their labels or targets, as a user would feed them."""
        ...

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        """Test metrics of ``model``, plus anything the card should show (plots are written elsewhere)."""
        ...

    def baselines(self, prepared: Prepared) -> dict:
        """Simple reference methods measured on the same test split."""
        ...


def feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance over all samples and steps (the Normalization layer's statistics)."""
    flat = x.reshape(-1, x.shape[-1]).astype("float64")
    return flat.mean(0).astype("float32"), np.maximum(flat.var(0), 1e-12).astype("float32")


def normalisation_card(mean: np.ndarray, var: np.ndarray, dataset: dict) -> dict:
    """The card's record of the in-model normalisation (and the sample rate, where the dataset gives one)."""
    info = {"normalization": {"mean": mean.tolist(), "variance": var.tolist(), "where": "inside the model"}}
    if "sample_rate_hz" in dataset:
        info["sample_rate_hz"] = dataset["sample_rate_hz"]
    return info
