"""Resolve a binding's model (a zoo name or a .keras path) into the engine that serves it, step or window.

A zoo model's card (`zoo.cards.Card`) says how it streams (`card.streaming`) and names its classes; a bare
`.keras` file may have a `card.json` beside it, else it is served as a classifier when its last activation is
softmax.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.window import WindowModel
from zoo.cards import Card, CardError, IntegrityError, parse_card, sha256
from zoo.step import STEP_FORMAT, NotStepable, StepModel

CLASSIFIER_HEADS = ("sequence_classification", "step_classification")
# What computes a step-mode model's steps: the numpy engine, or its exported step graph — ONNX in onnxruntime,
# LiteRT in ai-edge-litert's interpreter — the artefact a user deploys elsewhere, served here with the same state
# rows and snapshots.
RUNTIMES = ("numpy", "onnx", "litert")


class ModelError(ValueError):
    """The model cannot be found, read or served as asked; the message is one line for the user."""


@dataclass
class ServedModel:
    """A model ready to serve: its engine (step or window), display name and, for classifiers, class names."""

    name: str
    engine: StepModel | WindowModel
    class_names: list[str] | None
    keras_model: Any
    card: Card | None = None
    note: str = ""  # why window mode was chosen, when it was

    @property
    def mode(self) -> str:
        return self.engine.mode


def load_keras(spec: str) -> tuple[Any, Card | None, str]:
    """(keras model, card or None, display name) for a zoo name, a path to a .keras file, or a model folder
    (``model.keras`` + ``card.json``, what `rnnzoo fit` writes: the card must name the file by its sha256)."""
    if os.path.isdir(spec):
        return _load_folder(spec)
    if _is_path(spec):
        if not os.path.exists(spec):
            raise ModelError(f"model file {spec!r} not found")
        _require_keras(f"reading {spec!r}")
        from zoo.backend import keras

        try:
            model = keras.saving.load_model(spec, safe_mode=True, compile=False)
        except Exception as err:  # Keras raises many types for a corrupt or foreign file
            raise ModelError(f"cannot read model file {spec!r}: {str(err).splitlines()[0][:160]}") from None
        digest = sha256(spec)
        card = _card_beside(spec, digest)
        name = os.path.splitext(os.path.basename(spec))[0]
        if name == "model":
            # A file named by its folder's card only when the card vouches for this very file; otherwise by
            # its own hash, so an altered copy can never pass for the zoo model it was made from.
            name = card.name if card else f"model-{digest[:12]}"
        return model, card, name
    import zoo  # light: Keras loads only with a model

    known = list(zoo.list_models())
    if spec not in known:
        raise ModelError(f"unknown model {spec!r}; available: {', '.join(known) or 'none'}")
    _check_streamable(zoo, spec)
    _require_keras(f"loading model {spec!r}")
    try:
        return zoo.load(spec), zoo.card(spec), spec
    except Exception as err:  # a corrupt file or a hash mismatch: one line, not a traceback
        raise ModelError(f"cannot load zoo model {spec!r}: {str(err).splitlines()[0][:160]}") from None


def _load_folder(folder: str) -> tuple[Any, Card, str]:
    """A model folder: its card must be valid and vouch for its model file (sha256), or nothing is served —
    a folder is named for what its card says, so a card that does not match is an error, not a fallback."""
    from zoo.cards import CARD_FILE, MODEL_FILE

    keras_file, card_file = os.path.join(folder, MODEL_FILE), os.path.join(folder, CARD_FILE)
    missing = [f for f in (MODEL_FILE, CARD_FILE) if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ModelError(
            f"model folder {folder!r} has no {' or '.join(missing)} (want model.keras + card.json)"
        )
    try:
        with open(card_file) as f:
            card = parse_card(f.read(), card_file)
    except (OSError, UnicodeDecodeError, CardError) as err:
        raise ModelError(f"cannot read {card_file!r}: {str(err).splitlines()[0][:160]}") from None
    digest = sha256(keras_file)
    if card.sha256 != digest:
        raise ModelError(
            f"{keras_file!r} does not match its card (sha256 {digest[:12]}… != {str(card.sha256)[:12]}…): "
            "refusing to serve it"
        )
    _require_keras(f"reading {keras_file!r}")
    from zoo.backend import keras

    try:
        model = keras.saving.load_model(keras_file, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many types for a corrupt or foreign file
        raise ModelError(f"cannot read model file {keras_file!r}: {str(err).splitlines()[0][:160]}") from None
    return model, card, card.name or os.path.basename(os.path.normpath(folder))


def _is_path(spec: str) -> bool:
    return spec.endswith(".keras") or os.sep in spec or os.path.exists(spec)


def _check_streamable(zoo: Any, name: str) -> None:
    """A zoo model must declare the stream capability (a text or music model has no sensor readings)."""
    try:
        zoo.require(name, zoo.Capability.STREAM)
    except zoo.CapabilityError as err:
        raise ModelError(str(err)) from None
    except zoo.UnknownModelError as err:
        raise ModelError(str(err)) from None


def _card_beside(path: str, digest: str) -> Card | None:
    """The card.json next to a model file, only if it is a valid card that names this very file (its sha256):
    a card beside an altered model must not lend it the zoo name, class names or streaming settings of the
    original; a malformed card is ignored like a missing one."""
    card_path = os.path.join(os.path.dirname(os.path.abspath(path)), "card.json")
    try:
        with open(card_path) as f:
            card = parse_card(f.read(), card_path)
    except (OSError, UnicodeDecodeError, CardError):
        return None
    return card if card.sha256 == digest else None


def class_names_for(model: Any, card: Card | None) -> list[str] | None:
    n_out = int(model.outputs[0].shape[-1])
    if card is not None:
        return _card_class_names(card, n_out)
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        return [str(i) for i in range(n_out)]
    return None


def _card_class_names(card: Card, n_out: int) -> list[str] | None:
    """A classifier's class names from its card (numbered when the card names none); None for other heads."""
    if card.head not in CLASSIFIER_HEADS:
        return None
    names = card.class_names
    return [str(c) for c in names] if names else [str(i) for i in range(n_out)]


def serve_model(
    spec: str,
    mode: str = "auto",
    window: int | None = None,
    name: str | None = None,
    compute_dtype: str = "float64",
    isolate: bool = False,
    runtime: str = "numpy",
) -> ServedModel:
    """Load a model and build its engine. mode "step" refuses non-causal models; "auto" falls back to window.

    isolate=True reads the Keras file in a child process and keeps only the numpy step model here, so a
    serving process of a step-mode model never carries TensorFlow (~700 MB of RSS). ``runtime`` "onnx" then
    serves the model's exported ONNX step graph instead of the numpy engine (`with_runtime`).
    """
    if not _is_path(spec):
        import zoo

        _check_streamable(zoo, spec)  # before a child process spends seconds importing TensorFlow
    if isolate and mode != "window":
        engine, meta = export_in_child(spec, mode, compute_dtype, window)
        if engine is not None:
            card = Card.from_json(meta["card"]) if meta["card"] else None
            served = ServedModel(name or meta["name"], engine, meta["class_names"], None, card, meta["note"])
            return with_runtime(served, runtime, compute_dtype)
    model, card, display = load_keras(spec)
    return with_runtime(
        build_served(model, card, name or display, mode, window, compute_dtype), runtime, compute_dtype
    )


def with_runtime(served: ServedModel, runtime: str, compute_dtype: str = "float64") -> ServedModel:
    """``served`` with its numpy step engine swapped for the same model's exported step graph (`zoo.export`):
    same state layout and fingerprint, so snapshots move between runtimes. The graph is built from the numpy
    engine's weights into the step cache, keyed by the weights' fingerprint: ONNX here (no TensorFlow), LiteRT
    (float32 inside, builtin ops) by a child process that imports TensorFlow's converter once, so the serving
    process never carries TensorFlow."""
    if runtime == "numpy":
        return served
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if not isinstance(served.engine, StepModel):
        raise ModelError(
            f"model {served.name!r} runs in window mode; --runtime {runtime} serves step graphs only"
        )
    import importlib.util

    # Checked up front: these are imported only once a graph is built or loaded, deep inside.
    for module in {"onnx": ("onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}[runtime]:
        if importlib.util.find_spec(module) is None:
            raise ModelError(f"--runtime {runtime} needs {module}: pip install 'rnn-zoo[export]'")
    from zoo.data._files import cache_dir
    from zoo.export.onnx_graph import write_onnx
    from zoo.export.runtimes import StepEngine, load_runtime

    step_model = served.engine
    if runtime == "onnx":
        path = cache_dir("step") / f"{step_model.fingerprint}-{compute_dtype}.onnx"
        if not path.is_file():
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            write_onnx(step_model, tmp, np.dtype(compute_dtype))
            tmp.replace(path)
    else:
        path = _litert_in_child(step_model, cache_dir("step"))
    engine = StepEngine(load_runtime(path, runtime), fingerprint=step_model.fingerprint)
    return dataclasses.replace(served, engine=engine)


_LITERT_CHILD = (
    "import sys; from pathlib import Path; from zoo.export import export_step; from zoo.step import StepModel; "
    "print(export_step(StepModel.load(sys.argv[1]), 'litert', Path(sys.argv[2])))"
)


def _litert_in_child(step_model: StepModel, folder: Any) -> Any:
    """The step model's LiteRT flatbuffer, converted (once per weights) by `python -I` in a child process."""
    import tempfile
    from pathlib import Path

    path = Path(folder) / f"{step_model.fingerprint}-float32.tflite"
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        step_model.save(Path(tmp) / "engine.npz")
        proc = _tensorflow_child(["-c", _LITERT_CHILD, str(Path(tmp) / "engine.npz"), tmp])
        written = Path(tmp) / "step.tflite"
        if proc.returncode != 0 or not written.is_file():
            raise ModelError(f"converting the step graph to LiteRT failed: {_last_error(proc)}")
        written.replace(path)
    return path


def build_served(
    model: Any,
    card: Card | None,
    name: str,
    mode: str = "auto",
    window: int | None = None,
    compute_dtype: str = "float64",
) -> ServedModel:
    if mode == "auto" and card is not None and card.streaming.mode == "window":
        mode = "window"
    note = ""
    engine: StepModel | WindowModel | None = None
    if mode in ("auto", "step"):
        try:
            engine = StepModel.from_keras(model, compute_dtype=np.dtype(compute_dtype))
        except NotStepable as err:
            if mode == "step":
                raise ModelError(f"model {name!r} cannot stream step by step: {err}") from None
            note = str(err)
    if engine is None:
        w = window or (card and (card.streaming.window or card.preprocessing.sequence_length))
        w = w or model.inputs[0].shape[1]
        if not w:
            raise ModelError(f"model {name!r} needs window mode ({note or 'asked'}); set a window length")
        try:
            engine = WindowModel(model, int(w))
        except ValueError as err:
            raise ModelError(f"model {name!r}: {err}") from None
    return ServedModel(name, engine, class_names_for(model, card), model, card, note)


def _source_files(spec: str) -> list[str]:
    """The files an export depends on: the .keras file and the card that names it (for a zoo model, or a
    card.json beside a file)."""
    if os.path.isdir(spec):
        keras_file = os.path.join(spec, "model.keras")
    elif _is_path(spec):
        keras_file = spec
    else:
        from zoo import cards

        keras_file = str(cards.model_dir(spec) / cards.MODEL_FILE)
    card = os.path.join(os.path.dirname(os.path.abspath(keras_file)), "card.json")
    return [keras_file] + ([card] if os.path.exists(card) else [])


def export_cache_key(spec: str, mode: str, compute_dtype: str, window: int | None = None) -> str:
    """The step-model cache key: sha256 of the .keras file and its card, the step format and the options."""
    digest = hashlib.sha256()
    for path in _source_files(spec):
        digest.update(sha256(path).encode())
    digest.update(f"{STEP_FORMAT}|{mode}|{compute_dtype}|{window}".encode())
    return digest.hexdigest()[:32]


def export_in_child(spec: str, mode: str, compute_dtype: str, window: int | None = None) -> tuple[Any, dict]:
    """(StepModel or None for window mode, metadata) for a model: the step engine its folder ships (a causal
    zoo model's, `zoo.step.shipped`), else one read in a child process that imports TensorFlow — or, when a
    previous export of the very same files is in the cache, without any child.

    The cache (`$RNNZOO_CACHE/step`, default ~/.cache/rnn-zoo/step) is keyed by the sha256 of the .keras file
    and its card, the step format and the export options, so a changed model is never served from it; each
    cached .npz is checked against the sha256 recorded when it was written. A restart that finds it starts in
    well under a second instead of the ~7-15 s TensorFlow costs.
    """
    shipped = _shipped_engine(spec, mode, compute_dtype)
    if shipped is not None:
        return shipped
    _require_keras(f"model {spec!r} has no precomputed step engine for its model file; building one")
    from zoo.data._files import cache_dir

    key = export_cache_key(spec, mode, compute_dtype, window)
    folder = cache_dir("step")
    npz, meta_file = folder / f"{key}.npz", folder / f"{key}.json"
    try:
        meta = json.loads(meta_file.read_text())
        if meta["card"] is not None:
            Card.from_json(meta["card"])  # written by another version of the card schema: export afresh
        if meta["mode"] != "step":
            return None, meta
        if sha256(npz) == meta["npz_sha256"]:
            return StepModel.load(npz), meta
    except (OSError, ValueError, KeyError, CardError):
        pass  # no cache entry (or a damaged one): export afresh
    engine, meta = _export_in_child(spec, mode, compute_dtype, window, str(npz))
    if engine is not None:
        meta["npz_sha256"] = sha256(npz)
    tmp = meta_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, default=str))
    tmp.replace(meta_file)
    return engine, meta


def _shipped_engine(spec: str, mode: str, compute_dtype: str) -> tuple[StepModel, dict] | None:
    """(engine, metadata) from the precomputed step engine of a zoo model or model folder (`zoo.step.shipped`),
    read with numpy alone, when its card streams it step by step and vouches for the model file it was read
    from; None otherwise (the caller builds the engine with Keras, or reports what is wrong)."""
    from zoo.cards import CARD_FILE, MODEL_FILE, model_dir
    from zoo.step.shipped import read_engine

    if mode == "window" or (_is_path(spec) and not os.path.isdir(spec)):
        return None  # a bare .keras file has no model folder to carry an engine
    folder = spec if os.path.isdir(spec) else str(model_dir(spec))
    try:
        with open(os.path.join(folder, CARD_FILE)) as f:
            card = parse_card(f.read(), CARD_FILE)
        if card.streaming.mode != "step" or sha256(os.path.join(folder, MODEL_FILE)) != card.sha256:
            return None  # window mode, or a model file its card does not vouch for: the Keras path decides
        engine = read_engine(folder, card.sha256)
    except (OSError, UnicodeDecodeError, CardError):
        return None
    except IntegrityError as err:
        raise ModelError(str(err)) from None
    if engine is None:
        return None
    name = (card.name or os.path.basename(os.path.normpath(folder))) if os.path.isdir(spec) else spec
    meta = {
        "name": name,
        "card": card.to_json(),
        "mode": "step",
        "class_names": _card_class_names(card, engine.n_outputs),
        "note": "",
    }
    return engine.with_compute_dtype(compute_dtype), meta


def _require_keras(what: str) -> None:
    """One line, not a traceback, when this install (a serving one, `pip install "rnn-zoo[serve]"`) has no
    Keras for what is asked: ``what`` says what needed it."""
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        raise ModelError(
            f"{what} needs Keras, which this install lacks (a serving install streams the causal zoo models "
            "from their shipped step engines): pip install 'rnn-zoo[full]'"
        )


def _tensorflow_child(args: list[str]) -> subprocess.CompletedProcess:
    """This Python in isolated mode (`-I`: the current folder and PYTHON* variables cannot inject code into the
    child) running ``args``, TensorFlow's logging muted; the one way this module starts a child that imports it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-I", *args], capture_output=True, text=True, env=env)


def _last_error(proc: subprocess.CompletedProcess) -> str:
    """The child's last stderr line (its one-line error, or the exception), for a one-line ModelError."""
    return (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]


def _export_in_child(
    spec: str, mode: str, compute_dtype: str, window: int | None, out: str
) -> tuple[Any, dict]:
    """Run `python -I -m streaming.engine_build` and read its answer; the step model is written to `out`."""
    proc = _tensorflow_child(
        ["-m", "streaming.engine_build", spec, out, "--mode", mode, "--compute-dtype", compute_dtype]
        + (["--window", str(window)] if window else [])
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise ModelError(f"exporting {spec!r} failed: {_last_error(proc)}")
    meta = json.loads(lines[-1])
    if "error" in meta:
        raise ModelError(meta["error"])
    engine = StepModel.load(out) if meta["mode"] == "step" else None
    return engine, meta
