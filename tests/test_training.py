"""The one training loop, end to end on the default (TensorFlow) backend with a tiny model."""

import json

import keras
import numpy as np
import pytest

import zoo
from zoo import cards


def test_tiny_activity_model_trains_and_exports(tmp_path) -> None:
    card = zoo.train("activity-gru-causal", out=tmp_path, verbose=0, units=4, layers=1, epochs=3, patience=2)
    folder = tmp_path / "activity-gru-causal"
    assert card.recipe.backend == keras.backend.backend()
    assert card.sha256 == cards.sha256(folder / "model.keras")
    assert card.streaming.mode == "step" and card.streaming.max_abs_diff_vs_keras <= 1e-5
    assert card.split["train"] + card.split["validation"] == 40 and card.split["test"] == 40
    assert 0.0 <= card.test_metrics["accuracy"] <= 1.0
    assert card.baselines["majority_class"]["accuracy"] == 0.25
    history = json.loads((folder / "history.json").read_text())
    assert len(history["loss"]) == card.recipe.epochs_run <= 3
    # The gradient norm before clipping, per epoch (zoo.diagnostics.GradientNormLog), for every model trained.
    assert (
        len(history["grad_norm_mean"])
        == len(history["grad_norm_max"])
        == len(history["clip_fraction"])
        == len(history["loss"])
    )
    assert all(0 < m <= mx for m, mx in zip(history["grad_norm_mean"], history["grad_norm_max"], strict=True))
    assert all(0.0 <= f <= 1.0 for f in history["clip_fraction"])
    assert (folder / "learning_curve.png").stat().st_size > 1000
    assert json.loads((folder / "card.json").read_text()) == card.to_json()
    assert card.file_size_bytes == (folder / "model.keras").stat().st_size and card.licence.data
    (layer,) = card.state_spec.layers
    assert [s.name for s in layer.states] == ["layer0_h"] and card.state_spec.engine_state_size == 4


def test_forecaster_head_emits_raw_units(tmp_path) -> None:
    """Targets are standardised for fitting and the scale is folded back into the head."""
    card = zoo.train("co2-forecast-gru", out=tmp_path, verbose=0, units=4, epochs=2, patience=1)
    model = keras.models.load_model(tmp_path / "co2-forecast-gru" / "model.keras")
    x, y = zoo.test_data("co2-forecast-gru")
    pred = np.asarray(model.predict(x, verbose=0))[0, :, 0]
    # Weekly CO2 changes by about ±1 ppm: raw-unit forecasts of the difference stay on that scale.
    assert np.abs(pred).max() < 10 and card.test_metrics["mase"] > 0
    assert (tmp_path / "co2-forecast-gru" / "test_plot.png").is_file()


@pytest.mark.slow  # a second training run (15 s); pigcvp-bigru, the shipped refit model, re-measures in CI
def test_refit_trains_a_fresh_model_on_train_plus_validation(tmp_path) -> None:
    """The validation run picks the epoch count; the shipped model is then fitted on all training data."""
    card = zoo.train(
        "activity-gru-causal", out=tmp_path, verbose=0, units=4, layers=1, epochs=3, patience=1, refit=True
    )
    history = json.loads((tmp_path / "activity-gru-causal" / "history.json").read_text())
    assert len(history["refit_loss"]) == history["best_epoch"] == card.recipe.best_epoch
    assert card.recipe.details["refit"] is True and "training + validation" in card.recipe.details["refit_on"]
    assert card.streaming.max_abs_diff_vs_keras <= 1e-5


def test_cosine_decay_lowers_the_learning_rate_every_epoch_to_zero(tmp_path) -> None:
    from zoo.registry import Recipe

    recipe = Recipe(epochs=4, learning_rate=1.0, lr_decay="cosine")
    assert [recipe.learning_rate_at(e) for e in range(4)] == pytest.approx(
        [1.0, 0.8536, 0.5, 0.1464], abs=1e-4
    )
    assert Recipe(learning_rate=0.5).learning_rate_at(7) == 0.5
    with pytest.raises(ValueError, match="lr_decay must be"):
        Recipe(lr_decay="step")
    zoo.train(
        "activity-gru-causal",
        out=tmp_path,
        verbose=0,
        units=4,
        layers=1,
        epochs=3,
        patience=3,
        lr_decay="cosine",
    )
    history = json.loads((tmp_path / "activity-gru-causal" / "history.json").read_text())
    lr = Recipe().learning_rate
    assert history["learning_rate"] == pytest.approx([lr, lr * 0.75, lr * 0.25], rel=1e-5)


def test_balanced_class_weights_make_every_class_count_equally() -> None:
    from zoo.training import class_weights

    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    w = class_weights(y, 4)
    assert [w[c] * (y == c).sum() for c in range(3)] == [10 / 4] * 3 and w[3] == 1.0
    with pytest.raises(ValueError, match="one integer label per sequence"):
        class_weights(np.zeros((3, 5), "int64"), 2)


@pytest.mark.slow  # 8 s: three seeds trained
def test_an_ensemble_recipe_trains_each_seed_as_alone_and_ships_them_stacked(tmp_path, monkeypatch) -> None:
    """members=2 trains seeds 0 and 1, each exactly as a one-model run of that seed, and ships them stacked.
    Only CTC decoding combines members, and the CTC task's data takes minutes to render, so this runs the loop on
    the tiny activity task with its scoring (which reads one model's outputs) replaced by a count of members."""
    from dataclasses import replace

    from zoo.registry import get_spec
    from zoo.tasks import TASKS
    from zoo.training import train_and_export

    task = type(TASKS["activity"])

    def members_seen(self, model, prepared, head) -> dict:
        return {"members_answered": int(np.asarray(model.predict(prepared.x_val[:2], verbose=0)).shape[1])}

    monkeypatch.setattr(task, "evaluate", members_seen)
    monkeypatch.setattr(task, "compare", lambda self, metrics, baselines: None)
    monkeypatch.setattr(task, "plot", lambda self, model, path: None)
    single = get_spec("activity-gru-causal").with_overrides(units=4, layers=1, epochs=2, patience=1)
    pair = replace(single, recipe=replace(single.recipe, members=2))
    card = train_and_export(pair, tmp_path / "pair", verbose=0)
    assert card.test_metrics == {"members_answered": 2}
    folder = tmp_path / "pair" / "activity-gru-causal"
    history = json.loads((folder / "history.json").read_text())
    assert [h["seed"] for h in history["members"]] == [0, 1]
    assert [m["seed"] for m in card.recipe.details["members_trained"]] == [0, 1]
    assert card.recipe.details["members"] == 2 and card.streaming.mode == "window"
    assert (folder / "learning_curve.png").stat().st_size > 1000
    x = zoo.test_data("activity-gru-causal")[0][:4]
    stacked = np.asarray(keras.models.load_model(folder / "model.keras").predict(x, verbose=0))
    seed1 = replace(single, recipe=replace(single.recipe, seed=1))
    train_and_export(seed1, tmp_path / "seed1", verbose=0)
    alone = keras.models.load_model(tmp_path / "seed1" / "activity-gru-causal" / "model.keras")
    np.testing.assert_allclose(stacked[:, 1], np.asarray(alone.predict(x, verbose=0)), atol=1e-6)
