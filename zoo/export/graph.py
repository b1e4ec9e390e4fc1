"""One step of a `StepModel` written once, over a small set of tensor primitives that each export format provides.

The layer semantics (what an LSTM, a GRU or a normalisation computes in one step) are `zoo.step`'s; this module
walks `StepModel.ops` and states each op in primitives — matmul, add, slice, sigmoid… — so the ONNX emitter
(`zoo.export.onnx_graph`) and the TensorFlow one (`zoo.export.tf_graph`, for SavedModel and LiteRT) only say
how each primitive is spelled in their format. The step keeps `StepModel.step`'s rounding: a recurrent layer's
output is rounded to the I/O dtype (float32, as Keras holds it) before the next layer, and the states leave the
graph in that dtype.

Every primitive used is a LiteRT builtin op when spelled in TensorFlow (no ``SELECT_TF_OPS``): activations with
no builtin (softplus, selu, mish…) are composed from exp, log, abs, min, max and where.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from zoo.step import (
    _ACTIVATION_NAME,
    _GRU,
    _LSTM,
    StepModel,
    _Affine,
    _Elementwise,
    _LayerNorm,
    _Norm,
    _ParamAct,
    _SimpleRNN,
)

T = Any  # a tensor of the format being emitted (an ONNX value name, a tf.Tensor)


class Builder(Protocol):
    """The primitives a format provides; every tensor is ``[B, n]`` in the compute dtype unless said."""

    def const(self, value: np.ndarray | float) -> T: ...
    def matmul(self, a: T, b: T) -> T: ...
    def add(self, a: T, b: T) -> T: ...
    def sub(self, a: T, b: T) -> T: ...
    def mul(self, a: T, b: T) -> T: ...
    def div(self, a: T, b: T) -> T: ...
    def minimum(self, a: T, b: T) -> T: ...
    def maximum(self, a: T, b: T) -> T: ...
    def unary(self, fn: str, x: T) -> T:
        """fn: tanh, sigmoid, relu, exp, log, abs, sqrt, softmax, log_softmax (the last two over the last axis)."""
        ...

    def where_greater(self, x: T, threshold: float, a: T, b: T, or_equal: bool) -> T:
        """a where x > threshold (x >= threshold with or_equal), else b."""
        ...

    def cols(self, x: T, start: int, stop: int) -> T: ...
    def mean_cols(self, x: T) -> T:
        """Mean over the last axis, kept as ``[B, 1]``."""
        ...

    def round_io(self, x: T) -> T:
        """x rounded to the I/O dtype and back (identity when the compute dtype is the I/O dtype)."""
        ...


@dataclass(frozen=True)
class StateSlot:
    """One state tensor of the exported step: its name (``layer0_h``), width and the op that owns it."""

    name: str
    width: int
    op_index: int


def state_slots(step_model: StepModel) -> list[StateSlot]:
    """The step's state tensors in `StepModel` state-row order, named as `zoo.step.state_spec` names them:
    ``layer<i>_h`` (and ``layer<i>_c`` for an LSTM), i counting recurrent layers only."""
    slots = []
    layer = 0
    for i, op in enumerate(step_model.ops):
        if isinstance(op, _LSTM):
            slots += [StateSlot(f"layer{layer}_h", op.units, i), StateSlot(f"layer{layer}_c", op.units, i)]
        elif isinstance(op, _GRU | _SimpleRNN):
            slots.append(StateSlot(f"layer{layer}_h", op.state_size, i))
        else:
            continue
        layer += 1
    return slots


# ----------------------------------------------------------------------------------------------------------
# Activations, as zoo.step defines them (which follows Keras).


def _elu_like(b: Builder, x: T, alpha: float) -> T:
    """x where x > 0, else alpha * (exp(x) - 1); exp of min(x, 0) so the unused branch never overflows."""
    neg = b.sub(b.unary("exp", b.minimum(x, b.const(0.0))), b.const(1.0))
    if alpha != 1.0:
        neg = b.mul(b.const(alpha), neg)
    return b.where_greater(x, 0.0, x, neg, or_equal=False)


def _softplus(b: Builder, x: T) -> T:
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow for large |x|.
    tail = b.unary("log", b.add(b.const(1.0), b.unary("exp", b.sub(b.const(0.0), b.unary("abs", x)))))
    return b.add(b.maximum(x, b.const(0.0)), tail)


def _hard_sigmoid(b: Builder, x: T) -> T:
    clipped = b.minimum(b.maximum(b.add(x, b.const(3.0)), b.const(0.0)), b.const(6.0))
    return b.div(clipped, b.const(6.0))


def activation(b: Builder, name: str, x: T) -> T:
    """Keras activation ``name`` applied to x, in the builder's primitives."""
    if name == "linear":
        return x
    if name in ("tanh", "sigmoid", "relu", "softmax", "log_softmax"):
        return b.unary(name, x)
    if name == "exponential":
        return b.unary("exp", x)
    if name == "relu6":
        return b.minimum(b.unary("relu", x), b.const(6.0))
    if name == "hard_sigmoid":
        return _hard_sigmoid(b, x)
    if name in ("hard_silu", "hard_swish"):
        return b.mul(x, _hard_sigmoid(b, x))
    if name == "elu":
        return _elu_like(b, x, 1.0)
    if name == "selu":
        return b.mul(b.const(1.05070098), _elu_like(b, x, 1.67326324))
    if name == "softplus":
        return _softplus(b, x)
    if name == "softsign":
        return b.div(x, b.add(b.const(1.0), b.unary("abs", x)))
    if name in ("silu", "swish"):
        return b.mul(x, b.unary("sigmoid", x))
    if name == "mish":
        return b.mul(x, b.unary("tanh", _softplus(b, x)))
    raise ValueError(f"activation {name!r} has no exported form")


def _act(b: Builder, fn: Any, x: T) -> T:
    return activation(b, _ACTIVATION_NAME[id(fn)], x)


# ----------------------------------------------------------------------------------------------------------
# Ops.


def _affine(b: Builder, op: _Affine, x: T) -> T:
    if op.kernel is not None:
        x = b.matmul(x, b.const(op.kernel))
    if op.scale is not None:
        x = b.mul(x, b.const(op.scale))
    if op.bias is not None:
        x = b.add(x, b.const(op.bias))
    return _act(b, op.act, x)


def _param_act(b: Builder, op: _ParamAct, x: T) -> T:
    if op.kind == "elu":
        return _elu_like(b, x, op.alpha)
    if op.kind == "leaky_relu":
        return b.where_greater(x, 0.0, x, b.mul(b.const(op.alpha), x), or_equal=True)
    below = b.mul(b.const(op.alpha), b.sub(x, b.const(op.threshold)))
    y = b.where_greater(x, op.threshold, x, below, or_equal=True)
    return y if op.max_value is None else b.minimum(y, b.const(op.max_value))


def _layer_norm(b: Builder, op: _LayerNorm, x: T) -> T:
    centred = b.sub(x, b.mean_cols(x))
    var = b.mean_cols(b.mul(centred, centred))
    y = b.div(centred, b.unary("sqrt", b.add(var, b.const(op.epsilon))))
    if op.gamma is not None:
        y = b.mul(y, b.const(op.gamma))
    if op.beta is not None:
        y = b.add(y, b.const(op.beta))
    return y


def _simple_rnn(b: Builder, op: _SimpleRNN, x: T, h: T) -> tuple[T, list[T]]:
    z = b.add(b.matmul(x, b.const(op.kernel)), b.matmul(h, b.const(op.recurrent)))
    if op.bias is not None:
        z = b.add(z, b.const(op.bias))
    h = _act(b, op.act, z)
    return h, [h]


def _lstm(b: Builder, op: _LSTM, x: T, h: T, c: T) -> tuple[T, list[T]]:
    u = op.units
    z = b.add(b.matmul(x, b.const(op.kernel)), b.matmul(h, b.const(op.recurrent)))
    if op.bias is not None:
        z = b.add(z, b.const(op.bias))
    i = _act(b, op.rec_act, b.cols(z, 0, u))
    f = _act(b, op.rec_act, b.cols(z, u, 2 * u))
    c = b.add(b.mul(f, c), b.mul(i, _act(b, op.act, b.cols(z, 2 * u, 3 * u))))
    o = _act(b, op.rec_act, b.cols(z, 3 * u, 4 * u))
    h = b.mul(o, _act(b, op.act, c))
    return h, [h, c]


def _gru(b: Builder, op: _GRU, x: T, h: T) -> tuple[T, list[T]]:
    u = op.units
    mx = b.matmul(x, b.const(op.kernel))
    if op.input_bias is not None:
        mx = b.add(mx, b.const(op.input_bias))
    if op.reset_after:
        mh = b.matmul(h, b.const(op.recurrent))
        if op.recurrent_bias is not None:
            mh = b.add(mh, b.const(op.recurrent_bias))
        z = _act(b, op.rec_act, b.add(b.cols(mx, 0, u), b.cols(mh, 0, u)))
        r = _act(b, op.rec_act, b.add(b.cols(mx, u, 2 * u), b.cols(mh, u, 2 * u)))
        hh = _act(b, op.act, b.add(b.cols(mx, 2 * u, 3 * u), b.mul(r, b.cols(mh, 2 * u, 3 * u))))
    else:
        mh = b.matmul(h, b.const(np.ascontiguousarray(op.recurrent[:, : 2 * u])))
        z = _act(b, op.rec_act, b.add(b.cols(mx, 0, u), b.cols(mh, 0, u)))
        r = _act(b, op.rec_act, b.add(b.cols(mx, u, 2 * u), b.cols(mh, u, 2 * u)))
        rec_h = b.const(np.ascontiguousarray(op.recurrent[:, 2 * u :]))
        hh = _act(b, op.act, b.add(b.cols(mx, 2 * u, 3 * u), b.matmul(b.mul(r, h), rec_h)))
    h = b.add(b.mul(z, h), b.mul(b.sub(b.const(1.0), z), hh))
    return h, [h]


def emit_step(b: Builder, step_model: StepModel, x: T, states: list[T]) -> tuple[T, list[T]]:
    """One step of ``step_model`` in ``b``'s primitives: (x, states in `state_slots` order) → (y, new states).
    Inputs and outputs are in the compute dtype; the emitter casts at the graph's edges."""
    slots = state_slots(step_model)
    by_op: dict[int, list[T]] = {}
    for slot, tensor in zip(slots, states, strict=True):
        by_op.setdefault(slot.op_index, []).append(tensor)
    new_states: list[T] = []
    for i, op in enumerate(step_model.ops):
        if isinstance(op, _Affine):
            x = _affine(b, op, x)
        elif isinstance(op, _Norm):
            x = b.div(b.sub(x, b.const(op.mean)), b.const(op.std))
        elif isinstance(op, _Elementwise):
            x = _act(b, op.fn, x)
        elif isinstance(op, _ParamAct):
            x = _param_act(b, op, x)
        elif isinstance(op, _LayerNorm):
            x = _layer_norm(b, op, x)
        else:
            if isinstance(op, _SimpleRNN):
                x, out = _simple_rnn(b, op, x, *by_op[i])
            elif isinstance(op, _LSTM):
                x, out = _lstm(b, op, x, *by_op[i])
            elif isinstance(op, _GRU):
                x, out = _gru(b, op, x, *by_op[i])
            else:
                raise ValueError(f"{op.name}: no exported form for {type(op).__name__}")
            new_states += out
            # The next layer sees this layer's output as Keras holds it (StepModel.step does the same).
            x = b.round_io(x)
    return x, new_states
