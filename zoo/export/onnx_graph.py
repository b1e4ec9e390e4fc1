"""A `StepModel` as an ONNX graph, written node by node with ``onnx.helper`` from the numpy weights.

Inputs ``x [B, F]`` and one ``[B, units]`` tensor per recurrent state (``layer0_h``, ``layer0_c``…), outputs
``y [B, K]`` and the new states (``layer0_h_out``…), all float32 with a dynamic batch axis. The arithmetic
inside is ``compute_dtype``: float64 (the default) keeps the ≤ 1e-5 contract with Keras that `StepModel`
keeps; float32 runs faster but drifts further on long sequences (the card records both measurements).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.export.graph import emit_step, state_slots
from zoo.step import StepModel

OPSET = 17  # LayerNormalization-era opset, supported by every onnxruntime since 1.14


class _OnnxBuilder:
    def __init__(self, compute_dtype: np.dtype):
        from onnx import TensorProto

        self.dtype = np.dtype(compute_dtype)
        self.elem = TensorProto.DOUBLE if self.dtype == np.float64 else TensorProto.FLOAT
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0
        self._consts: dict[tuple, str] = {}

    def _fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = output or self._fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, value: np.ndarray | float, dtype: Any = None) -> str:
        from onnx import numpy_helper

        array = np.asarray(value, dtype=dtype or self.dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:  # scalars (1.0, 0.0, slice bounds) are shared, not repeated
            name = self._fresh("w" if array.ndim else "c")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def matmul(self, a: str, b: str) -> str:
        return self.node("MatMul", [a, b])

    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b])

    def sub(self, a: str, b: str) -> str:
        return self.node("Sub", [a, b])

    def mul(self, a: str, b: str) -> str:
        return self.node("Mul", [a, b])

    def div(self, a: str, b: str) -> str:
        return self.node("Div", [a, b])

    def minimum(self, a: str, b: str) -> str:
        return self.node("Min", [a, b])

    def maximum(self, a: str, b: str) -> str:
        return self.node("Max", [a, b])

    def unary(self, fn: str, x: str) -> str:
        if fn in ("softmax", "log_softmax"):
            return self.node("Softmax" if fn == "softmax" else "LogSoftmax", [x], axis=-1)
        op = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "exp": "Exp", "log": "Log"}
        op |= {"abs": "Abs", "sqrt": "Sqrt"}
        return self.node(op[fn], [x])

    def where_greater(self, x: str, threshold: float, a: str, b: str, or_equal: bool) -> str:
        cond = self.node("GreaterOrEqual" if or_equal else "Greater", [x, self.const(threshold)])
        return self.node("Where", [cond, a, b])

    def cols(self, x: str, start: int, stop: int) -> str:
        i64 = np.int64
        bounds = [self.const([start], i64), self.const([stop], i64), self.const([1], i64)]
        return self.node("Slice", [x, *bounds])

    def mean_cols(self, x: str) -> str:
        return self.node("ReduceMean", [x], axes=[-1], keepdims=1)

    def cast(self, x: str, elem: int, output: str | None = None) -> str:
        return self.node("Cast", [x], output, to=elem)

    def round_io(self, x: str) -> str:
        from onnx import TensorProto

        if self.elem == TensorProto.FLOAT:
            return x
        return self.cast(self.cast(x, TensorProto.FLOAT), self.elem)


def build_onnx(step_model: StepModel, compute_dtype: Any = np.float64, doc: str = "") -> Any:
    """The ``onnx.ModelProto`` of one step of ``step_model`` (checked with ``onnx.checker``)."""
    import onnx
    from onnx import TensorProto, helper

    b = _OnnxBuilder(np.dtype(compute_dtype))
    slots = state_slots(step_model)
    io = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", io, ["batch", step_model.n_features])]
    inputs += [helper.make_tensor_value_info(s.name, io, ["batch", s.width]) for s in slots]
    outputs = [helper.make_tensor_value_info("y", io, ["batch", step_model.n_outputs])]
    outputs += [helper.make_tensor_value_info(f"{s.name}_out", io, ["batch", s.width]) for s in slots]

    def inward(name: str) -> str:
        return name if b.elem == io else b.cast(name, b.elem)

    y, new_states = emit_step(b, step_model, inward("x"), [inward(s.name) for s in slots])
    for value, info in zip([y, *new_states], outputs, strict=True):
        b.cast(value, io, output=info.name)  # a Cast to the same type is a copy: it names the output
    graph = helper.make_graph(b.nodes, "rnnzoo_step", inputs, outputs, b.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="rnn-zoo",
        doc_string=doc,
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(step_model: StepModel, path: Path, compute_dtype: Any = np.float64, doc: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_onnx(step_model, compute_dtype, doc).SerializeToString())
    return path
