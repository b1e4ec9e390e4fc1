"""The activations of the step engine, in numpy, each written to match Keras' definition
(keras/src/activations/activations.py) and keyed by the name Keras serialises it under — the name the step file
(`zoo.step.fileformat`) stores."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray


def _identity(x: Array) -> Array:
    return x


def _sigmoid(x: Array) -> Array:
    """sigmoid(x) = 1 / (1 + exp(-x)), in the tanh form 0.5 (tanh(x / 2) + 1): no overflow warnings for large
    |x| and as exact as the exp form in float32."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _softmax(x: Array) -> Array:
    """softmax(x)_k = exp(x_k - max x) / sum_j exp(x_j - max x), over the last axis."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x: Array) -> Array:
    """log_softmax(x)_k = (x_k - max x) - log sum_j exp(x_j - max x), over the last axis."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _elu(x: Array) -> Array:
    """elu(x) = x if x > 0 else exp(x) - 1."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _selu(x: Array) -> Array:
    """selu(x) = scale * (x if x > 0 else alpha (exp(x) - 1)), Keras' alpha and scale."""
    alpha, scale = 1.67326324, 1.05070098
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _softplus(x: Array) -> Array:
    """softplus(x) = log(exp(x) + 1)."""
    return np.logaddexp(x, 0).astype(x.dtype)


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "linear": _identity,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0, 6) / 6.0,
    "hard_silu": lambda x: x * (np.clip(x + 3.0, 0, 6) / 6.0),
    "hard_swish": lambda x: x * (np.clip(x + 3.0, 0, 6) / 6.0),
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "elu": _elu,
    "selu": _selu,
    "softplus": _softplus,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(_softplus(x)),
}
# The name of each function above, for writing an op's activation into a step file.
_ACTIVATION_NAME = {id(fn): name for name, fn in _ACTIVATIONS.items()}
