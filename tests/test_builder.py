"""The one builder: every cell with every head, deep and bidirectional stacks, causality."""

import keras
import numpy as np
import pytest

from zoo.builder import CELLS, HEADS, Architecture, build_model, is_causal


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("head", HEADS)
def test_every_cell_builds_every_head(cell: str, head: str) -> None:
    arch = Architecture(cell=cell, units=4, layers=2, dropout=0.1, recurrent_dropout=0.1)
    model = build_model(arch, head, n_features=3, n_outputs=5, norm_mean=np.zeros(3), norm_var=np.ones(3))
    out = np.asarray(
        model.predict(np.random.default_rng(0).normal(size=(2, 7, 3)).astype("float32"), verbose=0)
    )
    assert out.shape == ((2, 5) if head == "sequence_classification" else (2, 7, 5))
    if HEADS[head] == "softmax":
        np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    assert is_causal(model) == (head != "sequence_classification")


def test_bidirectional_is_not_causal() -> None:
    arch = Architecture(cell="lstm", units=4, bidirectional=True)
    model = build_model(arch, "step_classification", 2, 3, np.zeros(2), np.ones(2))
    assert any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers)
    assert not is_causal(model)


def test_normalisation_lives_inside_the_model() -> None:
    arch = Architecture(cell="gru", units=3)
    mean, var = np.array([10.0, -5.0]), np.array([4.0, 9.0])
    model = build_model(arch, "step_regression", 2, 1, mean, var)
    x = np.random.default_rng(1).normal(size=(1, 4, 2)).astype("float32")
    normalised = model.get_layer("normalize")(x)
    np.testing.assert_allclose(np.asarray(normalised), (x - mean) / np.sqrt(var), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        dict(cell="transformer"),
        dict(units=0),
        dict(layers=0),
        dict(dropout=1.0),
        dict(recurrent_dropout=-0.1),
    ],
)
def test_bad_architecture_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Architecture(**bad)
