"""Gradient diagnostics: ∂L/∂h_t against finite differences, and the gradient norms the training loop records."""

import json
import subprocess
import sys

import numpy as np
import pytest

import zoo
from rnnzoo.cli import main
from zoo.architecture import Architecture
from zoo.backend import keras
from zoo.builder import build_model
from zoo.diagnostics import GradientNormLog, _loss, gradient_flow, state_gradients, tracked_optimizer


def _tiny(cell: str, head: str = "step_classification") -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_model(
        Architecture(cell=cell, units=3, layers=2),
        head,
        n_features=2,
        n_outputs=3,
        norm_mean=np.zeros(2, "float32"),
        norm_var=np.ones(2, "float32"),
    )


@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
def test_state_gradient_matches_finite_differences(cell: str) -> None:
    model = _tiny(cell)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 2)).astype("float32")
    y = rng.integers(0, 3, size=4)
    _, grads = state_gradients(model, x, y, "step_classification")
    targets = np.repeat(y[:, None], 6, axis=1)
    for layer, t in ((0, 1), (1, 3)):  # a step early in the first layer, a later one in the second
        direction = rng.normal(size=(4, 3)).astype("float32")

        def loss_at(eps: float, layer: int = layer, t: int = t, direction: np.ndarray = direction) -> float:
            deltas = [np.zeros((4, 6, 3), "float32") for _ in grads]
            deltas[layer][:, t] = eps * direction
            return float(keras.ops.convert_to_numpy(_loss(model, x, targets, "step_classification", deltas)))

        eps = 1e-2
        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        analytic = float(np.sum(grads[layer][:, t] * direction))
        assert numeric == pytest.approx(analytic, rel=2e-2, abs=1e-5), (layer, t)
    assert all(g.shape == (4, 6, 3) for g in grads)


def test_flow_shape_and_causality() -> None:
    """With the last step's loss, every earlier state gets a gradient; with a sequence head likewise."""
    model = _tiny("gru")
    x = np.random.default_rng(1).normal(size=(5, 8, 2)).astype("float32")
    flow = gradient_flow(model, x, np.zeros(5, "int64"), "step_classification")
    assert flow.norms.shape == (2, 8) and np.all(flow.norms > 0) and len(flow.decay_decades()) == 2
    assert flow.layers == ["gru_0", "gru_1"] and flow.cells == ["gru", "gru"]


def test_tracked_optimizer_records_the_norm_before_clipping() -> None:
    """One update with lr 0: the recorded norm is the global gradient norm, and a tiny clipnorm fires."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4, 2)), keras.layers.GRU(3), keras.layers.Dense(2, activation="softmax")]
    )
    x = np.random.default_rng(0).normal(size=(8, 4, 2)).astype("float32")
    y = np.arange(8) % 2
    model.compile(optimizer=tracked_optimizer("sgd", 0.0, 1e-6), loss="sparse_categorical_crossentropy")
    hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[GradientNormLog()]).history
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    expected = float(np.sqrt(sum(np.sum(np.square(g)) for g in grads)))
    assert hist["grad_norm_mean"] == pytest.approx([expected] * 2, rel=1e-4)
    assert hist["grad_norm_max"] == pytest.approx([expected] * 2, rel=1e-4)
    assert hist["clip_fraction"] == [1.0, 1.0]


def test_diagnose_cli_writes_table_and_plot(tmp_path, capsys) -> None:
    assert (
        main(["diagnose", "activity-gru-causal", "--examples", "4", "--steps", "30", "--out", str(tmp_path)])
        == 0
    )
    data = json.loads((tmp_path / "gradient_flow.json").read_text())
    assert [layer["cell"] for layer in data["layers"]] == ["gru", "gru"]
    assert len(data["layers"][0]["grad_norm_per_step"]) == 30
    assert (tmp_path / "gradient_flow.csv").read_text().count("\n") == 31
    assert (tmp_path / "gradient_flow.png").stat().st_size > 5000
    assert "orders of magnitude" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["diagnose", "activity-bigru"],
        ["diagnose", "sentiment-bilstm"],
        ["diagnose", "activity-gru-causal", "--steps", "1"],
    ],
)
def test_diagnose_refuses_in_one_line(argv, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnzoo")


@pytest.mark.slow
def test_flow_is_the_same_on_jax(tmp_path) -> None:
    """The same model and batch on the JAX backend's autodiff gives the same curve."""
    x, y = zoo.test_data("activity-lstm-causal")
    ours = gradient_flow(zoo.load("activity-lstm-causal"), x[:4, :40], y[:4], "step_classification").norms
    code = (
        "import sys, numpy as np, zoo; from zoo.diagnostics import gradient_flow; x, y = zoo.test_data(sys.argv[1]); "
        "np.save(sys.argv[2], gradient_flow(zoo.load(sys.argv[1]), x[:4, :40], y[:4], 'step_classification').norms)"
    )
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    subprocess.run(
        [sys.executable, "-c", code, "activity-lstm-causal", str(tmp_path / "n.npy")], env=env, check=True
    )
    np.testing.assert_allclose(np.load(tmp_path / "n.npy"), ours, rtol=1e-3)
