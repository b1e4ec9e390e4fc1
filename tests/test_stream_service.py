"""End to end through a real Mosquitto: predictions equal the offline model; bad payloads never hurt good ones."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
from conftest import offline, publisher, start_service, stop_service, tiny_model

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def by_device(messages: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for topic, msg in messages:
        out.setdefault(topic.split("/")[1], []).append(msg)
    return out


def assert_matches_offline(
    received: dict[str, list[dict]], sequences: np.ndarray, expected: np.ndarray, devices: list[str]
) -> None:
    for d, device in enumerate(devices):
        msgs = sorted(received[device], key=lambda m: m["step"])
        assert [m["step"] for m in msgs] == list(range(sequences.shape[1]))
        got = np.array([m["outputs"] for m in msgs])
        assert np.max(np.abs(got - expected[d])) <= TOLERANCE
        for m in msgs:
            assert m["label"] == str(int(np.argmax(m["outputs"])))
            assert list(m["probabilities"].values()) == m["outputs"]


# The same end-to-end contract for each runtime: the numpy engine and the exported ONNX and LiteRT step graphs
# (LiteRT's conversion starts a TensorFlow child: slow suite).
@pytest.mark.parametrize("runtime", ["numpy", "onnx", pytest.param("litert", marks=pytest.mark.slow)])
def test_interleaved_devices_equal_the_offline_model(mosquitto, collector_factory, model, runtime) -> None:
    rng = np.random.default_rng(1)
    devices = [f"dev{i}" for i in range(6)]
    seqs = rng.normal(size=(len(devices), 40, 3)).astype("float32") * 2
    expected = offline(model, seqs)
    svc, thread = start_service(mosquitto.url, model, runtime=runtime)
    col = collector_factory(mosquitto.port, ["predictions/#", "errors/#"])
    pub = publisher(mosquitto.port)
    # A random interleaving that keeps each device's own order; some readings as SenML, some as bare arrays.
    order = [d for d in range(len(devices)) for _ in range(seqs.shape[1])]
    random.Random(2).shuffle(order)
    position = [0] * len(devices)
    for k, d in enumerate(order):
        t = position[d]
        position[d] += 1
        values = seqs[d, t].tolist()
        if k % 3 == 0:
            payload = json.dumps(
                [
                    {"bn": f"urn:{devices[d]}:", "n": f"a{i}", "v": v, "u": "m/s2"}
                    for i, v in enumerate(values)
                ]
            )
        elif k % 3 == 1:
            payload = json.dumps({"values": values, "t": time.time()})
        else:
            payload = json.dumps(values)
        pub.publish(f"sensors/{devices[d]}/imu", payload)
    total = seqs.shape[0] * seqs.shape[1]
    assert col.wait_for(lambda: col.count("predictions/") >= total), col.count("predictions/")
    assert col.count("errors/") == 0
    assert_matches_offline(by_device(col.of("predictions/")), seqs, expected, devices)
    stop_service(svc, thread)
    pub.loop_stop()


BAD_PAYLOADS = [
    b"not json",
    b"{",
    b"\xff\xfe\x00",
    b'{"values": [1, 2]}',
    b'{"values": [1, 2, 3, 4]}',
    b'{"values": [1, "a", 3]}',
    b'{"values": [NaN, 1, 2]}',
    b'{"values": [1, Infinity, 2]}',
    b'{"values": [1e39, 1, 2]}',
    b'{"values": [true, 1, 2]}',
    b'{"values": "1,2,3"}',
    b'{"vals": [1, 2, 3]}',
    b'{"values": [1, 2, 3], "t": "yesterday"}',
    b"[]",
    b'"a string"',
    b"null",
    b"42",
    b'[{"n": "a", "vs": "high"}, {"n": "b", "v": 1}, {"n": "c", "v": 2}]',
    b'[{"n": "a", "v": 1}, 5]',
    b"[" * 3000 + b"]" * 3000,
    b'{"values": [' + b"1," * 40000 + b"1]}",  # over max_payload_bytes
]


# The ONNX runtime repeats these two in the slow suite (the interleaved test above runs both in the quick one).
ONNX_SLOW = [
    "numpy",
    pytest.param("onnx", marks=pytest.mark.slow),
    pytest.param("litert", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("runtime", ONNX_SLOW)
def test_malformed_payloads_answered_on_error_topic_and_valid_ones_unharmed(
    mosquitto, collector_factory, model, runtime
) -> None:
    rng = np.random.default_rng(3)
    devices = ["a", "b", "c", "d"]
    seqs = rng.normal(size=(len(devices), 50, 3)).astype("float32")
    expected = offline(model, seqs)
    svc, thread = start_service(mosquitto.url, model, runtime=runtime)
    col = collector_factory(mosquitto.port, ["predictions/#", "errors/#"])
    pub = publisher(mosquitto.port)
    n_bad = 0
    for t in range(seqs.shape[1]):
        for d, device in enumerate(devices):
            # Six bad payloads per good one, on the same device topics and on "bad-only" devices.
            for j in range(6):
                bad = BAD_PAYLOADS[(t * 24 + d * 6 + j) % len(BAD_PAYLOADS)]
                pub.publish(f"sensors/{device if j % 2 else 'junk' + str(j)}/imu", bad)
                n_bad += 1
            pub.publish(f"sensors/{device}/imu", json.dumps({"values": seqs[d, t].tolist()}))
    assert n_bad >= 1000
    total = seqs.shape[0] * seqs.shape[1]
    assert col.wait_for(lambda: col.count("predictions/") >= total and col.count("errors/") >= n_bad, 60), (
        col.count("predictions/"),
        col.count("errors/"),
    )
    assert col.count("errors/") == n_bad
    assert_matches_offline(by_device(col.of("predictions/")), seqs, expected, devices)
    errors = col.of("errors/")
    assert all(e["reason"] and e["topic"].startswith("sensors/") for _, e in errors)
    reasons = {e["reason"] for _, e in errors}
    assert {
        "not JSON",
        "wrong number of values",
        "non-numeric value",
        "non-finite value",
        "value out of float32 range",
        "payload too large",
        "bad timestamp",
    } <= reasons
    assert sum(svc.error_reasons.values()) == n_bad and svc.counters["readings"] == total
    assert thread.is_alive()
    stop_service(svc, thread)
    pub.loop_stop()


def test_a_full_table_makes_room_by_evicting_the_least_recently_seen_and_reset_restarts_a_device(
    mosquitto, collector_factory, model
) -> None:
    svc, thread = start_service(mosquitto.url, model, max_devices=2, ttl_s=None)
    col = collector_factory(mosquitto.port, ["predictions/#", "errors/#"])
    pub = publisher(mosquitto.port)
    x = json.dumps({"values": [0.1, 0.2, 0.3]})
    for n, device in enumerate(["a", "b", "c", "a", "c"], start=1):  # one at a time: one batch each
        pub.publish(f"sensors/{device}/imu", x)
        assert col.wait_for(lambda n=n: col.count("predictions/") >= n)
    steps = {d: [m["step"] for _, m in col.of(f"predictions/{d}/")] for d in "abc"}
    # c took a's place, then a (a newcomer again, from step 0) took b's; c kept its state throughout.
    assert steps == {"a": [0, 0], "b": [0], "c": [0, 1]} and col.count("errors/") == 0
    assert svc._counters()["evicted_lru"] == 2 and svc._counters()["evicted"] == 2
    pub.publish("sensors/c/reset", b"")
    pub.publish("sensors/c/imu", x)
    assert col.wait_for(lambda: col.count("predictions/c/") >= 3)
    assert [m["step"] for _, m in col.of("predictions/c/")] == [0, 1, 0]
    stop_service(svc, thread)
    pub.loop_stop()


@pytest.mark.parametrize("runtime", ONNX_SLOW)
def test_broker_killed_and_restarted_mid_stream(mosquitto, collector_factory, model, runtime) -> None:
    rng = np.random.default_rng(4)
    devices = ["x", "y", "z"]
    seqs = rng.normal(size=(len(devices), 30, 3)).astype("float32")
    expected = offline(model, seqs)
    svc, thread = start_service(mosquitto.url, model, runtime=runtime)
    col = collector_factory(mosquitto.port, ["predictions/#"])
    pub = publisher(mosquitto.port)
    half = 15

    def send(ts: range) -> None:
        for t in ts:
            for d, device in enumerate(devices):
                pub.publish(f"sensors/{device}/imu", json.dumps({"values": seqs[d, t].tolist()}), qos=1)

    send(range(half))
    assert col.wait_for(lambda: col.count("predictions/") >= half * len(devices))
    mosquitto.kill()
    time.sleep(1.0)
    mosquitto.start()
    # The service must come back by itself; probe until a reading of a fresh device is answered.
    deadline = time.monotonic() + 20
    while col.count("predictions/probe/") == 0 and time.monotonic() < deadline:
        pub.publish("sensors/probe/imu", json.dumps({"values": [0, 0, 0]}), qos=1)
        time.sleep(0.2)
    assert col.count("predictions/probe/") > 0, "service did not reconnect and re-subscribe"
    assert svc.counters["reconnects"] >= 1
    send(range(half, seqs.shape[1]))
    total = seqs.shape[0] * seqs.shape[1]
    assert col.wait_for(lambda: col.count("predictions/") - col.count("predictions/probe/") >= total)
    received = by_device([(t, m) for t, m in col.of("predictions/") if "/probe/" not in t])
    assert_matches_offline(received, seqs, expected, devices)
    stop_service(svc, thread)
    pub.loop_stop()


def test_a_backlog_of_unacknowledged_answers_never_stalls_the_loop(
    mosquitto, collector_factory, model, monkeypatch
) -> None:
    """With QoS 1 the broker's PUBACKs arrive on the socket we read readings from: a backlog of answers must
    make the loop write (and read the acks), never stop reading. A threshold of 3 forces the backlog path."""
    import streaming.service

    monkeypatch.setattr(streaming.service, "BACKPRESSURE_AT", 3)
    svc, thread = start_service(mosquitto.url, model, broker={"qos": 1}, max_batch=16)
    col = collector_factory(mosquitto.port, ["predictions/#"])
    pub = publisher(mosquitto.port)
    for t in range(100):
        for device in ("u", "v", "w"):
            pub.publish(f"sensors/{device}/imu", json.dumps({"values": [t, 0.5, -1]}), qos=1)
    assert col.wait_for(lambda: col.count("predictions/") >= 300, 30), col.count("predictions/")
    assert [m["step"] for _, m in col.of("predictions/u/")] == list(range(100))
    assert svc.counters["publish_dropped"] == 0
    stop_service(svc, thread)
    pub.loop_stop()
