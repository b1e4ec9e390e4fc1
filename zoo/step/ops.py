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


@dataclass
class _LSTM(_Op):
    """LSTM, with ``z = x_t W + h_{t-1} U + b`` cut into the gates in the order Keras fuses them (i, f, c, o):
    ``i = rec_act(z_i)``, ``f = rec_act(z_f)``, ``c_t = f ⊙ c_{t-1} + i ⊙ act(z_c)``, ``o = rec_act(z_o)``,
    ``h_t = o ⊙ act(c_t)``. The state slice is ``[h, c]``; ``h_t`` is the output."""

    units: int = 0
    kernel: Array = None  # type: ignore[assignment]
    recurrent: Array = None  # type: ignore[assignment]
    bias: Array | None = None
    act: Callable[[Array], Array] = np.tanh
    rec_act: Callable[[Array], Array] = _sigmoid

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, Array]:
        u = self.units
        h, c = state[:, :u], state[:, u:]
        z = x @ self.kernel + h @ self.recurrent
        if self.bias is not None:
            z = z + self.bias
        i = self.rec_act(z[:, :u])
        f = self.rec_act(z[:, u : 2 * u])
        c = f * c + i * self.act(z[:, 2 * u : 3 * u])
        o = self.rec_act(z[:, 3 * u :])
        h = o * self.act(c)
        return h, np.concatenate([h, c], axis=1)


@dataclass
class _GRU(_Op):
    """GRU, gates in Keras' order (z, r, h), with ``m_x = x_t W + b_in`` and ``m_h = h_{t-1} U + b_rec``:
    ``z = rec_act(m_x^z + m_h^z)``, ``r = rec_act(m_x^r + m_h^r)``, then with ``reset_after`` (Keras' default)
    ``ĥ = act(m_x^h + r ⊙ m_h^h)``, else ``ĥ = act(m_x^h + (r ⊙ h_{t-1}) U_h)`` (no recurrent bias), and
    ``h_t = z ⊙ h_{t-1} + (1 - z) ⊙ ĥ``. The state slice is ``h``; ``h_t`` is the output."""

    units: int = 0
    kernel: Array = None  # type: ignore[assignment]
    recurrent: Array = None  # type: ignore[assignment]
    input_bias: Array | None = None
    recurrent_bias: Array | None = None
    reset_after: bool = True
    act: Callable[[Array], Array] = np.tanh
    rec_act: Callable[[Array], Array] = _sigmoid

    def __post_init__(self) -> None:
        # Contiguous copies of the two halves used by reset_before, so each step's matmul runs on dense memory.
        u = self.units
        self._rec_zr = np.ascontiguousarray(self.recurrent[:, : 2 * u])
        self._rec_h = np.ascontiguousarray(self.recurrent[:, 2 * u :])

    def __call__(self, x: Array, h: Array | None) -> tuple[Array, Array]:
        u = self.units
        mx = x @ self.kernel
        if self.input_bias is not None:
            mx = mx + self.input_bias
        if self.reset_after:
            mh = h @ self.recurrent
            if self.recurrent_bias is not None:
                mh = mh + self.recurrent_bias
            z = self.rec_act(mx[:, :u] + mh[:, :u])
            r = self.rec_act(mx[:, u : 2 * u] + mh[:, u : 2 * u])
            hh = self.act(mx[:, 2 * u :] + r * mh[:, 2 * u :])
        else:
            mh = h @ self._rec_zr
            z = self.rec_act(mx[:, :u] + mh[:, :u])
            r = self.rec_act(mx[:, u : 2 * u] + mh[:, u:])
            hh = self.act(mx[:, 2 * u :] + (r * h) @ self._rec_h)
        h = z * h + (1.0 - z) * hh
        return h, h


# Every op type by its class name, as a step file records it.
_OP_TYPES = {
    cls.__name__: cls
    for cls in (_Affine, _Elementwise, _Norm, _ParamAct, _LayerNorm, _SimpleRNN, _LSTM, _GRU)
}
