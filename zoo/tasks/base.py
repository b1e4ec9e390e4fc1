"""What every task provides, and the arrays it hands to the training loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.backend import keras


@dataclass
class Prepared:
    """A task's data, split and ready to fit.

    ``x_*`` are raw inputs ``[N, T, F]`` (the model normalises them itself); ``y_*`` are training targets in
    the shape the head emits; regression targets are fitted as ``(y - target_mean) / target_std`` and the
    scale is folded back into the head afterwards. ``dataset``, ``split`` and ``preprocessing`` go to the card.
    """

    # A task that batches its own data (`Task.prepare` with a batch size) puts a `keras.utils.PyDataset` of
    # (inputs, targets) in x_train / x_val and None in y_train / y_val.
    x_train: Any
    y_train: np.ndarray | None
    x_val: Any
    y_val: np.ndarray | None
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
    # Per-step sample weights ``[N, T]`` for a per-step head (0 leaves a step out of the loss: a label that is
    # unknown, or end padding); None: every step counts.
    w_train: np.ndarray | None = None
    w_val: np.ndarray | None = None


class Task(ABC):
    """The part of a model that is not its architecture or its training recipe.

    Four methods every task implements, and four capabilities a task may declare by overriding them; the
    defaults say "not this task" and the training loop calls them all, so nothing is probed with hasattr.
    """

    kind: str  # what the card calls the model: "classification", "forecast", "translation", ...
    heads: tuple[str, ...]  # the heads (`zoo.architecture.HEADS`) this task's data can train
    # Whether a causal model of this task is served step by step (its card records step parity); a task whose
    # model is not one recurrent chain (an encoder-decoder) says False.
    streamable: bool = True

    @abstractmethod
    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        """Load, split and shape the data for ``head``. ``batch_size`` matters only to a task that hands the
        training loop its own batches (x_train a `keras.utils.PyDataset`); others batch in `fit`."""

    @abstractmethod
    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out raw inputs ``[N, T, F]`` and their labels or targets, as a user would feed them."""

    @abstractmethod
    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        """Test metrics of ``model``, plus anything the card should show (plots are written elsewhere)."""

    @abstractmethod
    def baselines(self, prepared: Prepared) -> dict:
        """Simple reference methods measured on the same test split."""

    # -- optional capabilities --------------------------------------------------------------------------------

    def build_model(self, spec: Any, prepared: Prepared) -> keras.Model | None:
        """A model built by a declared extension of `zoo.builder` (e.g. `zoo.builder.build_seq2seq`);
        None: the one recurrent-chain builder, `zoo.builder.build_model`."""
        return None

    def plot(self, model: keras.Model, path: Path) -> Path | None:
        """Write a test-split figure for the model folder; None: this task has none."""
        return None

    def valid_steps(self) -> np.ndarray | None:
        """Mask ``[N, T]`` of the test steps that are real (not end padding), for step parity; None: all."""
        return None

    def compare(self, metrics: dict, baselines: dict) -> dict | None:
        """In words, whether and by how much the model beats its baselines; None: the card leaves it out."""
        return None

    def step_input(self, preprocessing: dict) -> str:
        """What one time step of the model's input is, in words (the card's state spec), from the card's
        ``preprocessing``; the default is a reading of ``n_features`` values."""
        n = preprocessing.get("n_features")
        rate = preprocessing.get("sample_rate_hz")
        return f"one reading of {n} value{'' if n == 1 else 's'}" + (
            f" ({rate:g} readings/s)" if rate else ""
        )


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
