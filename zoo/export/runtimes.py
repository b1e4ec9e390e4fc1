"""Run an exported step graph with its own runtime — onnxruntime, the LiteRT interpreter, TensorFlow — behind one
call: ``y, states = runtime(x, states)`` with ``states`` a dict of the named state tensors.

`StepEngine` wraps any of them in `zoo.step.StepModel`'s interface (``initial_state``, ``step``, ``advance``,
``run`` over one concatenated state row), so the streaming service can serve the very artefact a user deploys.
`GraphRuntime` runs any other exported graph by the names of its inputs and outputs (a whole-sequence graph,
the translation encoder and its decoder step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.step import Stepper

Array = np.ndarray


class StepRuntime:
    """An exported step graph, loaded. ``state_names`` / ``state_widths`` list its state tensors in order."""

    format = ""

    def __init__(self, state_names: list[str], state_widths: list[int], n_features: int, n_outputs: int):
        self.state_names = state_names
        self.state_widths = state_widths
        self.n_features = n_features
        self.n_outputs = n_outputs

    def initial_state(self, batch: int) -> dict[str, Array]:
        return {
            n: np.zeros((batch, w), np.float32)
            for n, w in zip(self.state_names, self.state_widths, strict=True)
        }

    def __call__(self, x: Array, states: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
        raise NotImplementedError


def onnx_session(path: Path | str, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU with ``threads`` intra-op threads and quiet logs (every export's
    runtime uses this one)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class GraphRuntime:
    """One exported graph (a sequence graph, the translation encoder or its decoder step) loaded by its own
    runtime: ``runtime(**named inputs) -> {name: array}``; ``input_names`` lists what it takes."""

    def __init__(self, path: Path | str, fmt: str, threads: int = 1):
        self.format = fmt
        if fmt == "onnx":
            self.session = onnx_session(path, threads)
            self.outputs = [o.name for o in self.session.get_outputs()]
            self.inputs = {i.name.split(":")[0]: i.name for i in self.session.get_inputs()}
            self.input_names = list(self.inputs)
        elif fmt == "litert":
            from zoo.export.tf_graph import _litert_interpreter

            self.interpreter = _litert_interpreter(model_path=str(path), num_threads=threads)
            (key,) = self.interpreter.get_signature_list()
            self.runner = self.interpreter.get_signature_runner(key)
            self.input_names = list(self.runner.get_input_details())
        else:
            import tensorflow as tf

            self.tf = tf
            self.fn = tf.saved_model.load(str(path)).signatures["serve"]
            self.input_names = list(self.fn.structured_input_signature[1])

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        if self.format == "onnx":
            feed = {self.inputs[k]: v for k, v in inputs.items()}
            got = self.session.run(None, feed)
            return {n.split(":")[0]: np.asarray(v) for n, v in zip(self.outputs, got, strict=True)}
        if self.format == "litert":
            return {k: np.array(v) for k, v in self.runner(**inputs).items()}
        out = self.fn(**{k: self.tf.constant(v) for k, v in inputs.items()})
        return {k: np.asarray(v) for k, v in out.items()}


class OnnxRuntime(StepRuntime):
    format = "onnx"

    def __init__(self, path: Path | str, threads: int = 1):
        self.session = onnx_session(path, threads)
        inputs = self.session.get_inputs()
        self._outputs = [o.name for o in self.session.get_outputs()]
        super().__init__(
            [i.name for i in inputs[1:]],
            [int(i.shape[1]) for i in inputs[1:]],
            int(inputs[0].shape[1]),
            int(self.session.get_outputs()[0].shape[1]),
        )

    def __call__(self, x: Array, states: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
        out = self.session.run(self._outputs, {"x": np.asarray(x, np.float32), **states})
        return out[0], dict(zip(self.state_names, out[1:], strict=True))


class LiteRTRuntime(StepRuntime):
    format = "litert"

    def __init__(self, path: Path | str, threads: int = 1):
        from zoo.export.tf_graph import _litert_interpreter

        self.interpreter = _litert_interpreter(model_path=str(path), num_threads=threads)
        (key,) = self.interpreter.get_signature_list()
        self.runner = self.interpreter.get_signature_runner(key)
        details = self.runner.get_input_details()
        names = [n for n in _order(details) if n != "x"]
        out = self.runner.get_output_details()
        super().__init__(
            names,
            [int(details[n]["shape_signature"][1]) for n in names],
            int(details["x"]["shape_signature"][1]),
            int(out["y"]["shape_signature"][1]),
        )

    def __call__(self, x: Array, states: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
        out = self.runner(x=np.asarray(x, np.float32), **states)
        # The runner's output arrays are views of buffers the next call overwrites: copy the states out.
        return out["y"].copy(), {n: out[f"{n}_out"].copy() for n in self.state_names}


class SavedModelRuntime(StepRuntime):
    format = "savedmodel"

    def __init__(self, path: Path | str, threads: int = 1):
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["step"]
        specs = self.fn.structured_input_signature[1]
        names = [n for n in _order(specs) if n != "x"]
        super().__init__(
            names,
            [int(specs[n].shape[1]) for n in names],
            int(specs["x"].shape[1]),
            int(self.fn.structured_outputs["y"].shape[1]),
        )

    def __call__(self, x: Array, states: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
        tf = self.tf
        out = self.fn(x=tf.constant(x, tf.float32), **{k: tf.constant(v) for k, v in states.items()})
        return out["y"].numpy(), {n: out[f"{n}_out"].numpy() for n in self.state_names}


def _order(names: Any) -> list[str]:
    """State names in state-row order (layer0_h, layer0_c, layer1_h…) — runtimes hand them back sorted by name,
    which puts layer0_c before layer0_h and layer10 before layer2."""

    def key(name: str) -> tuple:
        if not name.startswith("layer"):
            return (-1, 0)
        index, _, part = name[len("layer") :].partition("_")
        return (int(index), 0 if part == "h" else 1)

    return sorted(names, key=key)


RUNTIMES: dict[str, type[StepRuntime]] = {
    "onnx": OnnxRuntime,
    "litert": LiteRTRuntime,
    "savedmodel": SavedModelRuntime,
}


def load_runtime(path: Path | str, fmt: str, threads: int = 1) -> StepRuntime:
    """The exported step graph at ``path`` (format ``fmt``), loaded by its runtime with ``threads`` threads."""
    return RUNTIMES[fmt](path, threads)


class StepEngine(Stepper):
    """An exported step graph behind `zoo.step.StepModel`'s interface: one ``[B, S]`` state row per device
    (the state tensors side by side, in the card's order), ``step``, ``advance``, ``initial_state``, ``run``."""

    def __init__(self, runtime: StepRuntime, fingerprint: str = ""):
        self.runtime = runtime
        self.n_features = runtime.n_features
        self.n_outputs = runtime.n_outputs
        self.dtype = np.dtype(np.float32)
        self.fingerprint = fingerprint
        self.state_size = sum(runtime.state_widths)
        bounds = np.cumsum([0, *runtime.state_widths])
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def initial_state(self, batch: int) -> Array:
        return np.zeros((batch, self.state_size), dtype=self.dtype)

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        state = np.asarray(state, np.float32)
        named = {
            n: np.ascontiguousarray(state[:, sl])
            for n, sl in zip(self.runtime.state_names, self._slices, strict=True)
        }
        y, new = self.runtime(x, named)
        return y, np.concatenate([new[n] for n in self.runtime.state_names], axis=1)
