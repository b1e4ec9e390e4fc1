"""Model cards: the typed record beside every ``model.keras`` — written, read and verified in this one module.

A card is a `Card` (frozen dataclasses all the way down); ``card.json`` is its JSON form and
``zoo/card.schema.json`` its JSON Schema, generated from these types (``scripts/card_schema.py``) and
checked in tests against every shipped card. Sections whose content differs by task (metrics, baselines, the
split, a dataset's or preprocessing's task-specific details) are typed where all tasks agree and open mappings
where they do not; a dataclass field named ``details`` holds such keys and is written flat beside the typed ones.

Reading is strict: a missing or mistyped field, an unknown top-level field or another schema version is a
`CardError` naming the field, so a hand-edited or foreign card fails at load time, not half-way through a
command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zoo.architecture import Architecture, Cell

SCHEMA_VERSION = 2  # 1: the untyped dicts written before cards had a schema (migrated in place)
SCHEMA_FILE = Path(__file__).with_name("card.schema.json")
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
# The shipped weights' terms; each card adds the training data's own terms beside them.
WEIGHTS_LICENCE = "MIT (the rnn-zoo project's licence, LICENSE)"


def _models_root() -> Path:
    """Where the shipped models are: ``$RNNZOO_MODELS`` if set; else the checkout's top-level ``saved_models/``
    (an editable install, where training writes); else ``zoo/saved_models/`` inside an installed wheel."""
    if os.environ.get("RNNZOO_MODELS"):
        return Path(os.environ["RNNZOO_MODELS"])
    checkout = Path(__file__).resolve().parent.parent / "saved_models"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "saved_models"


SAVED_MODELS = _models_root()


class IntegrityError(RuntimeError):
    """A model file that does not match the sha256 its card records (tampered or corrupt)."""


class CardError(IntegrityError):
    """A card that does not follow the schema (a missing, unknown or mistyped field); the message names it."""


def _doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field with a description (it becomes the field's ``description`` in the JSON Schema)."""
    return field(metadata={"doc": text}, **kwargs)


# -- the card's parts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Licence:
    data: str = _doc("the training data's terms, as its source states them")
    weights: str = _doc("the terms of the shipped weights (model.keras)")


@dataclass(frozen=True)
class Dataset:
    name: str = _doc("what the data is")
    origin: str = _doc("where the files come from: package, version and path, so the data can be re-read")
    details: dict[str, Any] = _doc(
        "task-specific facts (channels, sample rate, voices, …)", default_factory=dict
    )


@dataclass(frozen=True)
class Streaming:
    mode: Literal["step", "window"] = _doc("step: one reading advances the state; window: whole windows only")
    max_abs_diff_vs_keras: float | None = _doc(
        "step mode: largest |step engine - Keras on the whole sequence| over the test split", default=None
    )
    window: int | None = _doc("window mode: the window length the service uses by default", default=None)


@dataclass(frozen=True)
class StateTensor:
    name: str = _doc("e.g. layer0_h, layer0_c (LSTM cell state), layer1_backward_h")
    shape: list[int] = _doc("per example, without the batch axis")
    dtype: str = _doc("numpy dtype name")


@dataclass(frozen=True)
class RecurrentLayerState:
    layer: str = _doc("the Keras layer's name")
    cell: Cell
    units: int
    direction: Literal["forward", "backward", "bidirectional"]
    states: list[StateTensor]


@dataclass(frozen=True)
class StateSpec:
    step_input: str = _doc("what one step consumes, in words")
    input_shape: list[int] = _doc("one step's input per example, without batch and time axes")
    input_dtype: str = _doc("dtype of the input the model takes (float32 readings, or int token ids)")
    steppable: bool = _doc("whether the numpy step engine (zoo.step) can advance it one step at a time")
    layers: list[RecurrentLayerState] = _doc("every recurrent layer, in model order, with its state tensors")
    engine_state_size: int | None = _doc(
        "width of zoo.step.StepModel's state row: the layers' states concatenated in the order listed",
        default=None,
    )


@dataclass(frozen=True)
class Export:
    """One exported graph of the model for a serving runtime (``rnnzoo export NAME --format F``), as measured:
    a step graph (causal models), or a whole-sequence graph (``--sequence``; step fields then describe one call
    on whole sequences)."""

    format: Literal["onnx", "litert", "savedmodel"]
    file: str = _doc(
        "what rnnzoo export writes into its --out folder (default exports/<name>/); a folder for SavedModel"
    )
    sha256: str = _doc(
        "of the export made with the tools in format_version (a SavedModel: of its files' names and bytes)"
    )
    reproducible: bool = _doc(
        "whether rnnzoo export with the tools in format_version writes exactly these bytes (ONNX, LiteRT: yes; "
        "SavedModel: no, TensorFlow numbers the functions it traces per process)"
    )
    file_size_bytes: int
    format_version: str = _doc("format, opset or op set, and the versions of the tools that wrote it")
    compute_dtype: str = _doc("the arithmetic inside the graph; inputs and outputs are float32")
    ops: list[str] = _doc("the graph's op types")
    inputs: list[StateTensor] = _doc(
        "x, then one tensor per recurrent state; per example (the batch axis is dynamic)"
    )
    outputs: list[StateTensor] = _doc("y, then each new state (<state>_out)")
    initial_state: str = _doc("what every state tensor holds before the first step")
    step: str = _doc("what one step consumes (state_spec.step_input)")
    max_abs_diff_vs_keras: float = _doc(
        "largest |streamed export - Keras on the whole sequence| over parity_steps"
    )
    parity_steps: int = _doc("streamed steps the parity was measured over")
    parity_data: str = _doc("which sequences those steps come from")
    latency_us_batch1: float = _doc("median wall time of one step call, batch 1 (see latency_note)")
    latency_us_batch64: float = _doc("median wall time of one step call, batch 64")
    latency_note: str = _doc("runtime, threads and machine of the latency figures")
    builtin_only: bool | None = _doc(
        "LiteRT: every op is a builtin op (no SELECT_TF_OPS / Flex)", default=None
    )
    graph: Literal["step", "sequence", "encoder", "decoder-step"] = _doc(
        "step: (x [B, F], states) -> (y, new states), one step per call; sequence: x [B, T, F] -> the model's "
        "output for whole sequences (-1 in a shape: dynamic); encoder / decoder-step: a translation model's "
        "encoder (source ids -> encoder outputs, initial decoder state) and one decoder step (previous token, "
        "state, encoder outputs, source -> next-token log-probabilities, new state)",
        default="step",
    )
    greedy_match_rate: float | None = _doc(
        "encoder / decoder-step: share of parity sentences whose greedy decoding with the exported encoder and "
        "decoder step gives exactly the token ids Translator (Keras) gives",
        default=None,
    )
    quantization: str | None = _doc(
        "LiteRT --quantize dynamic|int8: what is quantised and how (absent: float32 throughout)", default=None
    )
    test_metrics: dict[str, float] | None = _doc(
        "quantised graphs: the card's headline test metrics computed from this graph's outputs on the test split",
        default=None,
    )
    float_test_metrics: dict[str, float] | None = _doc(
        "the same metrics, same evaluation, from the float32 LiteRT step graph, to set beside test_metrics",
        default=None,
    )


@dataclass(frozen=True)
class Preprocessing:
    n_features: int | None = _doc("F, the width of one input step (real-valued models)", default=None)
    sequence_length: int | None = _doc("length of the sequences the model was trained on", default=None)
    class_names: list[str] | None = _doc("classifiers: label of each output, in output order", default=None)
    normalization: Any = _doc("how inputs are normalised (inside the model for readings)", default=None)
    tokenizer_file: str | None = _doc("text models: the vocabulary file beside the model", default=None)
    sample_rate_hz: float | None = _doc("readings per second, where the data has a rate", default=None)
    details: dict[str, Any] = _doc("task-specific preprocessing", default_factory=dict)


@dataclass(frozen=True)
class Training:
    """The recipe (`zoo.registry.Recipe`) and what the run did with it."""

    epochs: int
    batch_size: int
    learning_rate: float
    clipnorm: float
    patience: int
    seed: int
    optimizer: str
    epochs_run: int
    best_epoch: int
    early_stopping: str
    backend: Literal["jax", "tensorflow", "torch"]
    device: str
    wall_time_s: float
    details: dict[str, Any] = _doc(
        "the recipe's other settings (monitor, class_weight, refit …)", default_factory=dict
    )


@dataclass(frozen=True)
class Versus:
    reference: str = _doc("the baseline the model is compared with")
    verdict: str = _doc("in words: whether and by how much the model beats it")
    details: dict[str, Any] = _doc("the measured differences", default_factory=dict)


@dataclass(frozen=True)
class Card:
    """Everything known about one shipped model; ``card.json`` is its JSON form."""

    name: str
    summary: str
    task: str = _doc("the zoo task (zoo.tasks.TASKS) that prepares its data and scores it")
    kind: str = _doc("what the model is: classification, forecast, generation, translation, ...")
    head: str = _doc("output head (one of zoo.architecture.MODEL_HEADS)")
    architecture: Architecture
    streaming: Streaming
    state_spec: StateSpec
    dataset: Dataset
    split: dict[str, Any] = _doc("how the data was split, and the split sizes")
    preprocessing: Preprocessing
    test_metrics: dict[str, Any] = _doc("measured on the test split by the task's evaluate()")
    baselines: dict[str, Any] = _doc("reference methods measured on the same test split")
    recipe: Training
    licence: Licence
    keras_version: str
    parameters: int = _doc("number of weights")
    file_size_bytes: int = _doc("size of model.keras")
    files: dict[str, str] = _doc("other files in the model folder: role -> file name")
    sha256: str = _doc("of model.keras; verified on every load")
    assets: dict[str, str] = _doc(
        "files the model needs (vocabularies): file name -> sha256", default_factory=dict
    )
    versus_baseline: Versus | None = None
    cell_comparison: list[dict[str, Any]] | None = _doc(
        "the same recipe with each cell: rows read from the group's cards", default=None
    )
    exports: dict[str, Export] | None = _doc(
        "the exported graphs, made by scripts/export_all.py: causal models' step graph per format (onnx, litert, "
        "savedmodel) and quantised LiteRT variants (litert-dynamic, litert-int8); other models' whole-sequence "
        "graphs (<format>-sequence); a translation model's encoder and decoder step (<format>-encoder, "
        "<format>-decoder-step)",
        default=None,
    )
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return _to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "card") -> Card:
        if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
            raise CardError(
                f"{where}: schema_version {data.get('schema_version', 1)!r} is not {SCHEMA_VERSION}: "
                "retrain the model with this version of rnn-zoo (rnnzoo train NAME)"
            )
        return _from_json(cls, data, where)

    @property
    def class_names(self) -> list[str] | None:
        return self.preprocessing.class_names


# -- JSON form ------------------------------------------------------------------------------------------------


def typed(tp: type, data: Any, where: str = "card") -> Any:
    """Parsed JSON ``data`` as the card part ``tp`` (e.g. `Preprocessing` from a task's dict); CardError
    naming the field where it does not fit."""
    return _from_json(tp, data, where)


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name == "details":
                out.update(_to_json(item))
            elif item is not None:  # an absent optional part is left out, not written as null
                out[f.name] = _to_json(item)
        return out
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _from_json(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as an instance of type ``tp``; CardError naming the field where it is not."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise CardError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs: dict[str, Any] = {}
        known = set()
        open_ended = False
        for f in dataclasses.fields(tp):
            if f.name == "details":
                open_ended = True
                continue
            key = f.name
            known.add(key)
            if key in value:
                kwargs[f.name] = _from_json(hints[f.name], value[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CardError(f"{where}: missing field {key!r}")
        rest = {k: v for k, v in value.items() if k not in known}
        if open_ended:
            kwargs["details"] = rest
        elif rest:
            raise CardError(f"{where}: unknown field(s) {', '.join(sorted(rest))}")
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as err:  # e.g. Architecture's own checks
            raise CardError(f"{where}: {err}") from None
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _from_json(option, value, where)
            except CardError as err:
                errors.append(str(err))
        raise CardError(errors[0] if len(errors) == 1 else f"{where}: matches none of {options}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise CardError(f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise CardError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_from_json(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise CardError(f"{where}: expected an object, got {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {k: _from_json(item, v, f"{where}.{k}") for k, v in value.items()}
    ok = {
        str: isinstance(value, str),
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
    }.get(tp)
    if ok is None:
        raise TypeError(f"no JSON reading for type {tp!r}")
    if not ok:
        raise CardError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r:.40}")
    return value


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of ``card.json``, derived from the `Card` types."""
    schema = _schema_of(Card)
    schema["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rnn-zoo model card",
        **schema,
        "description": "card.json beside each saved_models/<name>/model.keras; generated from zoo/cards.py by "
        "scripts/card_schema.py",
    }


def _schema_of(tp: Any, doc: str | None = None) -> dict:
    origin = typing.get_origin(tp)
    out: dict[str, Any]
    if tp is Any:
        out = {}
    elif dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props, required, open_ended = {}, [], False
        for f in dataclasses.fields(tp):
            if f.name == "details":
                open_ended = True
                continue
            optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            props[f.name] = _schema_of(hints[f.name], f.metadata.get("doc"))
            if not optional:
                required.append(f.name)
        out = {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": open_ended,
        }
        if tp.__doc__ and not tp.__doc__.startswith(f"{tp.__name__}("):
            out["description"] = tp.__doc__.strip().splitlines()[0]
    elif origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        out = _schema_of(options[0]) if len(options) == 1 else {"anyOf": [_schema_of(o) for o in options]}
    elif origin is Literal:
        out = {"enum": list(typing.get_args(tp))}
    elif origin is list:
        out = {"type": "array", "items": _schema_of(typing.get_args(tp)[0])}
    elif origin is dict:
        out = {"type": "object", "additionalProperties": _schema_of(typing.get_args(tp)[1])}
    else:
        out = {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}
    if doc:
        out = {"description": doc, **out}
    return out


# -- files ----------------------------------------------------------------------------------------------------


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_dir(name: str, root: Path | None = None) -> Path:
    return (root or SAVED_MODELS) / name


def shipped(root: Path | None = None) -> list[str]:
    """Names of the folders that hold both a model and its card."""
    base = root or SAVED_MODELS
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if (d / MODEL_FILE).is_file() and (d / CARD_FILE).is_file())


def parse_card(text: str, where: str = "card") -> Card:
    """A card from the text of a ``card.json``; CardError for invalid JSON or a card off the schema."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CardError(f"{where} is not valid JSON ({e.msg}, line {e.lineno})") from None
    return Card.from_json(data, where)


def read_card(folder: Path) -> Card:
    path = folder / CARD_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"no card at {path}: train the model first (rnnzoo train NAME)") from None
    return parse_card(text, str(path))


def write_card(folder: Path, card: Card) -> Card:
    """Stamp the model file's sha256 and size into ``card`` and write it atomically."""
    model = folder / MODEL_FILE
    card = dataclasses.replace(card, sha256=sha256(model), file_size_bytes=model.stat().st_size)
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card.to_json(), indent=2) + "\n")
    tmp.replace(folder / CARD_FILE)
    return card


def verify(folder: Path, card: Card) -> Path:
    """The model file's path, once its sha256 matches the card."""
    path = folder / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    actual = sha256(path)
    if actual != card.sha256:
        raise IntegrityError(
            f"{path} does not match its card (sha256 {actual[:12]}… != {card.sha256[:12]}…): "
            "the file was modified or corrupted; refusing to load it"
        )
    return path


def add_cell_comparison(names: list[str], metrics: tuple[str, ...], root: Path | None = None) -> list[dict]:
    """Write, into each named card, the table comparing those models (the same recipe with different cells),
    read from their own cards so every number is one that was measured."""
    table = []
    for name in names:
        card = read_card(model_dir(name, root))
        row = {"model": name, "cell": card.architecture.cell, "parameters": card.parameters}
        row |= {m: card.test_metrics[m] for m in metrics if m in card.test_metrics}
        recipe = card.recipe
        row |= {
            "best_epoch": recipe.best_epoch,
            "epochs_run": recipe.epochs_run,
            "wall_time_s": recipe.wall_time_s,
            "backend": recipe.backend,
            "device": recipe.device,
        }
        table.append(row)
    for name in names:
        folder = model_dir(name, root)
        write_card(folder, dataclasses.replace(read_card(folder), cell_comparison=table))
    return table


def write_assets(folder: Path, assets: dict) -> dict:
    """Write each asset (file name -> JSON content) beside the model; return ``{file name: sha256}`` for the
    card."""
    written = {}
    for file_name, content in assets.items():
        path = folder / file_name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        written[file_name] = sha256(path)
    return written


def verify_assets(folder: Path, card: Card) -> dict[str, Path]:
    """Paths of the card's assets (tokenizer vocabularies…), once each file's sha256 matches the card."""
    paths = {}
    for file_name, digest in card.assets.items():
        path = folder / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (the card lists it as an asset of the model)")
        if sha256(path) != digest:
            raise IntegrityError(
                f"{path} does not match its card (sha256 {sha256(path)[:12]}… != {digest[:12]}…): "
                "the file was modified or corrupted; refusing to load the model"
            )
        paths[file_name] = path
    return paths
