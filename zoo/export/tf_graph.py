"""A `StepModel` as a TensorFlow ``tf.function``: saved as a SavedModel, or converted to LiteRT with builtin ops only.

The function's signature ``step`` takes ``x [B, F]`` and one ``[B, units]`` tensor per recurrent state
(``layer0_h``…) and returns ``{"y", "layer0_h_out", …}``, all float32 with a dynamic batch axis. The weights are
graph constants taken from the step engine's numpy arrays, so the graph is the engine's arithmetic, not a Keras
layer's (a Keras LSTM converts to a LiteRT ``WHILE`` loop with Flex ops; this one is a handful of
FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD / STRIDED_SLICE ops per layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.export.graph import emit_step, state_slots
from zoo.step import StepModel

SIGNATURE = "step"


class _TfBuilder:
    def __init__(self, compute_dtype: np.dtype):
        import tensorflow as tf

        self.tf = tf
        self.dtype = np.dtype(compute_dtype)
        self.tf_dtype = tf.as_dtype(self.dtype)

    def const(self, value: np.ndarray | float) -> Any:
        return self.tf.constant(np.asarray(value, dtype=self.dtype))

    def matmul(self, a: Any, b: Any) -> Any:
        return self.tf.matmul(a, b)

    def add(self, a: Any, b: Any) -> Any:
        return self.tf.add(a, b)

    def sub(self, a: Any, b: Any) -> Any:
        return self.tf.subtract(a, b)

    def mul(self, a: Any, b: Any) -> Any:
        return self.tf.multiply(a, b)

    def div(self, a: Any, b: Any) -> Any:
        return self.tf.divide(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return self.tf.minimum(a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        return self.tf.maximum(a, b)

    def unary(self, fn: str, x: Any) -> Any:
        tf = self.tf
        ops = {
            "tanh": tf.math.tanh,
            "sigmoid": tf.math.sigmoid,
            "relu": tf.nn.relu,
            "exp": tf.math.exp,
            "log": tf.math.log,
            "abs": tf.math.abs,
            "sqrt": tf.math.sqrt,
            "softmax": tf.nn.softmax,
            "log_softmax": tf.nn.log_softmax,
        }
        return ops[fn](x)

    def where_greater(self, x: Any, threshold: float, a: Any, b: Any, or_equal: bool) -> Any:
        t = self.const(threshold)
        cond = self.tf.greater_equal(x, t) if or_equal else self.tf.greater(x, t)
        return self.tf.where(cond, a, b)

    def cols(self, x: Any, start: int, stop: int) -> Any:
        return x[:, start:stop]

    def mean_cols(self, x: Any) -> Any:
        return self.tf.reduce_mean(x, axis=-1, keepdims=True)

    def round_io(self, x: Any) -> Any:
        if self.dtype == np.float32:
            return x
        return self.tf.cast(self.tf.cast(x, self.tf.float32), self.tf_dtype)


def step_function(step_model: StepModel, compute_dtype: Any = np.float64) -> Any:
    """A ``tf.function`` with one concrete signature: (x, *states) → {"y", "<state>_out"…}, float32 I/O."""
    import tensorflow as tf

    b = _TfBuilder(np.dtype(compute_dtype))
    slots = state_slots(step_model)
    spec = [tf.TensorSpec([None, step_model.n_features], tf.float32, name="x")]
    spec += [tf.TensorSpec([None, s.width], tf.float32, name=s.name) for s in slots]

    def step(x: Any, *states: Any) -> dict[str, Any]:
        inward = [tf.cast(t, b.tf_dtype) for t in (x, *states)]
        y, new_states = emit_step(b, step_model, inward[0], inward[1:])
        out = {"y": tf.cast(y, tf.float32)}
        out |= {f"{s.name}_out": tf.cast(v, tf.float32) for s, v in zip(slots, new_states, strict=True)}
        return out

    return tf.function(step, input_signature=spec, autograph=False)


def write_savedmodel(step_model: StepModel, folder: Path, compute_dtype: Any = np.float64) -> Path:
    """A SavedModel folder whose ``serving_default`` and ``step`` signatures are one step of the model."""
    import tensorflow as tf

    module = tf.Module()
    module.step = step_function(step_model, compute_dtype)
    concrete = module.step.get_concrete_function()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": concrete, SIGNATURE: concrete})
    return folder


QUANTIZATIONS = ("dynamic", "int8")
QUANTIZATION_NOTES = {
    "dynamic": "dynamic-range: weights stored as int8 (per channel), activations and states float32; "
    "FULLY_CONNECTED quantises its input on the fly",
    "int8": "full-integer: int8 weights and activations inside (TFLITE_BUILTINS_INT8), scales calibrated on "
    "training-split steps; float32 inputs, outputs and states (QUANTIZE/DEQUANTIZE at the edges)",
}


def litert_bytes(
    step_model: StepModel,
    quantize: str | None = None,
    representative: Callable[[], Iterator[dict[str, np.ndarray]]] | None = None,
) -> bytes:
    """The LiteRT flatbuffer of one step, float32 throughout (LiteRT builtins have no float64), converted
    with ``TFLITE_BUILTINS`` only: a graph that needed a TensorFlow (Flex) op fails to convert.

    ``quantize``: ``"dynamic"`` (int8 weights, float activations) or ``"int8"`` (full-integer inside, scales
    calibrated on ``representative``: a callable yielding ``{"x": [1, F], "<state>": [1, width]…}`` samples,
    drawn from training data); inputs, outputs and states stay float32 either way."""
    import tensorflow as tf

    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} (got {quantize!r})")
    module = tf.Module()
    module.step = step_function(step_model, np.float32)
    concrete = module.step.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        if representative is None:
            raise ValueError("int8 quantisation needs a representative dataset")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def write_litert(
    step_model: StepModel,
    path: Path,
    quantize: str | None = None,
    representative: Callable[[], Iterator[dict[str, np.ndarray]]] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(litert_bytes(step_model, quantize, representative))
    return path


def litert_ops(model_bytes: bytes) -> list[str]:
    """The op names of a LiteRT flatbuffer, read by the interpreter; a Flex (TF) op shows as ``FlexXxx`` /
    ``DELEGATE``/``CUSTOM``."""
    interpreter = _litert_interpreter(model_content=model_bytes)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def _litert_interpreter(**kwargs: Any) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own copy of the interpreter
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(**kwargs)
