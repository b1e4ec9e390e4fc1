"""The state contract a card records (`zoo.cards.StateSpec`): every recurrent layer's state tensors, and the
width of the step engine's state row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.step.convert import NotStepable
from zoo.step.engine import StepModel

if TYPE_CHECKING:
    from zoo.cards import StateSpec

_CELLS = {"SimpleRNNCell": "simple", "LSTMCell": "lstm", "GRUCell": "gru"}


def cell_name(layer: Any) -> str:
    """The zoo's name ("simple", "lstm", "gru") of a Keras recurrent layer's cell."""
    return _CELLS[type(layer.cell).__name__]


def _recurrent_layers(model: Any) -> list[tuple[Any, str, str]]:
    """(recurrent layer, direction, name) for every recurrent layer of ``model``, nested models included, in
    layer order; a Bidirectional wrapper counts once, by its forward layer."""
    from zoo.backend import keras

    found: list[tuple[Any, str, str]] = []

    def walk(layer: Any) -> None:
        if isinstance(layer, keras.layers.Bidirectional):
            found.append((layer.forward_layer, "bidirectional", layer.name))
        elif isinstance(layer, keras.layers.RNN):
            found.append((layer, "backward" if layer.go_backwards else "forward", layer.name))
        else:
            for sub in getattr(layer, "layers", []):
                walk(sub)

    for layer in model.layers:
        walk(layer)
    return found


def state_spec(model: Any, step_input: str) -> StateSpec:
    """The state contract of ``model`` for its card: every recurrent layer's state tensors (named
    ``layer<i>[_forward|_backward]_<h|c>``), what one step consumes, and — for a causal model — the width of
    the step engine's state row, which is those tensors concatenated in the order listed."""
    from zoo.cards import RecurrentLayerState, StateSpec, StateTensor

    layers = []
    for i, (layer, direction, name) in enumerate(_recurrent_layers(model)):
        cell = cell_name(layer)
        units = int(layer.cell.units)
        parts = ["h", "c"] if cell == "lstm" else ["h"]
        sides = ["forward_", "backward_"] if direction == "bidirectional" else [""]
        dtype = np.dtype(layer.dtype).name
        states = [StateTensor(f"layer{i}_{side}{p}", [units], dtype) for side in sides for p in parts]
        layers.append(RecurrentLayerState(name, cell, units, direction, states))
    try:
        size: int | None = StepModel.from_keras(model).state_size
    except NotStepable:
        size = None
    first = model.inputs[0]
    return StateSpec(
        step_input=step_input,
        input_shape=[int(d) for d in first.shape[2:]],
        input_dtype=np.dtype(first.dtype).name,
        steppable=size is not None,
        layers=layers,
        engine_state_size=size,
    )
