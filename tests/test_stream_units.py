"""Fast unit tests: payload parsing, the state table and snapshots, config, step-model save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import offline, tiny_model

from streaming.config import ConfigError, from_dict
from streaming.payloads import PayloadError, parse
from streaming.state import FULL, StateTable, load_snapshot, save_snapshot
from streaming.worker import PredictionEncoder, stream_position, wave_index
from zoo.step import StepModel


def test_json_and_senml_forms_give_the_same_reading() -> None:
    assert parse(b'{"values": [1, 2.5, -3], "t": 7}', 3)[0].values == [1, 2.5, -3]
    assert parse(b"[1, 2.5, -3]", 3)[0].values == [1, 2.5, -3]
    senml = [{"bn": "urn:dev:a:", "bt": 100, "n": "x", "v": 1}, {"n": "y", "v": 2.5}, {"n": "z", "v": -3}]
    (r,) = parse(json.dumps(senml).encode(), 3)
    assert r.values == [1, 2.5, -3] and r.t == 100
    # Named order and two times in one pack → two readings, in order.
    pack = [
        {"bn": "d:", "bt": 10, "n": "z", "v": 3},
        {"n": "x", "v": 1},
        {"n": "y", "v": 2},
        {"n": "x", "t": 1, "v": 4},
        {"n": "y", "t": 1, "v": 5},
        {"n": "z", "t": 1, "v": 6},
    ]
    readings = parse(json.dumps(pack).encode(), 3, senml_names=["x", "y", "z"])
    assert [r.values for r in readings] == [[1, 2, 3], [4, 5, 6]] and [r.t for r in readings] == [10, 11]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"nope", "not JSON"),
        (b'{"values": [1, 2]}', "wrong number of values"),
        (b'{"values": [1, "2", 3]}', "non-numeric value"),
        (b'{"values": [1, NaN, 3]}', "non-finite value"),
        (b'{"values": [1, -Infinity, 3]}', "non-finite value"),
        (b'{"values": [1, 1e300, 3]}', "value out of float32"),
        (b'{"values": [1, false, 3]}', "non-numeric value"),
        (b'{"x": 1}', "missing values"),
        (b'{"values": [1, 2, 3], "t": "now"}', "bad timestamp"),
        (b"1" * 70000, "payload too large"),
        (b'[{"n": "a", "vb": true}]', "non-numeric value"),
        (b"[" * 5000, "not JSON"),
    ],
)
def test_bad_payloads_have_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse(payload, 3)
    assert err.value.reason.startswith(reason)


def test_state_table_slots_cap_ttl_and_reset() -> None:
    table = StateTable(state_size=2, max_devices=3, ttl_s=10, initial_capacity=1)
    slots = [table.slot(d, now=float(i)) for i, d in enumerate("abc")]
    assert len(set(slots)) == 3
    # Full: the least recently seen device ("a", seen at 0) makes room; nobody is locked out.
    assert table.slot("d", now=5.0) >= 0 and "a" not in table and {"b", "c", "d"} <= set(table.devices())
    assert table.counters["evicted_lru"] == 1
    table.commit(np.array([table.slot("b", 8.0), table.slot("c", 8.0)]), np.ones((2, 2), np.float32), now=8.0)
    assert table.slot("e", now=16.0) >= 0 and "d" not in table  # d idle since 5, past the ttl: idle eviction
    assert table.counters["evicted_idle"] == 1
    assert table.remove("b") and table.slot("b", now=16.0) >= 0 and table.steps[table.slot("b", 16.0)] == 0
    assert len(table.evict_idle(now=100.0)) == 3 and len(table) == 0 and table.counters["evicted_idle"] == 4


def test_devices_of_the_batch_being_built_are_never_evicted_for_a_newcomer() -> None:
    table = StateTable(state_size=1, max_devices=2)
    table.slot("a", 1.0), table.slot("b", 1.0)
    assert table.slot("c", 1.0) == FULL and table.counters["refused_full"] == 1  # both seen in this batch


def test_a_fleet_starting_at_once_is_admitted_while_there_is_room_only_churn_pays_the_cap() -> None:
    table = StateTable(state_size=4, max_devices=20_000, initial_capacity=8, max_new_per_s=1000)
    fleet = [table.slot(f"dev{i}", now=0.0) for i in range(10_000)]  # 10x the cap, in one instant
    assert min(fleet) >= 0 and table.counters["refused_rate"] == 0
    full = StateTable(state_size=4, max_devices=100, initial_capacity=8, max_new_per_s=50)
    for i in range(100):
        full.slot(f"old{i}", now=0.0)
    churn = [full.slot(f"fake{i}", now=1.0) for i in range(300)]  # each would evict a recently seen device
    assert sum(s >= 0 for s in churn) == 50 and full.counters["refused_rate"] == 250
    assert full.slot("fake0", now=1.0) >= 0 and len(full) == 100  # a known device is never rate limited


def test_new_device_cap_and_compaction_after_a_mass_eviction() -> None:
    table = StateTable(state_size=4, max_devices=100_000, ttl_s=1, initial_capacity=8, max_new_per_s=1000)
    admitted = [table.slot(f"fake{i}", now=0.0) for i in range(1500)]
    assert min(admitted) >= 0 and table.counters["refused_rate"] == 0  # room: no cap
    assert table.slot("fake0", now=0.0) >= 0
    for i in range(20):  # refilled at 1000/s
        table.slot(f"more{i}", now=1.0 + i)
    assert table.capacity >= 1024
    table.slot("real", now=100.0)
    table.evict_idle(now=100.0)
    assert len(table) == 1 and table.compact() and table.capacity == 8
    assert table.devices() == ["real"] and table.steps[table.slot("real", 100.0)] == 0


def test_snapshot_roundtrip_is_atomic_and_exact(tmp_path) -> None:
    table = StateTable(state_size=3, max_devices=100)
    slots = np.array([table.slot(f"d{i}", 1.0) for i in range(5)])
    table.commit(slots, np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32), 2.0)
    path = tmp_path / "snap.npz"
    save_snapshot(path, {"k": table}, {"k": "abc"})
    assert [p.name for p in tmp_path.iterdir()] == ["snap.npz"]  # no temp file left behind
    fingerprint, arrays = load_snapshot(path)["k"]
    restored = StateTable(state_size=3, max_devices=100)
    restored.load_arrays(arrays)
    assert fingerprint == "abc" and set(restored.devices()) == set(table.devices())
    for d in table.devices():
        assert np.array_equal(restored.state[restored.slot(d, 3.0)], table.state[table.slot(d, 3.0)])
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        load_snapshot(tmp_path / "bad.npz")


def test_config_errors_name_the_setting() -> None:
    ok = from_dict({"broker": {"url": "mqtts://u:p@host"}, "bindings": [{"topic": "s/+/imu", "model": "m"}]})
    assert ok.broker.port == 8883 and ok.broker.tls is not None and ok.broker.username == "u"
    assert ok.bindings[0].reset_topic == "s/+/reset" and ok.bindings[0].device_level == 1
    for bad, match in [
        ({"bindings": []}, "no \\[\\[bindings\\]\\]"),
        ({"service": {"max_batch": "many"}, "bindings": [{"topic": "s/+/x", "model": "m"}]}, "max_batch"),
        ({"service": {"colour": 1}, "bindings": [{"topic": "s/+/x", "model": "m"}]}, "colour"),
        ({"broker": {"qos": 2}, "bindings": [{"topic": "s/+/x", "model": "m"}]}, "qos"),
        ({"bindings": [{"topic": "s/#", "model": "m"}]}, "device id"),
        ({"broker": {"url": "http://x"}, "bindings": [{"topic": "s/+/x", "model": "m"}]}, "scheme"),
    ]:
        with pytest.raises(ConfigError, match=match):
            from_dict(bad)


def test_step_model_saved_and_loaded_without_keras_is_identical(tmp_path) -> None:
    model = tiny_model(seed=9)
    sm = StepModel.from_keras(model)
    sm.save(tmp_path / "step.npz")
    loaded = StepModel.load(tmp_path / "step.npz")
    x = np.random.default_rng(1).normal(size=(2, 15, 3)).astype(np.float32)
    assert np.array_equal(loaded.run(x), sm.run(x)) and loaded.fingerprint == sm.fingerprint
    assert np.max(np.abs(loaded.run(x) - offline(model, x))) <= 1e-5


def test_runtime_setting_and_swap() -> None:
    """`--runtime onnx` swaps the numpy engine for the exported ONNX step graph with the same state layout and
    fingerprint (snapshots move between runtimes); window mode and unknown runtimes are refused in one line."""
    from streaming.config import validate
    from streaming.models import ModelError, build_served, with_runtime
    from zoo.export.runtimes import StepEngine

    model = tiny_model()
    served = build_served(model, None, "tiny")
    onnx = with_runtime(served, "onnx")
    assert isinstance(onnx.engine, StepEngine) and onnx.engine.fingerprint == served.engine.fingerprint
    assert onnx.engine.state_size == served.engine.state_size
    x = np.random.default_rng(0).normal(size=(5, 7, 3)).astype("float32")
    assert np.abs(onnx.engine.run(x) - served.engine.run(x)).max() <= 1e-6
    with pytest.raises(ModelError, match="window mode"):
        with_runtime(build_served(model, None, "tiny", mode="window", window=4), "onnx")
    with pytest.raises(ModelError, match="unknown runtime"):
        with_runtime(served, "tpu")
    with pytest.raises(ConfigError, match="runtime must be"):
        validate(from_dict({"service": {"runtime": "tpu"}, "bindings": [{"topic": "s/+/x", "model": "m"}]}))


def test_prediction_encoder_writes_what_json_dumps_writes() -> None:
    """The one prediction schema (both transports): templated bytes equal json.dumps of the message dict, key for
    key — "seq" only where the transport adds it, "probabilities" beside "label" for classifiers."""
    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(5, 3)).astype(np.float32) * np.float32(1e-3) ** rng.integers(0, 4, (5, 1))
    outputs[0, 0] = -0.0
    names = ["walk", 'up "stairs"', "naïve"]
    seqs, steps, parts, times, partial = (
        [1, 2, 3, 4, 10**12],
        [0, 5, 6, 7, 8],
        [-1, 0, 1, -1, -1],
        [None, 1.5, 2e16, None, 3.0],
        [True, False, False, True, False],
    )
    for class_names in (None, names):
        for with_seq in (True, False):
            got = PredictionEncoder(3, class_names).encode(
                seqs if with_seq else None, steps, outputs, parts, times, partial
            )
            rows = np.round(outputs.astype(np.float64), 8).tolist()
            for i, body in enumerate(got):
                msg: dict = {"seq": seqs[i]} if with_seq else {}
                msg |= {"step": steps[i], "outputs": rows[i]}
                if class_names:
                    msg["label"] = class_names[int(np.argmax(outputs[i]))]
                    msg["probabilities"] = dict(zip(class_names, rows[i], strict=True))
                if parts[i] >= 0:
                    msg["reading"] = parts[i]
                if times[i] is not None:
                    msg["t"] = times[i]
                if partial[i]:
                    msg["partial"] = True
                assert body == json.dumps(msg, allow_nan=False).encode()


def test_wave_index_counts_each_devices_earlier_readings() -> None:
    slots = np.array([4, 2, 4, 4, 7, 2, 0])
    assert wave_index(slots).tolist() == [0, 0, 1, 2, 0, 1, 0]
    assert wave_index(np.array([], dtype=np.int64)).tolist() == []


def test_stream_position_reads_both_forms_of_the_ack_subject() -> None:
    """(stream sequence, stored-at ns) from `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`
    and from the 12-token form servers with a domain send."""
    assert stream_position("$JS.ACK.S.C.1.42.40.1700000000123456789.0") == (42, 1700000000123456789)
    domain = "$JS.ACK.hub.ACCHASH.S.C.2.43.41.1700000000123456790.5.rAnD0m"
    assert stream_position(domain) == (43, 1700000000123456790)
