"""Export a causal model as a single-step graph with explicit state, for serving stacks that keep no state.

``zoo.export("activity-gru-causal", "onnx")`` writes ``exports/activity-gru-causal/step.onnx``: a graph
``(x [B, F], layer0_h [B, 64], layer1_h [B, 64]) -> (y [B, K], layer0_h_out, layer1_h_out)`` built from the
model's own weights — normalisation inside, dynamic batch, float32 inputs and outputs, states named as the
card's ``state_spec`` names them. Formats:

- ``onnx``: written node by node with ``onnx.helper`` (opset 17); float64 arithmetic inside by default.
- ``savedmodel``: a TensorFlow SavedModel whose ``step`` signature is that graph; float64 inside by default.
- ``litert``: a LiteRT (TFLite) flatbuffer with builtin ops only (no Flex/``SELECT_TF_OPS``); float32 inside
  (LiteRT builtins have no float64).

Variants: ``zoo.export(name, "litert", quantize="dynamic"|"int8")`` writes a quantised LiteRT step graph
(`zoo.export.quantize`: int8 calibration on training-split steps, test metrics from the graph's outputs);
``zoo.export(name, fmt, sequence=True)`` the whole-sequence graph of any model, the only graph of a
bidirectional one (`zoo.export.sequence`).

Every format is emitted from the same walk over `zoo.step.StepModel`'s parsed ops (`zoo.export.graph`), so the
layer semantics live in one place. Why float64 inside: `StepModel` computes in float64 and rounds as Keras holds
its tensors, which keeps every shipped model ≤ 1e-5 from Keras; a float32 graph drifts further on some models
over long sequences (the card's ``exports`` block and the README give the measured figures). Pass
``compute_dtype="float32"`` for a float32 ONNX or SavedModel graph.

Exports are made on demand, not shipped in the wheel: they are a pure function of ``model.keras`` and this code,
and each card records the sha256 of every export made with the listed tool versions.

Example:
    >>> path = zoo.export("kjv-char-lstm", "onnx")
    >>> import onnxruntime as ort
    >>> session = ort.InferenceSession(str(path))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from zoo import loaders
from zoo.export.graph import StateSlot, state_slots
from zoo.step import NotStepable, StepModel

FORMATS = ("onnx", "litert", "savedmodel")
FILES = {"onnx": "step.onnx", "litert": "step.tflite", "savedmodel": "step_savedmodel"}
QUANTIZATIONS = ("dynamic", "int8")
QUANTIZED_FILES = {"dynamic": "step_dynamic.tflite", "int8": "step_int8.tflite"}
DEFAULT_COMPUTE = {"onnx": "float64", "savedmodel": "float64", "litert": "float32"}
EXPORTS_DIR = Path("exports")


class ExportError(ValueError):
    """The model cannot be exported as asked (not causal, unknown format…); the message says why."""


def export_step(
    step_model: StepModel,
    fmt: str,
    folder: Path | str,
    compute_dtype: str | None = None,
    doc: str = "",
    quantize: str | None = None,
    representative: Callable[[], Iterator[dict[str, np.ndarray]]] | None = None,
) -> Path:
    """Write ``step_model`` as a step graph of format ``fmt`` into ``folder``; returns the file (a folder for
    SavedModel). ``compute_dtype``: the arithmetic inside (default per format: `DEFAULT_COMPUTE`).
    ``quantize`` (LiteRT only): ``dynamic`` or ``int8`` (which needs ``representative``, see
    `zoo.export.quantize.representative`)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    compute = compute_dtype or DEFAULT_COMPUTE[fmt]
    if compute not in ("float32", "float64"):
        raise ExportError(f"compute dtype must be float32 or float64 (got {compute!r})")
    if fmt == "litert" and compute != "float32":
        raise ExportError("LiteRT builtin ops have no float64: a LiteRT export computes in float32")
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ExportError(f"unknown quantisation {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}")
        if fmt != "litert":
            raise ExportError(f"--quantize applies to LiteRT only (got format {fmt!r})")
        if quantize == "int8" and representative is None:
            raise ExportError("int8 quantisation needs a representative dataset (training-split steps)")
    path = Path(folder) / (QUANTIZED_FILES[quantize] if quantize else FILES[fmt])
    if fmt == "onnx":
        from zoo.export.onnx_graph import write_onnx

        return write_onnx(step_model, path, compute, doc)
    if fmt == "litert":
        from zoo.export.tf_graph import write_litert

        return write_litert(step_model, path, quantize, representative)
    from zoo.export.tf_graph import write_savedmodel

    return write_savedmodel(step_model, path, compute)


def step_model_of(name: str) -> StepModel:
    """The numpy step engine of shipped model ``name``; ExportError (naming the reason) if it is not causal."""
    card = loaders.card(name)
    if not card.state_spec.steppable:
        raise ExportError(
            f"{name} is not causal ({card.architecture.cell}, "
            f"{'bidirectional' if card.architecture.bidirectional else 'whole-sequence'}): it has no step "
            "graph; export its whole-sequence graph with --sequence (zoo.export(..., sequence=True))"
        )
    try:
        step_model = StepModel.from_keras(loaders.load(name))
    except NotStepable as err:
        raise ExportError(f"{name}: {err}") from None
    expected = [s.name for layer in card.state_spec.layers for s in layer.states]
    if [s.name for s in state_slots(step_model)] != expected:  # the card's state contract is the graph's
        raise ExportError(f"{name}: the step engine's states do not match the card's state_spec")
    return step_model


def export(
    name: str,
    format: str,
    out: str | Path | None = None,
    compute_dtype: str | None = None,
    quantize: str | None = None,
    sequence: bool = False,
) -> Path:
    """Export shipped model ``name`` as a step graph in ``format`` (onnx, litert, savedmodel) into ``out``
    (default ``exports/<name>/``); returns the written file (a folder for SavedModel). ``quantize`` (LiteRT):
    ``dynamic`` or ``int8`` (calibrated on training-split steps). ``sequence``: the whole-sequence graph of
    the Keras model instead (`zoo.export.sequence`; any model, the only graph of a bidirectional one); for a
    translation model, its encoder and one decoder step (`zoo.export.seq2seq`), and the folder is returned."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: choose one of {', '.join(FORMATS)}")
    folder = Path(out) if out is not None else EXPORTS_DIR / name
    if sequence:
        if quantize is not None or compute_dtype not in (None, "float32"):
            raise ExportError("a whole-sequence graph is float32 and unquantised")
        from zoo.export.sequence import export_sequence

        if loaders.card(name).kind == "translation":  # its encoder and one decoder step: returns the folder
            from zoo.export.seq2seq import export_encoder_decoder

            export_encoder_decoder(name, format, folder)
            return folder
        return export_sequence(name, format, folder)
    step_model = step_model_of(name)
    representative = None
    if quantize == "int8":
        from zoo.export import quantize as q

        representative = q.representative(step_model, q.training_sequences(name))
    return export_step(
        step_model, format, folder, compute_dtype, f"rnn-zoo {name}: one step", quantize, representative
    )


def digest(path: Path | str) -> str:
    """sha256 of an export: of the file, or of a SavedModel folder's files (relative name and bytes, in name
    order)."""
    path = Path(path)
    if path.is_file():
        from zoo.cards import sha256

        return sha256(path)
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        h.update(file.read_bytes())
    return h.hexdigest()


def size_bytes(path: Path | str) -> int:
    path = Path(path)
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def format_version(fmt: str, compute_dtype: str, quantize: str | None = None) -> str:
    """The format's version and the tools that wrote the bytes (their versions decide the sha256)."""
    if fmt == "onnx":
        import onnx

        from zoo.export.onnx_graph import OPSET

        return f"ONNX opset {OPSET}, IR 8; onnx {onnx.__version__}"
    import tensorflow as tf

    if fmt == "litert" and quantize == "int8":
        return f"LiteRT flatbuffer (TFLite schema 3), TFLITE_BUILTINS_INT8 only; TensorFlow {tf.__version__}"
    if fmt == "litert":
        ops = "TFLITE_BUILTINS only" + (f", {quantize}-range quantised" if quantize == "dynamic" else "")
        return f"LiteRT flatbuffer (TFLite schema 3), {ops}; TensorFlow {tf.__version__}"
    return f"SavedModel, signature 'step'; TensorFlow {tf.__version__}"


__all__ = [
    "FORMATS",
    "FILES",
    "QUANTIZATIONS",
    "QUANTIZED_FILES",
    "DEFAULT_COMPUTE",
    "ExportError",
    "StateSlot",
    "export",
    "export_step",
    "step_model_of",
    "state_slots",
    "digest",
    "size_bytes",
    "format_version",
]
