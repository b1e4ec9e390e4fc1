# ruff: noqa: F811 - the fixtures nats_server, tiny_file and workers are imported from test_jetstream
"""What `rnnzoo worker` shares with `rnnzoo serve` beyond stepping: reset subjects (a barrier in the partition's
stream order), the metrics endpoint (/metrics, /healthz, /readyz from the worker's public stats) and window
mode — each on a real nats-server, with the worker started as users start it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import offline
from test_jetstream import N_FEATURES, PARTITIONS, Fleet, nats_server, tiny_file  # noqa: F401

from streaming.ports import free_port, wait_port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _series(text: str, name: str) -> float:
    """The value of one Prometheus series line (`name` with its labels, as written)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no series {name!r} in:\n{text[:2000]}")


def test_a_reset_lands_between_the_right_readings_and_metrics_count_it(
    nats_server, tiny_file, tmp_path
) -> None:
    """A device's reset is published between its readings: the readings after it start again at step 0, equal
    to Keras over the readings since the reset; /metrics counts readings, resets and errors as they happened;
    /healthz and /readyz answer 200 while the worker serves."""
    port = free_port()
    log = open(tmp_path / "w.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming", "worker", "--nats", nats_server.url, "--model", tiny_file[0]]
        + ["--partitions", str(PARTITIONS), "--group", "tiny", "--checkpoint-interval", "0.2"]
        + ["--metrics-port", str(port)],
        env=tiny_file[1],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    model = tiny_file[2]
    rng = np.random.default_rng(4)
    before, after = rng.normal(size=(5, N_FEATURES)), rng.normal(size=(4, N_FEATURES))

    async def scenario() -> Fleet:
        fleet = Fleet(nats_server.url, devices=1, per_device=1)
        await fleet.connect()
        await fleet.wait_stream()
        js = fleet.nc.jetstream()
        for row in before:
            await js.publish("sensors.r1.imu", json.dumps(row.tolist()).encode())
        await js.publish("sensors.r1.reset", b"")
        await js.publish("sensors._bad.reset", b"")  # a reserved id: answered, not applied
        for row in after:
            await js.publish("sensors.r1.imu", json.dumps(row.tolist()).encode())
        deadline = time.monotonic() + 30
        while len(fleet.predictions["r1"]) < 9 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await fleet.close()
        return fleet

    try:
        wait_port(port, 30)
        fleet = asyncio.run(scenario())
        got = fleet.predictions["r1"]
        assert [p["step"] for p in got] == [0, 1, 2, 3, 4, 0, 1, 2, 3], got
        expected = np.concatenate(
            [
                offline(model, before[None].astype(np.float32))[0],
                offline(model, after[None].astype(np.float32))[0],
            ]
        )
        np.testing.assert_allclose([p["outputs"] for p in got], expected, atol=1e-5)
        assert [e["reason"] for e in fleet.errors] == ["bad device id"]
        status, text = _get(port, "/metrics")
        assert status == 200
        assert _series(text, 'rnnzoo_readings_total{model="tiny"}') == 9
        assert _series(text, 'rnnzoo_resets_total{model="tiny"}') == 1
        assert _series(text, 'rnnzoo_errors_total{model="tiny",reason="bad device id"}') == 1
        assert _series(text, "rnnzoo_broker_connected") == 1
        assert _get(port, "/healthz")[0] == 200
        status, text = _get(port, "/readyz")
        assert status == 200 and text.startswith("ready"), text
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0, (tmp_path / "w.log").read_text()[-3000:]


def _bidirectional(n_features: int = N_FEATURES):
    """A small non-causal classifier (bidirectional GRU, last step): it streams in window mode only."""
    import keras

    rng = np.random.default_rng(5)
    inputs = keras.Input(shape=(None, n_features))
    h = keras.layers.Bidirectional(keras.layers.GRU(5))(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.set_weights([(rng.normal(size=w.shape) * 0.5).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.mark.slow
def test_window_mode_answers_each_reading_with_the_model_on_its_last_w(
    nats_server, tiny_file, tmp_path
) -> None:
    """`--mode window --window 4`: every reading's prediction is the Keras model on that device's last 4
    readings (fewer, marked partial, until it has 4), devices interleaved."""
    model = _bidirectional()
    path = tmp_path / "bi.keras"
    model.save(path)
    log = open(tmp_path / "window.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming", "worker", "--nats", nats_server.url, "--model", str(path)]
        + ["--partitions", str(PARTITIONS), "--group", "tiny", "--mode", "window", "--window", "4"],
        env=tiny_file[1],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    W, n = 4, 7
    try:
        fleet = Fleet(nats_server.url, devices=3, per_device=n)

        async def scenario() -> None:
            await fleet.connect()
            await fleet.wait_stream(60)
            await fleet.publish(len(fleet.order))
            await fleet.wait_all(90)
            await fleet.close()

        asyncio.run(scenario())
        assert fleet.distinct() == 3 * n, (tmp_path / "window.log").read_text()[-3000:]
        for device in fleet.devices:
            got = sorted(fleet.predictions[device], key=lambda p: p["seq"])
            assert [p["step"] for p in got] == list(range(n))
            assert [p.get("partial", False) for p in got] == [k + 1 < W for k in range(n)]
            data = fleet.data[device]
            for k, p in enumerate(got):
                window = data[max(0, k + 1 - W) : k + 1][None]
                np.testing.assert_allclose(p["outputs"], offline(model, window)[0], atol=1e-5)
    finally:
        proc.terminate()
        proc.wait(30)
