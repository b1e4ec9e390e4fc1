"""Exported step graphs (ONNX, LiteRT, SavedModel), run by their own runtimes, equal Keras on whole sequences."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import load_script, offline, tiny_model
from hypothesis import HealthCheck, assume, given, settings
from test_stream_step import architecture, build, float64_outputs, keras_outputs

import zoo
from rnnzoo.cli import main
from zoo.export import FORMATS, ExportError, digest, export_step, format_version, state_slots
from zoo.export.measure import parity, parity_data, stream
from zoo.export.runtimes import StepEngine, load_runtime
from zoo.export.tf_graph import litert_ops
from zoo.step import StepModel

EXACT = 1e-5  # the step engine's contract with Keras; float64-inside graphs compute exactly what it computes
# float32-inside graphs (LiteRT; ONNX/SavedModel with compute_dtype="float32") hold EXACT on short sequences, but
# over long ones their rounding adds up: the largest drift measured over >= 10,000 streamed steps of every
# shipped model was 5.3e-5 (LiteRT, abp-anomaly-gru's 7,500-step series; scripts/export_all.py).
FLOAT32_LONG = 1e-4
# activity-lstm-causal's own card records 1.45e-5 for the numpy engine on its test split (Keras's float32 rounding,
# amplified by that LSTM): a float64-inside graph is held to the engine's figure, not to EXACT, over long runs.
FLOAT64_LONG = 2e-5


def _streamed(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    return stream(load_runtime(path, fmt), x)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, StepModel, Path]:
    model = tiny_model()
    return model, StepModel.from_keras(model), tmp_path_factory.mktemp("tiny")


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_equals_keras_on_the_whole_sequence(tiny, fmt: str) -> None:
    model, step_model, tmp = tiny
    path = export_step(step_model, fmt, tmp / fmt)
    x = np.random.default_rng(1).normal(size=(7, 60, 3)).astype("float32") * 3
    runtime = load_runtime(path, fmt)
    # The graph's contract: named states in the card's order, one [B, units] tensor each, dynamic batch.
    assert runtime.state_names == ["layer0_h", "layer1_h", "layer1_c"]
    assert runtime.state_widths == [8, 6, 6]
    assert np.max(np.abs(stream(runtime, x) - offline(model, x))) <= EXACT
    for batch in (1, 64):  # the batch axis is dynamic
        y, states = runtime(np.zeros((batch, 3), np.float32), runtime.initial_state(batch))
        assert y.shape == (batch, 4) and states["layer1_c"].shape == (batch, 6)


def test_litert_uses_builtin_ops_only(tiny) -> None:
    _, step_model, tmp = tiny
    ops = litert_ops(export_step(step_model, "litert", tmp / "ops").read_bytes())
    assert ops and not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops), ops
    assert {"FULLY_CONNECTED", "LOGISTIC", "TANH"} <= set(ops)


def test_float32_onnx_and_engine_interface(tiny) -> None:
    """A float32-inside ONNX graph, and StepEngine (the serving interface) stepping devices at different times."""
    model, step_model, tmp = tiny
    engine = StepEngine(load_runtime(export_step(step_model, "onnx", tmp / "f32", "float32"), "onnx"))
    seqs = np.random.default_rng(2).normal(size=(3, 30, 3)).astype("float32")
    expected = offline(model, seqs)
    assert np.max(np.abs(engine.run(seqs) - expected)) <= EXACT
    state = engine.initial_state(3)
    assert state.shape == (3, step_model.state_size)
    got = np.zeros_like(expected)
    starts = [0, 5, 11]  # device d joins at step starts[d]; only devices with a reading are stepped
    for t in range(45):
        rows = [d for d in range(3) if 0 <= t - starts[d] < 30]
        if rows:
            y, state[rows] = engine.step(np.stack([seqs[d, t - starts[d]] for d in rows]), state[rows])
            for i, d in enumerate(rows):
                got[d, t - starts[d]] = y[i]
    assert np.max(np.abs(got - expected)) <= EXACT


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architecture)
def test_onnx_equals_keras_on_random_architectures(spec: dict) -> None:
    model, x = build(spec)
    expected = keras_outputs(model, x)
    assume(np.max(np.abs(expected - float64_outputs(model, spec, x))) <= EXACT / 4)  # see test_stream_step
    step_model = StepModel.from_keras(model)
    import onnxruntime as ort

    from zoo.export.onnx_graph import build_onnx

    for compute in ("float64", "float32"):
        session = ort.InferenceSession(build_onnx(step_model, compute).SerializeToString())
        slots = state_slots(step_model)
        states = {s.name: np.zeros((len(x), s.width), np.float32) for s in slots}
        ys = []
        for t in range(x.shape[1]):
            y, *new = session.run(None, {"x": x[:, t], **states})
            states = {s.name: v for s, v in zip(slots, new, strict=True)}
            ys.append(y)
        assert np.max(np.abs(np.stack(ys, axis=1) - expected)) <= EXACT, compute


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architecture)
def test_litert_equals_keras_on_random_architectures(tmp_path_factory, spec: dict) -> None:
    model, x = build(spec)
    expected = keras_outputs(model, x)
    assume(np.max(np.abs(expected - float64_outputs(model, spec, x))) <= EXACT / 4)
    path = export_step(StepModel.from_keras(model), "litert", tmp_path_factory.mktemp("lite"))
    assert np.max(np.abs(_streamed(path, "litert", x) - expected)) <= EXACT


SHIPPED = "chorales-lstm"


@pytest.mark.parametrize("fmt", FORMATS)
def test_shipped_model_export_equals_keras_and_its_card(tmp_path: Path, fmt: str) -> None:
    card = zoo.card(SHIPPED)
    path = zoo.export(SHIPPED, fmt, tmp_path)
    x = np.asarray(zoo.test_data(SHIPPED)[0], np.float32)[:, :100]  # 33 chorales x 100 frames
    assert np.max(np.abs(_streamed(path, fmt, x) - offline(zoo.load(SHIPPED), x))) <= EXACT
    recorded = (card.exports or {}).get(fmt)
    assert recorded is not None, "run python scripts/export_all.py"
    names = [s.name for layer in card.state_spec.layers for s in layer.states]
    assert [t.name for t in recorded.inputs] == ["x", *names]
    assert [t.name for t in recorded.outputs] == ["y", *(f"{n}_out" for n in names)]
    assert recorded.max_abs_diff_vs_keras <= EXACT and recorded.parity_steps >= 10_000
    if recorded.reproducible and recorded.format_version == format_version(fmt, recorded.compute_dtype):
        assert digest(path) == recorded.sha256  # the same tools make the same bytes: the card's hash holds


def test_cli_exports_and_refuses_what_it_cannot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "co2-forecast-gru", "--format", "onnx", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "step.onnx").is_file() and "layer0_h[B,32]" in out and "as the card records" in out
    for argv, message in [
        (["export", "activity-bigru", "--format", "onnx"], "activity-bigru is not causal"),
        (["export", "co2-forecst-gru", "--format", "onnx"], "co2-forecast-gru"),
        (["export", "co2-forecast-gru", "--format", "litert", "--compute-dtype", "float64"], "no float64"),
        (["export", "co2-forecast-gru", "--format", "onnx", "--out", str(tmp_path / "step.onnx")], "a file"),
        (["export", "co2-forecast-gru", "--format", "onnx", "--quantize", "int8"], "litert only"),
        (
            ["export", "sentiment-bigru", "--format", "litert", "--sequence", "--quantize", "dynamic"],
            "unquantised",
        ),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(ExportError, match="unknown export format"):
        zoo.export("co2-forecast-gru", "tflite")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo.list_models() if zoo.card(n).state_spec.steppable])
def test_every_causal_model_exports_within_its_card(tmp_path: Path, name: str) -> None:
    """Every format of every causal model over ≥ 10,000 streamed steps, against the card's figures."""
    card = zoo.card(name)
    data = parity_data(name, zoo.load(name))
    assert data.steps >= 10_000
    for fmt in FORMATS:
        path = zoo.export(name, fmt, tmp_path / fmt)
        diff = parity(load_runtime(path, fmt), data)
        assert diff <= (FLOAT64_LONG if fmt != "litert" else FLOAT32_LONG), (fmt, diff)
        assert card.exports is not None and card.exports[fmt].parity_steps == data.steps


def test_service_streams_an_exported_onnx_graph(tiny, mosquitto, collector_factory) -> None:
    """The MQTT service serving the ONNX step graph (StepEngine) answers each reading as Keras would."""
    import json
    import threading
    import time

    from conftest import publisher, stop_service

    from streaming.config import from_dict
    from streaming.models import ServedModel
    from streaming.service import Service

    model, step_model, tmp = tiny
    engine = StepEngine(load_runtime(export_step(step_model, "onnx", tmp / "serve"), "onnx"), "tiny-onnx")
    settings = from_dict(
        {
            "broker": {"url": mosquitto.url, "connect_timeout_s": 5.0},
            "service": {"max_delay_ms": 2, "status_interval_s": 0.5},
            "bindings": [{"topic": "sensors/+/imu", "model": "tiny"}],
        }
    )
    svc = Service(settings, models={0: ServedModel("tiny", engine, None, model)})  # type: ignore[arg-type]
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    assert svc.wait_connected(10)
    time.sleep(0.2)
    seqs = np.random.default_rng(3).normal(size=(3, 20, 3)).astype("float32")
    expected = offline(model, seqs)
    col = collector_factory(mosquitto.port, ["predictions/#", "errors/#"])
    pub = publisher(mosquitto.port)
    for t in range(20):
        for d in range(3):
            pub.publish(f"sensors/dev{d}/imu", json.dumps(seqs[d, t].tolist()))
    assert col.wait_for(lambda: col.count("predictions/") >= 60)
    assert col.count("errors/") == 0
    for topic, payload in col.of("predictions/"):
        d = int(topic.split("/")[1][3:])
        got = np.asarray(payload["outputs"], np.float32)
        assert np.max(np.abs(got - expected[d, payload["step"]])) <= EXACT, (topic, payload["step"])
    stop_service(svc, thread)
    pub.loop_stop()


QUANTIZED = "co2-forecast-gru"  # a small GRU forecaster: 2,282 test steps, its training split in memory
# A quantised graph's headline test metric (MAE here) stays within this fraction of the float32 LiteRT graph's
# (measured: dynamic-range +0.07 %, full-integer int8 +0.2 %; scripts/export_all.py records every model's).
QUANTIZED_METRIC_BOUND = 0.01


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_quantized_litert_is_builtin_only_and_keeps_the_test_metric(tmp_path: Path, mode: str) -> None:
    from zoo.export import quantize as q

    float_path = zoo.export(QUANTIZED, "litert", tmp_path)
    path = zoo.export(QUANTIZED, "litert", tmp_path, quantize=mode)
    assert path.name == f"step_{mode}.tflite" and path.stat().st_size < float_path.stat().st_size
    ops = litert_ops(path.read_bytes())
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops), ops
    runtime = load_runtime(path, "litert")
    assert runtime.state_names == ["layer0_h"]  # the same float32 state contract as the float graph
    float_mae = q.test_metrics(QUANTIZED, load_runtime(float_path, "litert"))["mae"]
    assert abs(float_mae - zoo.card(QUANTIZED).test_metrics["mae"]) < 1e-3  # the card's own evaluation
    mae = q.test_metrics(QUANTIZED, runtime)["mae"]
    assert abs(mae - float_mae) <= QUANTIZED_METRIC_BOUND * float_mae, (mode, mae, float_mae)


def test_calibration_uses_the_training_split_only() -> None:
    from zoo.export import quantize as q

    train = q.training_sequences(QUANTIZED, sequences=8)
    test = np.asarray(zoo.test_data(QUANTIZED)[0], np.float32)
    assert train.shape[0] == 8 and train.shape[2] == test.shape[2]
    step_model = StepModel.from_keras(zoo.load(QUANTIZED))
    rows = list(q.representative(step_model, train, samples=50)())
    assert len(rows) == 50 and set(rows[0]) == {"x", "layer0_h"} and rows[0]["x"].shape == (1, 1)
    from zoo.registry import get_spec
    from zoo.tasks import TASKS

    spec = get_spec(QUANTIZED)
    x_train = TASKS[spec.task].prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size).x_train
    assert np.array_equal(train[0], x_train[0]) and np.array_equal(train[-1], x_train[-1])
    pool = np.concatenate([train[:, :, 0], np.zeros((1, train.shape[1]), np.float32)], axis=None)
    assert all(np.isin(r["x"][0, 0], pool) for r in rows)  # every calibration reading is a training reading


@pytest.fixture(scope="module")
def tiny_bidirectional() -> keras.Model:
    """A small bidirectional GRU classifier (random weights): T = 12 steps of 3 features -> 4 classes."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((None, 3))
    h = keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))(inputs)
    h = keras.layers.Bidirectional(keras.layers.LSTM(6))(h)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(h))


@pytest.mark.parametrize("fmt", ["litert", "savedmodel", pytest.param("onnx", marks=pytest.mark.slow)])
def test_sequence_graph_of_a_bidirectional_model_equals_keras(
    tmp_path: Path, tiny_bidirectional, fmt
) -> None:
    from zoo.export.sequence import SequenceRuntime, write_sequence

    x = np.random.default_rng(4).normal(size=(9, 12, 3)).astype("float32")
    path = write_sequence(tiny_bidirectional, fmt, tmp_path, length=12)
    got = SequenceRuntime(path, fmt).predict(x)
    assert np.max(np.abs(got - np.asarray(tiny_bidirectional.predict(x, verbose=0)))) <= EXACT
    if fmt == "litert":  # unrolled over T: builtin ops only, no WHILE loop, no Flex
        ops = litert_ops(path.read_bytes())
        assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE", "WHILE") for op in ops), ops
        assert {"FULLY_CONNECTED", "LOGISTIC", "TANH"} <= set(ops)


def test_cli_exports_a_whole_sequence_graph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "export",
                "japanese-vowels-bigru",
                "--format",
                "savedmodel",
                "--sequence",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "sequence_savedmodel" / "saved_model.pb").is_file()
    assert "whole sequences" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_seq2seq() -> keras.Model:
    """A small BiGRU encoder + attention GRU decoder (zoo.builder.build_seq2seq, random weights)."""
    from zoo.builder import build_seq2seq

    keras.utils.set_random_seed(3)
    return build_seq2seq(30, 25, units=8, embedding=6)


@pytest.mark.parametrize("fmt", ["savedmodel", pytest.param("litert", marks=pytest.mark.slow)])
def test_encoder_and_decoder_step_equal_keras_teacher_forced(tmp_path: Path, tiny_seq2seq, fmt: str) -> None:
    from zoo.export.seq2seq import GraphRuntime, write_encoder_decoder

    rng = np.random.default_rng(0)
    src = rng.integers(4, 30, size=(5, 7)).astype("int32")
    src[1, 4:] = 0  # padded sources: the attention masks them (and LiteRT's unrolled backward GRU sees them)
    src[3, 2:] = 0
    tgt = rng.integers(4, 25, size=(5, 6)).astype("int32")
    tgt[:, 0] = 2
    paths = write_encoder_decoder(tiny_seq2seq, fmt, tmp_path, source_length=7)
    encoder, step = GraphRuntime(paths["encoder"], fmt), GraphRuntime(paths["decoder_step"], fmt)
    encoded = encoder(source=src)
    state, got = encoded["decoder_state"], []
    for t in range(tgt.shape[1]):  # teacher forcing: the graph is fed the target's previous token
        out = step(
            prev_token=tgt[:, t], decoder_state=state, encoder_outputs=encoded["encoder_outputs"], source=src
        )
        state = out["decoder_state_out"]
        got.append(out["log_probs"])
    want = np.log(np.maximum(np.asarray(tiny_seq2seq.predict([src, tgt], verbose=0)), 1e-12))
    assert np.max(np.abs(np.stack(got, 1) - want)) <= EXACT
    if fmt == "litert":
        for path in paths.values():
            ops = litert_ops(path.read_bytes())
            assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE", "WHILE") for op in ops), ops


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["savedmodel", "litert", "onnx"])
def test_translation_greedy_decoding_with_exported_graphs_equals_translator(tmp_path: Path, fmt: str) -> None:
    from zoo.export.seq2seq import FILES, GRAPHS, GraphRuntime, greedy
    from zoo.translation import load_translator

    name = "translate-en-fr-gru"
    assert main(["export", name, "--format", fmt, "--sequence", "--out", str(tmp_path)]) == 0
    translator = load_translator(name)
    src = translator.encode_sources(list(zoo.test_data(name)[0][:200])).astype(np.int32)
    encoder, step = (GraphRuntime(tmp_path / FILES[fmt][g], fmt) for g in GRAPHS)
    tokens, _ = greedy(encoder, step, src, translator.max_target)
    assert tokens == translator.decode_ids(src)
    assert zoo.card(name).exports[f"{fmt}-decoder-step"].greedy_match_rate == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_ctc_sequence_graph_decodes_the_same_digits_as_keras(tmp_path: Path, fmt: str) -> None:
    """digits-ctc-bigru's exported graphs differ from Keras by a few 1e-4 in log-probability (its card): on every
    test sequence each frame's most likely symbol is still Keras's, so greedy CTC decoding gives the same digits."""
    from zoo.export.sequence import SEQUENCE_FILES, SequenceRuntime

    name = "digits-ctc-bigru"
    assert main(["export", name, "--format", fmt, "--sequence", "--out", str(tmp_path)]) == 0
    x = np.asarray(zoo.test_data(name)[0], dtype=np.float32)
    got = SequenceRuntime(tmp_path / SEQUENCE_FILES[fmt], fmt).predict(x)
    want = np.asarray(zoo.load(name).predict(x, batch_size=64, verbose=0))
    assert np.abs(got - want).max() <= 1e-3
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_export_results_file_keeps_the_rows_of_models_not_re_measured(tmp_path) -> None:
    import json

    script = load_script("export_all")
    results = tmp_path / "r.json"
    script.write_results(results, ["a", "b"], [{"model": "a", "b1": 1.0}, {"model": "b", "b1": 2.0}])
    script.write_results(results, ["b"], [{"model": "b", "b1": 3.0}])
    rows = json.loads(results.read_text())["rows"]
    assert rows == [{"model": "a", "b1": 1.0}, {"model": "b", "b1": 3.0}]
