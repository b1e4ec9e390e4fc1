"""The step engine's ops: one per kind of supported Keras layer, each the layer's computation for one time step.

Every op maps a batch of rows ``x [B, in]`` to ``[B, out]``; a recurrent op also takes and returns its slice
of the state row. Each docstring gives the equation Keras computes for the layer (``⊙`` is the element-wise
product, ``W`` the kernel, ``U`` the recurrent kernel, ``b`` the bias, ``act`` / ``rec_act`` the layer's
activation and recurrent activation, `zoo.step.activations`). The ops are plain dataclasses of numpy arrays, so
the step file (`zoo.step.fileformat`) writes their fields as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zoo.step.activations import Array, _identity, _sigmoid


@dataclass
class _Op:
    """One layer's step; ``state_size`` is the width of its slice of the state row (0: no state)."""

    name: str
    state_size: int = 0

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, Array | None]:
        raise NotImplementedError


@dataclass
class _Affine(_Op):
    """Dense: ``y = act(x W + b)``; Rescaling: ``y = x * scale + offset``; BatchNormalization at inference:
    ``y = gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta``, folded into ``x * scale + bias``;
    Normalization(invert=True): ``y = mean + x * max(sqrt(variance), epsilon)``."""

    kernel: Array | None = None
    scale: Array | None = None
    bias: Array | None = None
    act: Callable[[Array], Array] = _identity

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        if self.kernel is not None:
            x = x @ self.kernel
        if self.scale is not None:
            x = x * self.scale
        if self.bias is not None:
            x = x + self.bias
        return self.act(x), None


@dataclass
class _Elementwise(_Op):
    """Activation: ``y = act(x)``; Softmax: ``y = softmax(x)``; the identity at inference (Dropout,
    GaussianNoise, …): ``y = x``."""

    fn: Callable[[Array], Array] = _identity

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        return self.fn(x), None


@dataclass
class _Norm(_Op):
    """Normalization: ``y = (x - mean) / max(sqrt(variance), epsilon)``, ``std`` holding the denominator. Kept in
    this form rather than folded into ``x * a + b``: the fold changes the rounding."""

    mean: Array = None  # type: ignore[assignment]
    std: Array = None  # type: ignore[assignment]

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        return (x - self.mean) / self.std, None


@dataclass
class _ParamAct(_Op):
    """Activation layers with parameters. ReLU: ``y = min(x if x >= threshold else negative_slope (x -
    threshold), max_value)``; ELU: ``y = x if x > 0 else alpha (exp(x) - 1)``; LeakyReLU: ``y = x if x >= 0
    else negative_slope x`` (``alpha`` holds the slope)."""

    kind: str = "relu"
    alpha: float = 0.0
    threshold: float = 0.0
    max_value: float | None = None

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        if self.kind == "elu":
            return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0))), None
        if self.kind == "leaky_relu":
            return np.where(x >= 0, x, self.alpha * x), None
        y = np.where(x >= self.threshold, x, self.alpha * (x - self.threshold))
        return (y if self.max_value is None else np.minimum(y, self.max_value)), None


@dataclass
class _LayerNorm(_Op):
    """LayerNormalization over the last axis: ``y = gamma (x - mean(x)) / sqrt(var(x) + epsilon) + beta``."""

    gamma: Array | None = None
    beta: Array | None = None
    epsilon: float = 1e-3

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        mean = x.mean(axis=-1, keepdims=True)
        var = np.square(x - mean).mean(axis=-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return y, None


@dataclass
class _SimpleRNN(_Op):
    """SimpleRNN: ``h_t = act(x_t W + h_{t-1} U + b)``; the state slice is ``h``, and ``h_t`` is the output."""

    kernel: Array = None  # type: ignore[assignment]
    recurrent: Array = None  # type: ignore[assignment]
    bias: Array | None = None
    act: Callable[[Array], Array] = np.tanh

    def __call__(self, x: Array, h: Array | None) -> tuple[Array, Array]:
        z = x @ self.kernel + h @ self.recurrent
        if self.bias is not None:
            z = z + self.bias
        h = self.act(z)
        return h, h


def _stacked(recurrent: Array, bias: Array | None, kernel: Array, act: Callable[[Array], Array]) -> Array:
    """One gate's weights as one matrix over a `_Gates.inputs` row ``[h | 1 | x]``: ``[U_g; b_g; W_g]``, so the
    gate's whole pre-activation ``h U_g + b_g + x W_g`` is one matmul (no separate passes for the sum and the
    bias). Negated for a sigmoid gate (`_Gates.activate`); negation is exact."""
    b = np.zeros((1, recurrent.shape[1]), dtype=recurrent.dtype) if bias is None else bias[None, :]
    sign = -1.0 if act is _sigmoid else 1.0
    return np.ascontiguousarray(sign * np.vstack([recurrent, b, kernel]))


class _Gates:
    """The gates of a recurrent layer, each ``act(x W_g + h U_g + b_g)`` from its own contiguous matrix
    (`_stacked`). Every array a step touches is then dense: numpy's element-wise passes over dense
    [rows, units] blocks are ~3x faster than over column slices of one fused [rows, 3-4 x units] product
    (measured: a 125-row GRU layer of 64 units 286 -> 172 µs). A sigmoid gate computes ``1 / (1 + exp(-z))``
    from its negated pre-activation: one exp instead of a tanh and three passes. The forms agree to float64
    rounding, far below the float32 rounding the step's result gets once."""

    def __init__(self, units: int, matrices: list[Array], acts: list[Callable[[Array], Array]]):
        self.units = units
        self.matrices = matrices
        self.acts = [None if act is _sigmoid else act for act in acts]

    def inputs(self, x: Array, h: Array) -> Array:
        """The row ``[h | 1 | x]`` every gate's matrix multiplies."""
        u = self.units
        row = np.empty((len(x), u + 1 + x.shape[1]), dtype=np.result_type(x, h))
        row[:, :u] = h
        row[:, u] = 1.0
        row[:, u + 1 :] = x
        return row

    def __call__(self, k: int, row: Array) -> Array:
        """Gate k's activation, a fresh array."""
        return self.activate(row @ self.matrices[k], self.acts[k])

    @staticmethod
    def activate(z: Array, act: Callable[[Array], Array] | None) -> Array:
        if act is not None:
            return act(z)
        with np.errstate(over="ignore"):  # exp(-z) = inf for z << 0: 1 / (1 + inf) = 0, sigmoid's limit
            np.exp(z, out=z)
        z += 1.0
        return np.reciprocal(z, out=z)


def _columns(a: Array | None, k: int, units: int) -> Array | None:
    """Gate k's columns [k u, (k + 1) u) of a fused Keras kernel or bias."""
    if a is None:
        return None
    return a[..., k * units : (k + 1) * units]


@dataclass
class _LSTM(_Op):
    """LSTM, with ``z = x_t W + h_{t-1} U + b`` cut into the gates in the order Keras fuses them (i, f, c, o):
    ``i = rec_act(z_i)``, ``f = rec_act(z_f)``, ``c_t = f ⊙ c_{t-1} + i ⊙ act(z_c)``, ``o = rec_act(z_o)``,
    ``h_t = o ⊙ act(c_t)``. The state slice is ``[h, c]``; ``h_t`` is the output. (Computed gate by gate,
    `_Gates`.)"""

    units: int = 0
    kernel: Array = None  # type: ignore[assignment]
    recurrent: Array = None  # type: ignore[assignment]
    bias: Array | None = None
    act: Callable[[Array], Array] = np.tanh
    rec_act: Callable[[Array], Array] = _sigmoid

    def __post_init__(self) -> None:
        u = self.units
        acts = [self.rec_act, self.rec_act, self.act, self.rec_act]
        self._gates = _Gates(
            u,
            [
                _stacked(
                    _columns(self.recurrent, k, u),
                    _columns(self.bias, k, u),
                    _columns(self.kernel, k, u),
                    act,
                )
                for k, act in enumerate(acts)
            ],
            acts,
        )

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, Array]:
        u = self.units
        h, c = state[:, :u], state[:, u:]
        gates = self._gates
        row = gates.inputs(x, h)
        c = gates(1, row) * c + gates(0, row) * gates(2, row)
        h = gates(3, row) * self.act(c)
        return h, np.concatenate([h, c], axis=1)


@dataclass
class _GRU(_Op):
    """GRU, gates in Keras' order (z, r, h), with ``m_x = x_t W + b_in`` and ``m_h = h_{t-1} U + b_rec``:
    ``z = rec_act(m_x^z + m_h^z)``, ``r = rec_act(m_x^r + m_h^r)``, then with ``reset_after`` (Keras' default)
    ``ĥ = act(m_x^h + r ⊙ m_h^h)``, else ``ĥ = act(m_x^h + (r ⊙ h_{t-1}) U_h)`` (no recurrent bias), and
    ``h_t = z ⊙ h_{t-1} + (1 - z) ⊙ ĥ`` (computed as ``ĥ + z ⊙ (h_{t-1} - ĥ)``). The state slice is ``h``;
    ``h_t`` is the output. (Computed gate by gate, `_Gates`: z and r each one matmul over ``[h | 1 | x]`` with
    both biases summed; with ``reset_after`` the candidate's two parts are matmuls over ``[h | 1]`` and
    ``[1 | x]``, the same row's two ends.)"""

    units: int = 0
    kernel: Array = None  # type: ignore[assignment]
    recurrent: Array = None  # type: ignore[assignment]
    input_bias: Array | None = None
    recurrent_bias: Array | None = None
    reset_after: bool = True
    act: Callable[[Array], Array] = np.tanh
    rec_act: Callable[[Array], Array] = _sigmoid

    def __post_init__(self) -> None:
        u = self.units
        b_in, b_rec = self.input_bias, self.recurrent_bias
        matrices = []
        for k in (0, 1):  # z, r
            parts = [b for b in (_columns(b_in, k, u), _columns(b_rec, k, u)) if b is not None]
            bias = sum(parts[1:], parts[0]) if parts else None
            matrices.append(
                _stacked(_columns(self.recurrent, k, u), bias, _columns(self.kernel, k, u), self.rec_act)
            )
        self._gates = _Gates(u, matrices, [self.rec_act, self.rec_act])
        w_h, u_h = _columns(self.kernel, 2, u), _columns(self.recurrent, 2, u)
        zero = np.zeros((1, u), dtype=self.kernel.dtype)
        b_in_h = zero if b_in is None else _columns(b_in, 2, u)[None, :]
        b_rec_h = zero if b_rec is None else _columns(b_rec, 2, u)[None, :]
        self._x_h = np.ascontiguousarray(np.vstack([b_in_h, w_h]))  # over [1 | x]: x W_h + b_in_h
        # reset_after: over [h | 1], h U_h + b_rec_h; reset_before: U_h alone, over r ⊙ h.
        self._rec_h = np.ascontiguousarray(np.vstack([u_h, b_rec_h]) if self.reset_after else u_h)

    def __call__(self, x: Array, h: Array | None) -> tuple[Array, Array]:
        u = self.units
        gates = self._gates
        row = gates.inputs(x, h)
        r = gates(1, row)
        if self.reset_after:
            n = row[:, : u + 1] @ self._rec_h
            n *= r
        else:
            n = (r * h) @ self._rec_h
        n += row[:, u:] @ self._x_h
        n = np.tanh(n, out=n) if self.act is np.tanh else self.act(n)
        z = gates(0, row)
        h = h - n
        h *= z
        h += n
        return h, h


# Every op type by its class name, as a step file records it.
_OP_TYPES = {
    cls.__name__: cls
    for cls in (_Affine, _Elementwise, _Norm, _ParamAct, _LayerNorm, _SimpleRNN, _LSTM, _GRU)
}
