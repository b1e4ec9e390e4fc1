"""Whole-sequence graphs of shipped models (bidirectional and other non-causal ones): x [B, T, …] -> the
Keras model's output, float32, for SavedModel, LiteRT and ONNX.

- ``savedmodel``: Keras's own ``model.export(path, format="tf_saved_model")`` (signature ``serve``; the
  recurrent layers stay TensorFlow ``while`` loops, any T).
- ``litert``: converted with ``TFLITE_BUILTINS`` only. Keras 3's recurrent loop does not convert that way
  (``tf.TensorListReserve`` needs a static element shape: the converter asks for ``SELECT_TF_OPS``), so the
  model is first rebuilt with ``unroll=True`` over the test sequences' fixed length T and the model's own
  weights: builtin FULLY_CONNECTED / LOGISTIC / TANH … ops, one copy per step, and a fixed T.
- ``onnx``: ``tf2onnx`` (opset 17) from the SavedModel, any T.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zoo import evaluation, loaders
from zoo.export.runtimes import GraphRuntime

SEQUENCE_FILES = {"savedmodel": "sequence_savedmodel", "litert": "sequence.tflite", "onnx": "sequence.onnx"}
ONNX_OPSET = 17
LITERT_ROUTE = (
    "Keras's loop fails TFLITE_BUILTINS conversion (tf.TensorListReserve needs a static element shape); "
    "converted from the model rebuilt with unroll=True over T steps: builtin ops only, fixed T"
)


def sequence_length(name: str) -> int:
    """T of the test split's sequences: the length an unrolled (LiteRT) graph is built for."""
    return int(np.asarray(evaluation.test_data(name)[0]).shape[1])


def unrolled(model: Any, length: int) -> Any:
    """``model`` rebuilt with every recurrent layer ``unroll=True`` and a fixed time axis of ``length``, its
    weights copied: the same function, as a graph without a loop."""
    import keras

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        _set_unroll(config)
        return layer.__class__.from_config(config)

    shape = tuple(model.inputs[0].shape[2:])
    inputs = keras.Input((length, *shape), dtype=model.inputs[0].dtype)
    copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _set_unroll(config: Any) -> None:
    if isinstance(config, dict):
        if "unroll" in config:
            config["unroll"] = True
        for value in config.values():
            _set_unroll(value)
    elif isinstance(config, list):
        for value in config:
            _set_unroll(value)


def export_sequence(name: str, fmt: str, folder: Path | str) -> Path:
    """Write shipped model ``name``'s whole-sequence graph in ``fmt`` into ``folder``; returns its path."""
    return write_sequence(loaders.load(name), fmt, Path(folder), sequence_length(name))


def write_sequence(model: Any, fmt: str, folder: Path, length: int) -> Path:
    path = folder / SEQUENCE_FILES[fmt]
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        model.export(str(path), format="tf_saved_model", verbose=False)
        return path
    with tempfile.TemporaryDirectory() as tmp:
        if fmt == "onnx":
            saved = Path(tmp) / "saved"
            model.export(str(saved), format="tf_saved_model", verbose=False)
            cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved)]
            cmd += ["--output", str(path), "--opset", str(ONNX_OPSET)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not path.is_file():
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"tf2onnx failed: {tail}")
            return path
        import tensorflow as tf

        saved = Path(tmp) / "unrolled"
        unrolled(model, length).export(str(saved), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        path.write_bytes(converter.convert())
        return path


class SequenceRuntime:
    """A whole-sequence graph loaded by its own runtime: ``runtime(x [B, T, …]) -> y``."""

    def __init__(self, path: Path | str, fmt: str, threads: int = 1):
        self.format = fmt
        self.graph = GraphRuntime(path, fmt, threads)
        (self.input,) = self.graph.input_names

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return next(iter(self.graph(**{self.input: x}).values()))

    def predict(self, x: np.ndarray, batch: int = 64) -> np.ndarray:
        return np.concatenate([self(x[i : i + batch]) for i in range(0, len(x), batch)])


__all__ = [
    "SEQUENCE_FILES",
    "SequenceRuntime",
    "export_sequence",
    "sequence_length",
    "unrolled",
    "write_sequence",
]
