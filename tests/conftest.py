"""Shared fixtures: a private Mosquitto on a free port (killable, restartable) and an MQTT message collector."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from streaming.ports import free_port, wait_port

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


class Mosquitto:
    """A Mosquitto process of the test's own, on 127.0.0.1:<free port>; never the system broker."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # Started as root, Mosquitto drops to user `mosquitto`, which cannot read the test's private tmp
            # folder (log, password file); keep the caller's user (ignored when not root).
            "user root\n"
            # Tests and benchmarks burst thousands of messages; do not let the broker drop them for queue size.
            "max_queued_messages 1000000\n"
            f"log_dest file {self.log}\n"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not shutil.which(MOSQUITTO) and not os.path.exists(MOSQUITTO):
        pytest.skip(f"no mosquitto binary at {MOSQUITTO}")
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Collector:
    """Subscribes to topic filters and keeps every message; reconnects by itself if the broker restarts."""

    def __init__(self, port: int, topics: list[str]):
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._topics = topics
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "collector never subscribed"

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload))
            self._cond.notify_all()

    def of(self, prefix: str) -> list[tuple[str, dict]]:
        with self._cond:
            return [(t, json.loads(p)) for t, p in self.messages if t.startswith(prefix)]

    def exactly(self, topic: str) -> int:
        """How many messages arrived on exactly `topic` (not on topics it is a prefix of)."""
        with self._cond:
            return sum(1 for t, _ in self.messages if t == topic)

    def count(self, prefix: str) -> int:
        with self._cond:
            return sum(1 for t, _ in self.messages if t.startswith(prefix))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector_factory() -> Iterator[Callable[[int, list[str]], Collector]]:
    made: list[Collector] = []

    def make(port: int, topics: list[str]) -> Collector:
        c = Collector(port, topics)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def load_script(name: str) -> Any:
    """``scripts/<name>.py`` imported as a module (the scripts folder is not a package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: a dataclass in the script looks its module up while it is built.
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    return script


def tiny_model(n_features: int = 3, n_classes: int = 4, seed: int = 0):
    """A small causal classifier with random weights: Normalization → GRU → LSTM → Dropout → Dense softmax."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = keras.Input(shape=(None, n_features))
    h = keras.layers.Normalization(
        mean=rng.normal(size=n_features), variance=rng.uniform(0.5, 4, n_features)
    )(inputs)
    h = keras.layers.GRU(8, return_sequences=True)(h)
    h = keras.layers.LSTM(6, return_sequences=True, recurrent_dropout=0.1)(h)
    h = keras.layers.Dropout(0.2)(h)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.set_weights(
        [
            w if not v.trainable else (rng.normal(size=w.shape) * 0.6).astype(w.dtype)
            for v, w in zip(model.weights, model.get_weights(), strict=True)
        ]
    )
    return model


def offline(model, sequences):
    """The Keras model on whole sequences: the reference every streamed prediction must equal."""
    import keras

    return keras.ops.convert_to_numpy(model(sequences, training=False))


def start_service(
    broker_url: str,
    model,
    tmp_path=None,
    name: str = "tiny",
    broker: dict | None = None,
    runtime: str = "numpy",
    **service,
) -> tuple[Any, threading.Thread]:
    """A Service on its own thread serving `model` on sensors/+/imu; `service` overrides [service] settings;
    ``runtime`` "onnx" serves the model's exported ONNX step graph instead of the numpy engine."""
    from streaming.config import from_dict
    from streaming.models import build_served, with_runtime
    from streaming.service import Service

    settings = from_dict(
        {
            "broker": {"url": broker_url, "connect_timeout_s": 5.0, **(broker or {})},
            "service": {"max_delay_ms": 2, "status_interval_s": 0.5, **service},
            "bindings": [{"topic": "sensors/+/imu", "model": "tiny"}],
        }
    )
    served = with_runtime(build_served(model, None, name), runtime)
    svc = Service(settings, models={0: served})
    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    assert svc.wait_connected(10), "service never connected"
    time.sleep(0.2)  # let SUBACK arrive before the test publishes
    return svc, thread


def stop_service(svc, thread: threading.Thread) -> None:
    svc.stop()
    thread.join(10)
    assert not thread.is_alive()
