"""Keras layers → step ops: reading a causal Keras model's weights once, at build time, into `zoo.step.ops`.

The one part of the step engine that touches Keras, and only inside its functions (the layers it is handed):
importing this module imports no Keras. A model that cannot step raises `NotStepable`, saying why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from zoo.step.activations import _ACTIVATIONS, Array, _identity, _softmax
from zoo.step.ops import _GRU, _LSTM, _Affine, _Elementwise, _LayerNorm, _Norm, _Op, _ParamAct, _SimpleRNN

# Keras' default fuzz factor: Normalization divides by max(sqrt(variance), epsilon).
_KERAS_EPSILON = 1e-7


class NotStepable(ValueError):
    """The model cannot be advanced one reading at a time; the message says why and what to do."""


def _activation(fn: Any, where: str) -> Callable[[Array], Array]:
    from zoo.backend import keras

    name = fn if isinstance(fn, str) else keras.activations.serialize(fn)
    if isinstance(name, dict):  # Keras serialises some callables as {"config": ..., ...}
        name = name.get("config", name.get("class_name"))
    if name not in _ACTIVATIONS:
        raise NotStepable(f"{where}: activation {name!r} has no numpy step; use window mode")
    return _ACTIVATIONS[name]


_IDENTITY_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
}


def _w(x: Any, dtype: np.dtype) -> Array:
    return np.asarray(x, dtype=dtype)


def _layer_op(layer: Any, n_features: int, dtype: np.dtype) -> tuple[_Op, int]:
    """Return the op for one layer and its output width, or raise NotStepable saying why."""
    kind = type(layer).__name__
    name = f"layer {layer.name!r} ({kind})"
    if kind in _IDENTITY_LAYERS:
        return _Elementwise(name), n_features
    if kind == "InputLayer":
        return _Elementwise(name), n_features
    if kind == "Bidirectional":
        raise NotStepable(
            f"{name} reads the future of the sequence; it cannot step causally: use window mode"
        )
    if kind == "TimeDistributed":
        return _layer_op(layer.layer, n_features, dtype)
    if kind == "Activation":
        return _Elementwise(name, fn=_activation(layer.activation, name)), n_features
    if kind in ("ReLU", "Softmax", "ELU", "LeakyReLU"):
        return _param_activation_layer(layer, name), n_features
    if kind == "Dense":
        kernel = _w(layer.kernel, dtype)
        bias = _w(layer.bias, dtype) if layer.use_bias else None
        act = _activation(layer.activation, name)
        return _Affine(name, kernel=kernel, bias=bias, act=act), kernel.shape[1]
    if kind == "Normalization":
        if tuple(layer.axis) not in ((-1,), (2,)):
            raise NotStepable(f"{name}: only per-feature normalisation (axis=-1) can step")
        mean = np.broadcast_to(_w(layer.mean, np.float64).reshape(-1), (n_features,))
        std = np.maximum(
            np.sqrt(np.broadcast_to(_w(layer.variance, np.float64).reshape(-1), (n_features,))),
            _KERAS_EPSILON,
        )
        if getattr(layer, "invert", False):
            return _Affine(name, scale=std.astype(dtype), bias=mean.astype(dtype)), n_features
        # Keep Keras' (x - mean) / std form rather than folding into x*a+b: the fold changes rounding.
        return _Norm(name, mean=mean.astype(dtype), std=std.astype(dtype)), n_features
    if kind == "Rescaling":
        scale = np.asarray(layer.scale, dtype=dtype)
        offset = np.asarray(layer.offset, dtype=dtype)
        return _Affine(name, scale=scale, bias=offset), n_features
    if kind == "BatchNormalization":
        if layer.axis not in (-1, 2):
            raise NotStepable(f"{name}: only axis=-1 batch normalisation can step")
        inv = 1.0 / np.sqrt(_w(layer.moving_variance, np.float64) + layer.epsilon)
        if layer.scale:
            inv = inv * _w(layer.gamma, np.float64)
        shift = -_w(layer.moving_mean, np.float64) * inv
        if layer.center:
            shift = shift + _w(layer.beta, np.float64)
        return _Affine(name, scale=inv.astype(dtype), bias=shift.astype(dtype)), n_features
    if kind == "LayerNormalization":
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        if axis not in (-1, 2, (-1,), (2,)) or getattr(layer, "rms_scaling", False):
            raise NotStepable(f"{name}: only last-axis layer normalisation can step")
        gamma = _w(layer.gamma, dtype) if layer.scale else None
        beta = _w(layer.beta, dtype) if layer.center else None
        return _LayerNorm(name, gamma=gamma, beta=beta, epsilon=float(layer.epsilon)), n_features
    if kind in ("SimpleRNN", "LSTM", "GRU"):
        return _recurrent_op(layer, name, dtype)
    raise NotStepable(f"{name} has no step implementation; serve this model in window mode")


def _param_activation_layer(layer: Any, name: str) -> _Op:
    kind = type(layer).__name__
    if kind == "Softmax":
        return _Elementwise(name, fn=_softmax)
    if kind == "ELU":
        return _ParamAct(name, kind="elu", alpha=float(layer.alpha))
    if kind == "LeakyReLU":
        return _ParamAct(name, kind="leaky_relu", alpha=float(layer.negative_slope))
    max_value = None if layer.max_value is None else float(layer.max_value)
    return _ParamAct(
        name,
        kind="relu",
        alpha=float(layer.negative_slope),
        threshold=float(layer.threshold),
        max_value=max_value,
    )


def _recurrent_op(layer: Any, name: str, dtype: np.dtype) -> tuple[_Op, int]:
    if not layer.return_sequences:
        raise NotStepable(
            f"{name} returns only its last state (a sequence classifier): it emits nothing per step; "
            "use window mode"
        )
    if layer.go_backwards:
        raise NotStepable(f"{name} runs backwards in time; it cannot step causally: use window mode")
    cell = layer.cell
    units = int(cell.units)
    kernel = _w(cell.kernel, dtype)
    recurrent = _w(cell.recurrent_kernel, dtype)
    act = _activation(cell.activation, name)
    kind = type(layer).__name__
    if kind == "SimpleRNN":
        bias = _w(cell.bias, dtype) if cell.use_bias else None
        return _SimpleRNN(name, units, kernel=kernel, recurrent=recurrent, bias=bias, act=act), units
    rec_act = _activation(cell.recurrent_activation, name)
    if kind == "LSTM":
        bias = _w(cell.bias, dtype) if cell.use_bias else None
        op = _LSTM(
            name,
            2 * units,
            units=units,
            kernel=kernel,
            recurrent=recurrent,
            bias=bias,
            act=act,
            rec_act=rec_act,
        )
        return op, units
    input_bias = recurrent_bias = None
    if cell.use_bias:
        bias = _w(cell.bias, dtype)
        if cell.reset_after:
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias = bias
    op = _GRU(
        name,
        units,
        units=units,
        kernel=kernel,
        recurrent=recurrent,
        input_bias=input_bias,
        recurrent_bias=recurrent_bias,
        reset_after=bool(cell.reset_after),
        act=act,
        rec_act=rec_act,
    )
    return op, units


def layer_chain(model: Any) -> list[Any]:
    """The model's layers in order, if they form a single chain input → … → output; else NotStepable."""
    from zoo.backend import keras

    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
    else:
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise NotStepable("the model has several inputs or outputs; only single-chain models can step")
        layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        previous = model.inputs[0]
        for layer in layers:
            nodes = layer._inbound_nodes
            if (
                len(nodes) != 1
                or len(nodes[0].input_tensors) != 1
                or nodes[0].input_tensors[0] is not previous
            ):
                raise NotStepable(
                    f"layer {layer.name!r} is not fed by the one before it (a branching graph); use window mode"
                )
            previous = nodes[0].output_tensors[0]
        if previous is not model.outputs[0]:
            raise NotStepable("the model's output is not its last layer; use window mode")
    flat: list[Any] = []
    for layer in layers:
        # A Sequential nested inside the model (a common way to build heads) is just more chain.
        if isinstance(layer, keras.Sequential):
            flat.extend(layer_chain(layer))
        else:
            flat.append(layer)
    return flat


def ops_from_keras(model: Any, compute_dtype: Any = np.float64) -> tuple[list[_Op], int, int, str]:
    """(ops, n_features, n_outputs, fingerprint) of a causal Keras model, the fingerprint a hash of its weights;
    NotStepable (with the reason) if it is not causal."""
    shape = model.inputs[0].shape if hasattr(model, "inputs") and model.inputs else None
    if shape is None or len(shape) != 3 or shape[-1] is None:
        raise NotStepable(f"the model's input must be [batch, time, features]; got {shape}")
    width = n_features = int(shape[-1])
    ops = []
    for layer in layer_chain(model):
        op, width = _layer_op(layer, width, np.dtype(compute_dtype))
        if type(op) is _Elementwise and op.fn is _identity:
            continue  # identity at inference (dropout, input): no need to spend a call on it
        ops.append(op)
    out_shape = model.outputs[0].shape
    if len(out_shape) != 3:
        raise NotStepable(
            f"the model's output {tuple(out_shape)} has no time axis (a sequence classifier); use window mode"
        )
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight).tobytes())
    return ops, n_features, width, digest.hexdigest()[:16]
