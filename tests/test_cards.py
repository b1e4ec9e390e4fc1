"""The typed model card: its checked-in JSON Schema, every shipped card against it, and strict reading."""

import dataclasses
import json

import jsonschema
import numpy as np
import pytest

import zoo
from zoo import cards
from zoo.registry import REGISTRY
from zoo.step import StepModel

SHIPPED = zoo.list_models()
SCHEMA = json.loads(cards.SCHEMA_FILE.read_text())


def test_checked_in_schema_is_what_the_types_say() -> None:
    assert SCHEMA == cards.json_schema(), "zoo/card.schema.json is stale: run python scripts/card_schema.py"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_follows_the_schema(name: str) -> None:
    folder = cards.model_dir(name)
    raw = json.loads((folder / cards.CARD_FILE).read_text())
    jsonschema.validate(raw, SCHEMA)
    card = cards.read_card(folder)
    assert card.to_json() == raw  # lossless: reading and writing a card changes nothing
    assert card.schema_version == cards.SCHEMA_VERSION
    assert card.name == name and card.head == REGISTRY[name].head and card.task == REGISTRY[name].task
    assert card.architecture == REGISTRY[name].arch
    model_file = folder / cards.MODEL_FILE
    assert card.sha256 == cards.sha256(model_file) and card.file_size_bytes == model_file.stat().st_size
    assert card.licence.data and card.licence.weights == cards.WEIGHTS_LICENCE
    assert (
        card.dataset.origin and card.recipe.wall_time_s > 0 and card.recipe.backend in ("jax", "tensorflow")
    )

    model = zoo.load(name)
    assert card.parameters == model.count_params()
    spec = card.state_spec
    # The state spec is the model's: one entry per recurrent layer, the step engine's state row is exactly the
    # listed tensors side by side, and a model streams step by step exactly when the engine can step it.
    assert len(spec.layers) >= 1 and all(layer.states for layer in spec.layers)
    assert spec.steppable == (card.streaming.mode == "step")
    assert spec.input_shape == [int(d) for d in model.inputs[0].shape[2:]]
    if spec.steppable:
        engine = StepModel.from_keras(model)
        widths = [int(np.prod(s.shape)) for layer in spec.layers for s in layer.states]
        assert spec.engine_state_size == engine.state_size == sum(widths)
        assert spec.input_shape == [engine.n_features]
    else:
        assert spec.engine_state_size is None


def _activity_json() -> dict:
    return json.loads((cards.model_dir("activity-gru-causal") / cards.CARD_FILE).read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("licence"), "card: missing field 'licence'"),
        (lambda c: c.update(colour="red"), "card: unknown field(s) colour"),
        (lambda c: c["recipe"].update(epochs="many"), "card.recipe.epochs: expected int, got str"),
        (lambda c: c["streaming"].update(mode="batch"), "card.streaming.mode: 'batch' is not one of"),
        (
            lambda c: c["state_spec"]["layers"][0]["states"][0].pop("dtype"),
            "states[0]: missing field 'dtype'",
        ),
        (
            lambda c: c["architecture"].update(cell="transformer"),
            "card.architecture.cell: 'transformer' is not",
        ),
        (
            lambda c: c["architecture"].update(units=0),
            "card.architecture: units and layers must be at least 1",
        ),
        (lambda c: c.update(schema_version=1), "schema_version 1 is not 2"),
        (lambda c: c.update(parameters=True), "card.parameters: expected int, got bool"),
    ],
)
def test_a_card_off_the_schema_is_refused_naming_the_field(change, message) -> None:
    raw = _activity_json()
    change(raw)
    with pytest.raises(cards.CardError) as err:
        cards.Card.from_json(raw)
    assert message in str(err.value) and "\n" not in str(err.value)
    # The schema file refuses it too, except a value only the type's own checks can judge (units >= 1).
    if raw.get("schema_version") == cards.SCHEMA_VERSION and "must be" not in message:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(raw, SCHEMA)


def test_a_broken_card_file_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys) -> None:
    from rnnzoo.cli import main

    folder = tmp_path / "activity-gru-causal"
    folder.mkdir()
    (folder / cards.MODEL_FILE).write_bytes(b"x")
    (folder / cards.CARD_FILE).write_text('{"name": "activity-gru-causal", "schema_version": 2}')
    monkeypatch.setattr(cards, "SAVED_MODELS", tmp_path)
    assert main(["info", "activity-gru-causal"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnzoo: ") and "missing field" in err and "\n" not in err


def test_write_card_stamps_hash_and_size(tmp_path) -> None:
    card = cards.Card.from_json(_activity_json())
    (tmp_path / cards.MODEL_FILE).write_bytes(b"not really a model")
    written = cards.write_card(tmp_path, dataclasses.replace(card, sha256="", file_size_bytes=0))
    assert written.file_size_bytes == 18 and written.sha256 == cards.sha256(tmp_path / cards.MODEL_FILE)
    assert cards.read_card(tmp_path) == written
