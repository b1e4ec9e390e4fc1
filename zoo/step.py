"""StepModel: a causal Keras recurrent model turned into a batched numpy step with explicit state.

`outputs, state = model.step(x, state)` advances a whole batch of devices by one reading each:
`x` is `[B, F]` raw readings, `state` is `[B, S]` (every recurrent layer's state concatenated), and
`outputs` is `[B, K]`, the row the Keras model would emit at that time step. Serving needs numpy only:
weights are copied out of the Keras layers once, at build time.

Example:
    >>> step_model = StepModel.from_keras(keras_model)
    >>> state = step_model.initial_state(batch=3)
    >>> for x_t in readings:                     # x_t: [3, F]
    ...     y_t, state = step_model.step(x_t, state)

Non-causal models (bidirectional layers, recurrent layers that only return their last state,
reversed recurrences, branching graphs) raise `NotStepable`; serve those with `WindowModel`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zoo.cards import StateSpec

Array = np.ndarray

# Keras' default fuzz factor: Normalization divides by max(sqrt(variance), epsilon).
_KERAS_EPSILON = 1e-7


def _identity(x: Array) -> Array:
    return x


STEP_ROWS = 128  # rows one numpy pass of StepModel.step takes at most (see there)
STEP_FORMAT = "rnnzoo-step/1"  # the .npz a StepModel is saved as; bump when its contents change


class NotStepable(ValueError):
    """The model cannot be advanced one reading at a time; the message says why and what to do."""


def one_blas_thread() -> None:
    """Limit this process's BLAS to one thread, for a long-running stepper (the MQTT service, a JetStream
    worker). A step's matmuls are small ([a few hundred rows, 64] @ [64, 192]), and a second BLAS thread
    fighting the broker and the network for the cores made them far slower in measurement: a 512-row step 7x
    in the MQTT service, a 125-row GRU step of activity-gru-causal 30x (22 ms instead of 0.7) on a loaded
    2-core machine."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


# ----------------------------------------------------------------------------------------------------------
# Activations, written to match Keras' definitions (keras/src/activations/activations.py).


def _sigmoid(x: Array) -> Array:
    # tanh form: no overflow warnings for large |x| and as exact as the exp form in float32.
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x: Array) -> Array:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _elu(x: Array) -> Array:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _selu(x: Array) -> Array:
    alpha, scale = 1.67326324, 1.05070098
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _softplus(x: Array) -> Array:
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


def _activation(fn: Any, where: str) -> Callable[[Array], Array]:
    from zoo.backend import keras

    name = fn if isinstance(fn, str) else keras.activations.serialize(fn)
    if isinstance(name, dict):  # Keras serialises some callables as {"config": ..., ...}
        name = name.get("config", name.get("class_name"))
    if name not in _ACTIVATIONS:
        raise NotStepable(f"{where}: activation {name!r} has no numpy step; use window mode")
    return _ACTIVATIONS[name]


# ----------------------------------------------------------------------------------------------------------
# Ops: one per supported layer. Each maps [B, in] → [B, out]; recurrent ones also own a slice of the state.


@dataclass
class _Op:
    name: str
    state_size: int = 0

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, Array | None]:
        raise NotImplementedError


@dataclass
class _Affine(_Op):
    """Dense, Normalization, Rescaling, BatchNormalization: y = act(x @ W + b) or y = act(x * scale + b)."""

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
    fn: Callable[[Array], Array] = _identity

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        return self.fn(x), None


@dataclass
class _Norm(_Op):
    mean: Array = None  # type: ignore[assignment]
    std: Array = None  # type: ignore[assignment]

    def __call__(self, x: Array, state: Array | None) -> tuple[Array, None]:
        return (x - self.mean) / self.std, None


@dataclass
class _ParamAct(_Op):
    """Activation layers with parameters: ReLU(max_value, negative_slope, threshold), ELU, LeakyReLU."""

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
    """State slice is [h, c]; gate order in the fused kernels is i, f, c, o (as Keras stores them)."""

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
    """Gate order z, r, h. `reset_after` decides whether r multiplies h before or after the recurrent matmul."""

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


_OP_TYPES = {
    cls.__name__: cls
    for cls in (_Affine, _Elementwise, _Norm, _ParamAct, _LayerNorm, _SimpleRNN, _LSTM, _GRU)
}
_ACTIVATION_NAME = {id(fn): name for name, fn in _ACTIVATIONS.items()}

# ----------------------------------------------------------------------------------------------------------
# Keras layer → op.

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


class Stepper:
    """What every step engine shares (the numpy `StepModel`, an exported graph's `zoo.export.StepEngine`):
    ``advance`` and ``run`` built on the engine's own ``initial_state`` and ``step``."""

    mode = "step"
    dtype: np.dtype

    def initial_state(self, batch: int) -> Array:
        raise NotImplementedError

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def advance(self, x: Array, state: Array, steps: Array) -> tuple[Array, Array]:
        """The engine-facing call shared with WindowModel; a step engine does not need the step counts."""
        return self.step(x, state)

    def run(self, sequences: Array) -> Array:
        """Step whole sequences [B, T, F] from zero state → [B, T, K]; the offline reference in tests."""
        sequences = np.asarray(sequences, dtype=self.dtype)
        state = self.initial_state(sequences.shape[0])
        outs = []
        for t in range(sequences.shape[1]):
            y, state = self.step(sequences[:, t], state)
            outs.append(y)
        return np.stack(outs, axis=1)


class StepModel(Stepper):
    """A causal recurrent model advanced one reading at a time, for a batch of devices, in numpy.

    Args:
        ops: the per-layer step functions, in order (built by `from_keras`).
        n_features: F, the width of one reading.
        n_outputs: K, the width of one output row.
        dtype: the dtype of inputs, outputs and state (float32, as Keras keeps them).
        compute_dtype: the dtype of the arithmetic inside one step. float64 (the default) rounds each step's
            result to float32 once, as exact arithmetic would; float32 arithmetic is ~1.7x faster per batch
            but, on models whose recurrence amplifies rounding, drifts past 1e-5 from Keras within tens of steps.
        fingerprint: a hash of the weights, so a state snapshot is never restored into another model.
    """

    def __init__(
        self,
        ops: Sequence[_Op],
        n_features: int,
        n_outputs: int,
        fingerprint: str,
        dtype: Any = np.float32,
        compute_dtype: Any = np.float64,
    ):
        self.ops = list(ops)
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.dtype = np.dtype(dtype)
        self.compute_dtype = np.dtype(compute_dtype)
        self.fingerprint = fingerprint
        self.state_size = sum(op.state_size for op in self.ops)
        # Precomputed state slices, so step() does no bookkeeping per call.
        self._slices: list[slice | None] = []
        offset = 0
        for op in self.ops:
            if op.state_size:
                self._slices.append(slice(offset, offset + op.state_size))
                offset += op.state_size
            else:
                self._slices.append(None)

    @classmethod
    def from_keras(cls, model: Any, compute_dtype: Any = np.float64) -> StepModel:
        """Read the weights of a causal Keras model; raise NotStepable (with the reason) if it is not causal."""
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
                f"the model's output {tuple(out_shape)} has no time axis (a sequence classifier); "
                "use window mode"
            )
        digest = hashlib.sha256()
        for weight in model.weights:
            digest.update(np.asarray(weight).tobytes())
        return cls(ops, n_features, width, digest.hexdigest()[:16], compute_dtype=compute_dtype)

    def save(self, path: str | os.PathLike) -> None:
        """Write the step model to an .npz (weights + a JSON description), loadable without Keras or TF."""
        meta: dict[str, Any] = {
            "format": STEP_FORMAT,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "fingerprint": self.fingerprint,
            "dtype": self.dtype.name,
            "compute_dtype": self.compute_dtype.name,
            "ops": [],
        }
        arrays: dict[str, Array] = {}
        for i, op in enumerate(self.ops):
            fields: dict[str, Any] = {}
            for f in dataclasses.fields(op):
                value = getattr(op, f.name)
                if isinstance(value, np.ndarray):
                    arrays[f"op{i}.{f.name}"] = value
                    fields[f.name] = {"array": f"op{i}.{f.name}"}
                elif callable(value):
                    fields[f.name] = {"activation": _ACTIVATION_NAME[id(value)]}
                else:
                    fields[f.name] = {"value": value}
            meta["ops"].append({"type": type(op).__name__, "fields": fields})
        with open(path, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> StepModel:
        """Read a file written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != STEP_FORMAT:
                raise ValueError(f"{os.fspath(path)!r} is not an rnnzoo step model")
            ops = []
            for entry in meta["ops"]:
                kwargs = {}
                for name, spec in entry["fields"].items():
                    if "array" in spec:
                        kwargs[name] = data[spec["array"]]
                    elif "activation" in spec:
                        kwargs[name] = _ACTIVATIONS[spec["activation"]]
                    else:
                        kwargs[name] = spec["value"]
                ops.append(_OP_TYPES[entry["type"]](**kwargs))
        return cls(
            ops,
            meta["n_features"],
            meta["n_outputs"],
            meta["fingerprint"],
            dtype=meta["dtype"],
            compute_dtype=meta["compute_dtype"],
        )

    def initial_state(self, batch: int) -> Array:
        """The state of a device that has seen nothing: zeros, as Keras starts its recurrences."""
        return np.zeros((batch, self.state_size), dtype=self.dtype)

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        """Advance every row one reading: x [B, F], state [B, S] → (outputs [B, K], new state [B, S])."""
        if len(x) > STEP_ROWS:
            # In slices: glibc hands a freed block over ~128 KB straight back to the OS, and a step's float64
            # temporaries ([rows, 3 × units]) pass that size from ~100 rows, so a bigger step paid page faults
            # for each of them on every call (a 1024-row step of activity-gru-causal: 9.7 µs a row; in 128-row
            # slices 3.1). Every op works row by row, so slicing changes no row's arithmetic.
            parts = [
                self._step_rows(x[i : i + STEP_ROWS], state[i : i + STEP_ROWS])
                for i in range(0, len(x), STEP_ROWS)
            ]
            return np.concatenate([y for y, _ in parts]), np.concatenate([s for _, s in parts])
        return self._step_rows(x, state)

    def _step_rows(self, x: Array, state: Array) -> tuple[Array, Array]:
        x = np.asarray(x, dtype=self.compute_dtype)
        state = np.asarray(state, dtype=self.compute_dtype)
        new_state = np.empty(state.shape, dtype=self.dtype)
        for op, sl in zip(self.ops, self._slices, strict=True):
            if sl is None:
                x, _ = op(x, None)
            else:
                x, layer_state = op(x, state[:, sl])
                new_state[:, sl] = layer_state
                # The next layer must see this layer's output as Keras holds it: rounded to float32.
                x = x.astype(self.dtype).astype(self.compute_dtype)
        return x.astype(self.dtype), new_state


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
