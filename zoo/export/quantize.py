"""Quantised LiteRT step graphs: calibration data drawn from the training split, and the card's headline test
metrics computed from an exported graph's own outputs.

Calibration (full-integer ``int8``) needs the ranges of every tensor the graph sees, states included: the float
step engine streams training sequences (never the test split) from zero state, and a spread of its
``(reading, state)`` pairs becomes the representative dataset.

Accuracy: `test_metrics` wraps a runtime as an object with Keras's ``predict`` (streaming every sequence one
step at a time, state fed back) and hands it to the task's own ``evaluate`` — the code that wrote the card's
``test_metrics`` — so a quantised graph is scored exactly as the model was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from zoo.export.graph import state_slots
from zoo.export.measure import stream
from zoo.export.runtimes import StepRuntime
from zoo.step import StepModel

CALIBRATION_SAMPLES = 400
CALIBRATION_SEQUENCES = 64
# The card metrics set beside each other for a quantised graph (those of them the task reports).
HEADLINE = (
    "accuracy",
    "per_step_accuracy_mean",
    "mae",
    "mase",
    "nll_per_frame",
    "detection_rate",
    "false_alarms_per_hour",
    "bits_per_character",
    "auc_5y_known_visits",
    "c_td_mean",
)


def training_sequences(name: str, sequences: int = CALIBRATION_SEQUENCES) -> np.ndarray:
    """Up to ``sequences`` training-split sequences ``[N, T, F]`` of shipped model ``name`` (evenly spread)."""
    from zoo.registry import get_spec
    from zoo.tasks import TASKS

    spec = get_spec(name)
    prepared = TASKS[spec.task].prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
    x = prepared.x_train
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(f"{name}: its training split is not an array of sequences [N, T, F]")
    pick = np.unique(np.linspace(0, len(x) - 1, min(sequences, len(x))).round().astype(int))
    return np.asarray(x[pick], np.float32)


def representative(
    step_model: StepModel, sequences: np.ndarray, samples: int = CALIBRATION_SAMPLES, seed: int = 0
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """A representative-dataset callable for the LiteRT converter: ``samples`` ``{"x", "<state>"…}`` rows of
    batch 1, each a reading of ``sequences`` and the float step engine's state just before it."""
    slots = state_slots(step_model)
    bounds = np.cumsum([0, *(s.width for s in slots)])
    state = step_model.initial_state(len(sequences))
    rows: list[dict[str, np.ndarray]] = []
    for t in range(sequences.shape[1]):
        x = sequences[:, t]
        for i in range(len(sequences)):
            row = {"x": x[i : i + 1]}
            row |= {
                s.name: np.asarray(state[i : i + 1, a:b], np.float32)
                for s, a, b in zip(slots, bounds[:-1], bounds[1:], strict=True)
            }
            rows.append(row)
        _, state = step_model.step(x, state)
    rng = np.random.default_rng(seed)
    chosen = [rows[i] for i in sorted(rng.choice(len(rows), min(samples, len(rows)), replace=False))]

    def dataset() -> Iterator[dict[str, np.ndarray]]:
        yield from chosen

    return dataset


class StreamedModel:
    """A step runtime behind Keras's ``predict``: every sequence streamed one step at a time from zero state."""

    def __init__(self, runtime: StepRuntime):
        self.runtime = runtime

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0) -> np.ndarray:
        return stream(self.runtime, np.asarray(x, np.float32))


def test_metrics(name: str, runtime: StepRuntime, prepared: Any = None) -> dict[str, float]:
    """The card's headline test metrics (`HEADLINE`, those the task reports) of shipped model ``name``,
    computed by its task's ``evaluate`` from ``runtime``'s streamed outputs."""
    from zoo.registry import get_spec
    from zoo.tasks import TASKS

    spec = get_spec(name)
    task = TASKS[spec.task]
    if prepared is None:
        prepared = task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
    metrics = task.evaluate(StreamedModel(runtime), prepared, spec.head)  # type: ignore[arg-type]
    return {k: round(float(metrics[k]), 4) for k in HEADLINE if isinstance(metrics.get(k), int | float)}


test_metrics.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


__all__ = ["HEADLINE", "StreamedModel", "representative", "test_metrics", "training_sequences"]
