"""`rnnzoo fit` / `zoo.fit` on real tables: honest splits, baselines on the same split, exact streaming, and
one clear line (exit 2, no output folder) for every bad input.

The quick suite fits one small model (a few epochs) and streams it through a real Mosquitto; the full runs of
every task, Parquet input, the search and fine-tuning are in the slow suite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import publisher, start_service, stop_service
from fit_data import airline, covid_3month, gunpoint_recording, italy_power

import zoo
from rnnzoo.cli import main
from zoo.step import StepModel
from zoo.step.shipped import read_engine

TOLERANCE = 1e-5


def output_tolerance(model, x: np.ndarray) -> float:
    """The streaming contract for outputs in a target's own units: 1e-5, or 1e-5 of the outputs' magnitude where
    that is above 1. Two float32 computations of one model agree to float32's resolution, which scales with the
    number: at 50 its spacing is 3.8e-6, so 1e-5 there is under three steps of it (a forecast in passengers ran
    1.1e-5 from Keras on one machine and under 1e-5 on another)."""
    return TOLERANCE * max(1.0, float(np.abs(model.predict(x, verbose=0)).max()))


@pytest.fixture(scope="module")
def italy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return italy_power(tmp_path_factory.mktemp("data") / "italy.csv", days=160)


@pytest.fixture(scope="module")
def fitted(italy: Path, tmp_path_factory: pytest.TempPathFactory) -> zoo.fit.__class__:
    out = tmp_path_factory.mktemp("runs") / "italy"
    return zoo.fit(
        italy, "half_year", id="day", time_col="hour", epochs=4, out=out, verbose=0, say=lambda s: None
    )


def test_classify_card_holds_figures_baselines_and_parity(fitted) -> None:
    card = fitted.card
    assert card.task == "fit-classify" and card.head == "step_classification"
    assert card.class_names == ["1", "2"]
    m = card.test_metrics
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_step_accuracy_mean"):
        assert 0.0 <= m[key] <= 1.0
    assert set(m["per_class"]) == {"1", "2"} and sum(c["support"] for c in m["per_class"].values()) == 32
    assert set(card.baselines) == {"majority_class", "minirocket"}
    assert card.baselines["majority_class"]["balanced_accuracy"] == 0.5
    v = card.versus_baseline
    assert v.reference in card.baselines and v.details["metric"] == "balanced_accuracy"
    assert ("beats" in v.verdict) == v.details["beats"] and ("LOSES" in v.verdict) != v.details["beats"]
    assert card.streaming.mode == "step" and card.streaming.max_abs_diff_vs_keras <= TOLERANCE
    # split by sequence: 160 days -> 96 / 32 / 32, none in two splits
    assert (card.split["train"], card.split["validation"], card.split["test"]) == (96, 32, 32)
    assert card.split["by"] == "sequence" and len(set(card.split["test_ids"])) == 32
    assert card.dataset.details["rows"] == 160 * 24 and card.dataset.details["sequences"] == 160
    assert card.preprocessing.details["feature_names"] == ["demand"]
    assert card.recipe.details["chosen"].startswith("task classify")
    for f in ("model.keras", "card.json", "history.json", "learning_curve.png", "test_plot.png"):
        assert (fitted.folder / f).is_file()
    assert not [p for p in fitted.folder.parent.iterdir() if ".partial" in p.name]
    # It ships its step engine, read from these weights, so serving it needs numpy alone.
    engine = read_engine(fitted.folder, card.sha256)
    assert engine is not None and engine.fingerprint == StepModel.from_keras(fitted.model).fingerprint
    x = np.random.default_rng(0).normal(size=(3, 24, 1)).astype("float32")
    np.testing.assert_allclose(engine.run(x), fitted.model.predict(x, verbose=0), atol=TOLERANCE)


def test_fitted_folder_is_a_zoo_model(fitted, capsys: pytest.CaptureFixture) -> None:
    folder = str(fitted.folder)
    assert zoo.card(folder) == fitted.card
    fresh = zoo.evaluate(folder)  # re-reads the file, checks its sha256, rebuilds the same split
    assert fresh["balanced_accuracy"] == pytest.approx(fitted.card.test_metrics["balanced_accuracy"])
    x, _ = zoo.test_data(folder)
    assert main(["predict", folder, "--input", _npy(fitted.folder.parent / "x.npy", x[:2, :24])]) == 0
    assert capsys.readouterr().out.count("sequence ") == 2


def _npy(path: Path, x: np.ndarray) -> str:
    np.save(path, x)
    return str(path)


def test_fitted_model_streams_through_mosquitto_as_keras_runs_it(
    fitted, mosquitto, collector_factory
) -> None:
    model = zoo.load(str(fitted.folder))
    x, _ = zoo.test_data(str(fitted.folder))
    x = x[:4]
    expected = np.asarray(model.predict(x, verbose=0))
    svc, thread = start_service(mosquitto.url, model)
    col = collector_factory(mosquitto.port, ["predictions/#", "errors/#"])
    pub = publisher(mosquitto.port)
    for t in range(x.shape[1]):
        for d in range(len(x)):
            pub.publish(f"sensors/day{d}/imu", json.dumps(x[d, t].tolist()))
    total = x.shape[0] * x.shape[1]
    assert col.wait_for(lambda: col.count("predictions/") >= total), col.count("predictions/")
    got: dict[int, dict[int, list[float]]] = {}
    for topic, msg in col.of("predictions/"):
        got.setdefault(int(topic.split("/")[1][3:]), {})[msg["step"]] = msg["outputs"]
    stop_service(svc, thread)
    pub.loop_stop()
    for d in range(len(x)):
        streamed = np.array([got[d][t] for t in range(x.shape[1])])
        assert np.abs(streamed - expected[d]).max() <= TOLERANCE


# -- bad input: one line, exit 2, no output folder ---------------------------------------------------------


def _table(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _good(n: int = 12, t: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "dev": np.repeat([f"d{i}" for i in range(n)], t),
            "ts": np.tile(np.arange(t), n),
            "a": rng.normal(size=n * t),
            "b": rng.normal(size=n * t),
            "label": np.repeat(["x", "y"] * (n // 2), t),
        }
    )


def _bad_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    g = _good()
    nan = g.copy()
    nan.loc[[7, 9], "a"] = np.nan
    inf = g.copy()
    inf.loc[3, "b"] = 1e300
    text = g.copy()
    text["a"] = text["a"].astype(object)
    text.loc[4, "a"] = "oops"
    dup = g.copy()
    dup.loc[2, "ts"] = 1
    unsorted = g.copy()
    unsorted.loc[[2, 3], "ts"] = [3, 2]
    one_class = g.assign(label="x")
    few = g[g.dev.isin(["d0", "d1"])]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header = tmp_path / "header.csv"
    header.write_text("dev,ts,a,b,label\n")
    existing = tmp_path / "exists"
    existing.mkdir()
    csv = _table(tmp_path, g)
    fit = ["fit", "--id", "dev", "--time", "ts"]
    return [
        (fit + [csv, "--target", "lable", "--out", "o1"], "'label'"),  # misspelled: the closest is suggested
        (fit + [csv, "--target", "label", "--features", "a,c", "--out", "o2"], "'c' is not in"),
        (fit + [_table(tmp_path, text, "text.csv"), "--target", "label", "--features", "a,b", "--out", "o3"], "not numeric"),
        (fit + [_table(tmp_path, nan, "nan.csv"), "--target", "label", "--out", "o4"], "rows 8, 10"),
        (fit + [_table(tmp_path, inf, "inf.csv"), "--target", "label", "--out", "o5"], "non-finite"),
        (fit + [_table(tmp_path, one_class, "one.csv"), "--target", "label", "--out", "o6"], "single class"),
        (fit + [_table(tmp_path, few, "few.csv"), "--target", "label", "--task", "classify", "--out", "o7"], "at least 3"),
        (fit + [_table(tmp_path, dup, "dup.csv"), "--target", "label", "--out", "o8"], "duplicate time stamps"),
        (fit + [_table(tmp_path, unsorted, "uns.csv"), "--target", "label", "--out", "o9"], "backwards"),
        (fit + [str(empty), "--target", "label", "--out", "o10"], "is empty"),
        (fit + [str(header), "--target", "label", "--out", "o11"], "no rows"),
        (fit + [csv, "--target", "label", "--features", "a,label", "--out", "o12"], "among the features"),
        (fit + [csv, "--target", "label", "--from", "activity-gru-causal", "--out", "o13"], "expects 6 feature"),
        (fit + [csv, "--target", "label", "--out", str(existing)], "--force"),
        (fit + [str(tmp_path / "missing.csv"), "--target", "label", "--out", "o15"], "does not exist"),
        (fit + [csv, "--target", "label", "--epochs", "0", "--out", "o16"], "--epochs"),
        (fit + [csv, "--target", "label", "--learning-rate", "nan", "--out", "o17"], "--learning-rate"),
        (fit + [csv, "--target", "label", "--bidirectional", "--task", "tag", "--out", "o18"], "classify only"),
    ]  # fmt: skip


def test_every_bad_input_is_one_line_exit_2_and_leaves_no_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv, expected in _bad_cases(tmp_path):
        before = set(tmp_path.iterdir())
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("rnnzoo: error: "), (argv, err)
        assert expected in err, (argv, err)
        assert set(tmp_path.iterdir()) == before, argv  # nothing written, not even a partial folder


# -- full runs (slow suite) ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_tag_one_long_multichannel_recording_split_by_time(tmp_path: Path) -> None:
    data = gunpoint_recording(tmp_path / "gunpoint.parquet", gestures=60)
    r = zoo.fit(data, "gesture", time_col="t", epochs=8, out=tmp_path / "tag", verbose=0, say=lambda s: None)
    c = r.card
    assert c.task == "fit-tag" and c.split["by"] == "time"
    assert c.dataset.details["sample_rate_hz"] == pytest.approx(30.0)
    assert c.dataset.details["sha256"] and c.dataset.name == "gunpoint.parquet"
    assert set(c.baselines) == {"majority_class", "logistic_regression"}
    assert c.test_metrics["readings"] == c.split["readings"]["test"]
    assert c.streaming.max_abs_diff_vs_keras <= TOLERANCE


@pytest.mark.slow
def test_forecast_beside_naive_and_seasonal_naive(tmp_path: Path) -> None:
    r = zoo.fit(airline(tmp_path / "airline.csv"), "Passengers", time_col="Date", horizon=2, epochs=20,
                out=tmp_path / "air", verbose=0, say=lambda s: None)  # fmt: skip
    c = r.card
    assert c.task == "fit-forecast" and c.preprocessing.details["horizon"] == 2
    assert c.baselines["seasonal_naive"]["season"] == 12  # found on the training months' first difference
    assert {"mae", "rmse", "mase"} <= set(c.test_metrics) and len(c.test_metrics["mae_by_horizon"]) == 2
    series = pd.read_csv(tmp_path / "airline.csv")["Passengers"].to_numpy(np.float32)[None, :, None]
    assert c.streaming.max_abs_diff_vs_keras <= output_tolerance(r.model, series)
    assert zoo.evaluate(str(r.folder))["mae"] == pytest.approx(c.test_metrics["mae"], rel=1e-5)


@pytest.mark.slow
def test_regress_one_number_per_sequence_from_arrays(tmp_path: Path) -> None:
    x, y = covid_3month()
    r = zoo.fit(x=x, y=y, epochs=10, out=tmp_path / "covid", verbose=0, say=lambda s: None)
    c = r.card
    assert c.task == "fit-regress" and c.preprocessing.details["per"] == "sequence"
    assert set(c.baselines) == {"training_mean", "ridge"}
    assert c.streaming.max_abs_diff_vs_keras <= TOLERANCE


@pytest.mark.slow
def test_search_writes_the_whole_table_and_keeps_the_best_on_validation(italy: Path, tmp_path: Path) -> None:
    r = zoo.fit(italy, "half_year", id="day", time_col="hour", epochs=2, search=True, out=tmp_path / "s",
                verbose=0, say=lambda s: None)  # fmt: skip
    table = r.card.cell_comparison
    assert len(table) == 12 and sum(row["chosen"] for row in table) == 1
    best = min(table, key=lambda row: row["best_val_loss"])
    assert (
        best["chosen"]
        and r.card.architecture.cell == best["cell"]
        and r.card.architecture.units == best["units"]
    )


@pytest.mark.slow
def test_fine_tune_from_a_fitted_folder(italy: Path, fitted, tmp_path: Path) -> None:
    r = zoo.fit(italy, "half_year", id="day", time_col="hour", epochs=4, from_model=str(fitted.folder),
                out=tmp_path / "tuned", verbose=0, say=lambda s: None)  # fmt: skip
    info = r.card.recipe.details["fine_tuned_from"]
    assert info["model"] == "italy" and info["layers_copied"] == ["gru_0"] and info["head"] == "kept"
    assert "head_stage" in r.history
    scratch = r.card.baselines["same_architecture_from_scratch"]  # whether fine-tuning paid, on the card
    assert 0 <= scratch["balanced_accuracy"] <= 1 and "confusion_matrix" not in scratch


# -- tables read block by block: the same split and the same training examples as in memory ------------------


def _stream_examples(user) -> tuple[np.ndarray, ...]:
    items = list(user.stream._examples())
    return user.stack_items(items, user.stream.length)


def _sorted_rows(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[bytes]:
    return sorted(
        x[i].tobytes() + np.asarray(y[i], "float64").tobytes() + w[i].tobytes() for i in range(len(x))
    )


@pytest.mark.parametrize("kind", ["classify", "tag", "forecast"])
def test_block_by_block_reading_cuts_the_same_examples_as_memory(
    kind: str, tmp_path: Path, monkeypatch
) -> None:
    from zoo.data import blocks
    from zoo.tasks.user_table import build_task

    monkeypatch.setattr(blocks, "CHUNK_ROWS", 700)  # many blocks, sequences and windows cut across them
    if kind == "classify":
        data, args = italy_power(tmp_path / "t.csv", days=60), ("half_year", "day", "hour", None)
    elif kind == "tag":
        data, args = gunpoint_recording(tmp_path / "t.parquet", gestures=20), ("gesture", None, "t", None)
    else:
        data, args = airline(tmp_path / "t.csv"), ("Passengers", None, "Date", None)
    opts = dict(fill=None, task=kind, horizon=2 if kind == "forecast" else 1, window=None, season=None,
                balance="auto", seed=3)  # fmt: skip
    memory, _ = build_task(data, *args, **opts, chunked=False)
    blocks, _ = build_task(data, *args, **opts, chunked=True)
    assert blocks.split.how.startswith(memory.split.how) and blocks.window_len == memory.window_len
    head = "step_classification" if kind != "forecast" else "step_regression"
    pm, pb = memory.prepare(3, head), blocks.prepare(3, head)
    x, y, w = memory._arrays(memory.split.train, windowed=True)
    xs, ys, ws = _stream_examples(blocks)
    assert xs.shape == x.shape and _sorted_rows(x, y, w) == _sorted_rows(xs, ys, ws)
    np.testing.assert_allclose(pb.norm_mean, pm.norm_mean, rtol=1e-6)
    np.testing.assert_allclose(pb.norm_var, pm.norm_var, rtol=1e-5)
    xv, yv, wv = pb.x_val.x, pb.x_val.y, pb.x_val.w
    if kind == "forecast":  # batches bring standardised targets; the in-memory loop standardises them itself
        yv = yv * pb.target_std + pb.target_mean
        np.testing.assert_allclose(yv, pm.y_val, atol=1e-3)
    else:
        assert _sorted_rows(xv, yv, wv) == _sorted_rows(pm.x_val, pm.y_val, pm.w_val)
    batch = pb.x_train[0]
    assert batch[0].shape == (32, blocks.stream.length, x.shape[-1]) and len(pb.x_train) >= 1


@pytest.mark.slow  # a block-by-block fit end to end (about 30 s)
def test_a_table_read_block_by_block_fits_scores_and_streams(tmp_path: Path, monkeypatch) -> None:
    """A Parquet file read in blocks with the held-out rows capped: the card states the whole file's split
    and, apart, what was held in memory to score; the folder is a zoo model that steps like Keras."""
    from zoo.data import blocks, chunked

    monkeypatch.setattr(blocks, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(chunked, "MAX_HELD_READINGS", 500)  # fewer than each held-out split holds
    data = gunpoint_recording(tmp_path / "g.parquet", gestures=60)
    r = zoo.fit(data, "gesture", time_col="t", epochs=2, chunked=True, out=tmp_path / "big", verbose=0,
                say=lambda s: None)  # fmt: skip
    s = r.card.split
    rows = r.card.dataset.details["rows"]
    assert s["by"] == "time" and sum(s["readings"].values()) <= rows
    assert s["readings"]["test"] > s["held_in_memory"]["readings"]["test"] == 500
    assert s["readings"]["train"] > 0.55 * rows and "block by block" in s["read_from_disk"]
    assert r.card.test_metrics["readings"] == s["held_in_memory"]["readings"]["test"]
    assert r.card.streaming.max_abs_diff_vs_keras <= TOLERANCE
    assert zoo.card(str(r.folder)).split == s
