"""StepModel equals the Keras model run on the whole sequence, on random architectures, weights and inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streaming.window import WindowModel
from zoo.step import NotStepable, StepModel

TOLERANCE = 1e-5

recurrent_layer = st.fixed_dictionaries(
    {
        "cell": st.sampled_from(["simple", "lstm", "gru", "gru_reset_before"]),
        "units": st.integers(1, 12),
        # Bounded cell activations only: with linear/relu cells and random weights the state grows
        # exponentially, and float32 itself (in Keras too) cannot hold 1e-5 there.
        "activation": st.sampled_from(["tanh", "tanh", "sigmoid", "softsign"]),
        # Gates are meant to lie in [0, 1]; a tanh gate makes the recurrence chaotic, where float32 rounding in
        # Keras alone is amplified past any tolerance.
        "recurrent_activation": st.sampled_from(["sigmoid", "hard_sigmoid"]),
        "use_bias": st.booleans(),
        "dropout": st.sampled_from([0.0, 0.2]),
    }
)

architecture = st.fixed_dictionaries(
    {
        "n_features": st.integers(1, 6),
        "normalise": st.sampled_from(["none", "given", "adapt"]),
        "recurrent": st.lists(recurrent_layer, min_size=1, max_size=3),
        "hidden": st.lists(
            st.tuples(st.integers(1, 8), st.sampled_from(["relu", "tanh", "elu", "linear"])), max_size=2
        ),
        "activation_layer": st.booleans(),
        "head": st.sampled_from(["softmax", "linear", "sigmoid"]),
        "n_outputs": st.integers(2, 5),
        "weight_scale": st.sampled_from([0.1, 0.5, 1.0]),
        "seed": st.integers(0, 2**16),
        "batch": st.integers(1, 4),
        "steps": st.integers(1, 25),
        "input_scale": st.sampled_from([1.0, 10.0]),
    }
)


def build(spec: dict) -> tuple[keras.Model, np.ndarray]:
    rng = np.random.default_rng(spec["seed"])
    f = spec["n_features"]
    x = (rng.normal(size=(spec["batch"], spec["steps"], f)) * spec["input_scale"] + 3.0).astype("float32")
    inputs = keras.Input(shape=(None, f))
    h = inputs
    if spec["normalise"] == "given":
        h = keras.layers.Normalization(mean=rng.normal(size=f) * 3, variance=rng.uniform(0.1, 9, size=f))(h)
    elif spec["normalise"] == "adapt":
        norm = keras.layers.Normalization()
        norm.adapt(x.reshape(-1, f))
        h = norm(h)
    for layer in spec["recurrent"]:
        common = dict(
            units=layer["units"],
            activation=layer["activation"],
            use_bias=layer["use_bias"],
            dropout=layer["dropout"],
            recurrent_dropout=layer["dropout"],
            return_sequences=True,
        )
        if layer["cell"] == "simple":
            h = keras.layers.SimpleRNN(**common)(h)
        elif layer["cell"] == "lstm":
            h = keras.layers.LSTM(recurrent_activation=layer["recurrent_activation"], **common)(h)
        else:
            h = keras.layers.GRU(
                recurrent_activation=layer["recurrent_activation"],
                reset_after=layer["cell"] == "gru",
                **common,
            )(h)
    h = keras.layers.Dropout(0.3)(h)
    for units, act in spec["hidden"]:
        h = keras.layers.Dense(units, activation=act)(h)
    if spec["activation_layer"]:
        h = keras.layers.Activation("tanh")(h)
    outputs = keras.layers.Dense(spec["n_outputs"], activation=spec["head"])(h)
    model = keras.Model(inputs, outputs)
    # Random weights everywhere except the normalisation statistics (non-trainable), at a drawn scale.
    model.set_weights(
        [
            w if not v.trainable else (rng.normal(size=w.shape) * spec["weight_scale"]).astype(w.dtype)
            for v, w in zip(model.weights, model.get_weights(), strict=True)
        ]
    )
    return model, x


def keras_outputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def float64_outputs(model: keras.Model, spec: dict, x: np.ndarray) -> np.ndarray:
    """The same function (same architecture and weights) evaluated by Keras in float64: the exact answer
    that float32 Keras approximates."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        exact, _ = build(spec)
        exact.set_weights([w.astype("float64") for w in model.get_weights()])
        return keras.ops.convert_to_numpy(exact(x.astype("float64"), training=False))
    finally:
        keras.config.set_dtype_policy(policy)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architecture)
def test_step_equals_keras_on_whole_sequence(spec: dict) -> None:
    model, x = build(spec)
    expected = keras_outputs(model, x)
    # Some random stacks (e.g. three sigmoid SimpleRNNs at weight scale 1) amplify rounding so much that float32
    # Keras is itself over 1e-5 from the exact float64 answer (seen: 1.9e-5, where the step engine was 1.5e-6 from
    # it). The contract cannot be checked against a reference that is not accurate to it: such draws are skipped.
    assume(np.max(np.abs(expected - float64_outputs(model, spec, x))) <= TOLERANCE / 4)
    got = StepModel.from_keras(model).run(x)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= TOLERANCE


def test_batched_devices_at_different_steps_equal_their_own_sequences() -> None:
    """Devices joining at different times, stepped together in one batch, each follow their own sequence."""
    model, _ = build(
        dict(
            n_features=3,
            normalise="given",
            recurrent=[
                dict(
                    cell="lstm",
                    units=8,
                    activation="tanh",
                    recurrent_activation="sigmoid",
                    use_bias=True,
                    dropout=0.0,
                ),
                dict(
                    cell="gru",
                    units=6,
                    activation="tanh",
                    recurrent_activation="sigmoid",
                    use_bias=True,
                    dropout=0.0,
                ),
            ],
            hidden=[],
            activation_layer=False,
            head="softmax",
            n_outputs=4,
            weight_scale=0.5,
            seed=1,
            batch=1,
            steps=1,
            input_scale=1.0,
        )
    )
    rng = np.random.default_rng(0)
    seqs = rng.normal(size=(3, 12, 3)).astype("float32")
    expected = keras_outputs(model, seqs)
    sm = StepModel.from_keras(model)
    state = sm.initial_state(3)
    # Device 0 starts at t=0, device 1 at t=4, device 2 at t=7: step only the devices that have a reading.
    starts = [0, 4, 7]
    got = np.zeros_like(expected)
    for t in range(20):
        rows = [d for d in range(3) if 0 <= t - starts[d] < 12]
        if not rows:
            continue
        xs = np.stack([seqs[d, t - starts[d]] for d in rows])
        y, new = sm.step(xs, state[rows])
        state[rows] = new
        for i, d in enumerate(rows):
            got[d, t - starts[d]] = y[i]
    assert np.max(np.abs(got - expected)) <= TOLERANCE


def test_a_batch_larger_than_one_numpy_pass_equals_its_devices_stepped_alone() -> None:
    """StepModel.step takes more than STEP_ROWS devices in slices; each device still follows its own sequence
    as Keras runs it, and as it would stepped alone."""
    from zoo.step import STEP_ROWS

    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.GRU(8, return_sequences=True), keras.layers.Dense(2)]
    )
    sm = StepModel.from_keras(model)
    n = 2 * STEP_ROWS + 7
    seqs = np.random.default_rng(4).normal(size=(n, 4, 3)).astype("float32")
    expected = keras_outputs(model, seqs)
    state, alone = sm.initial_state(n), sm.initial_state(n)
    for t in range(4):
        y, state = sm.step(seqs[:, t], state)
        assert np.max(np.abs(y - expected[:, t])) <= TOLERANCE
        for d in (0, STEP_ROWS, n - 1):  # the first row of the first, second and last slice
            y1, alone[d : d + 1] = sm.step(seqs[d : d + 1, t], alone[d : d + 1])
            np.testing.assert_allclose(y1[0], y[d], atol=1e-6)
    np.testing.assert_allclose(alone[[0, STEP_ROWS, n - 1]], state[[0, STEP_ROWS, n - 1]], atol=1e-6)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda h: keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True))(h), "future"),
        (lambda h: keras.layers.GRU(4)(h), "last state"),
        (lambda h: keras.layers.LSTM(4, return_sequences=True, go_backwards=True)(h), "backwards"),
        (lambda h: keras.layers.Conv1D(4, 3, padding="same")(h), "window mode"),
    ],
)
def test_non_causal_models_are_refused_with_a_reason(make, reason: str) -> None:
    inputs = keras.Input(shape=(None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(make(inputs)))
    with pytest.raises(NotStepable, match=reason):
        StepModel.from_keras(model)


def test_branching_graph_is_refused() -> None:
    inputs = keras.Input(shape=(None, 3))
    a = keras.layers.GRU(4, return_sequences=True)(inputs)
    b = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, keras.layers.Add()([a, b]))
    with pytest.raises(NotStepable, match="branching|window mode"):
        StepModel.from_keras(model)


def test_window_mode_runs_the_model_on_the_last_w_readings() -> None:
    inputs = keras.Input(shape=(None, 2))
    h = keras.layers.Bidirectional(keras.layers.GRU(3))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(h))
    wm = WindowModel(model, window=4)
    rng = np.random.default_rng(3)
    seq = rng.normal(size=(10, 2)).astype("float32")
    state = wm.initial_state(1)
    for t in range(10):
        y, state = wm.advance(seq[t : t + 1], state, np.array([t]))
        expected = keras_outputs(model, seq[None, max(0, t - 3) : t + 1])
        assert np.max(np.abs(y - expected)) <= TOLERANCE
