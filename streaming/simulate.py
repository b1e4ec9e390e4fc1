"""Simulated sensors: replay held-out sequences of a model's dataset as MQTT devices, and check the answers.

Device i replays test sequences i, i+N, i+2N, ... at `rate` readings per second, sending a reset before each
sequence so the service's state for it starts from zero, as the offline model does. Every reading carries
`t` = its publish time; the service echoes it, which lets the checker pair each prediction with its reading
(and measure latency) without trusting arrival order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from streaming.config import _parse_url


@dataclass
class Dataset:
    """Sequences to replay: X [N, T, F]; y labels per sequence [N] or per step [N, T] (or None)."""

    X: np.ndarray
    y: np.ndarray | None
    class_names: list[str] | None = None

    def truth(self, seq: int, step: int) -> int | None:
        if self.y is None:
            return None
        y = self.y[seq]
        return int(y[step]) if np.ndim(y) else int(y)


@dataclass
class Tally:
    """What came back: predictions matched to readings, their error vs offline, accuracy, latency."""

    sent: int = 0
    received: int = 0
    checked: int = 0
    max_abs_diff: float = 0.0
    correct: int = 0
    labelled: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def connect(url: str, client_id: str = "") -> mqtt.Client:
    host, port, tls, user, password = _parse_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set()
    client.connect(host, port)
    return client


class Simulator:
    """Publish readings for `devices` devices and collect the predictions that come back.

    Args:
        broker_url: mqtt://host:port.
        data: the sequences to replay.
        devices: number of simulated devices.
        rate: readings per second per device.
        model_name: the {model} level of prediction topics to listen on.
        topic: reading topic template with {device}; resets go to the same with the last level "reset".
        expected: offline model outputs [N, T, K] for --check (None: no check).
        on_prediction: called with (device, seq, step, message, truth) for each prediction (the demo prints).
    """

    def __init__(
        self,
        broker_url: str,
        data: Dataset,
        devices: int,
        rate: float,
        model_name: str,
        topic: str = "sensors/{device}/imu",
        expected: np.ndarray | None = None,
        qos: int = 0,
        on_prediction: Callable[[str, int, int, dict, int | None], None] | None = None,
        prediction_topic: str = "predictions/+/{model}",
    ):
        self.data = data
        self.devices = [f"sim{i:04d}" for i in range(devices)]
        self.rate = rate
        self.topic = topic
        self.reset_topic = "/".join(topic.split("/")[:-1] + ["reset"])
        self.expected = expected
        self.qos = qos
        self.on_prediction = on_prediction
        self.tally = Tally()
        self._sent: dict[tuple[str, float], tuple[int, int, float]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.sub = connect(broker_url)
        self.sub.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(prediction_topic.format(model=model_name), qos), ("errors/+", 0)]
        )
        self.sub.on_subscribe = lambda *a: self._subscribed.set()
        self.sub.on_message = self._on_message
        self.sub.loop_start()
        self.pub = connect(broker_url)
        self.pub.loop_start()
        if not self._subscribed.wait(10):
            raise ConnectionError("could not subscribe to predictions")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        levels = msg.topic.split("/")
        if levels[0] == "errors":
            self.tally.errors += 1
            return
        try:
            message = json.loads(msg.payload)
        except ValueError:
            return
        device, t = levels[1], message.get("t")
        with self._lock:
            sent = self._sent.pop((device, t), None)
            self.tally.received += 1
            if sent is None:
                return
            seq, step, _ = sent
            self.tally.latencies.append(arrived - t)
            if self.expected is not None:
                diff = float(np.max(np.abs(np.asarray(message["outputs"]) - self.expected[seq, step])))
                self.tally.max_abs_diff = max(self.tally.max_abs_diff, diff)
                self.tally.checked += 1
            truth = self.data.truth(seq, step)
            if truth is not None and "outputs" in message:
                self.tally.labelled += 1
                self.tally.correct += int(np.argmax(message["outputs"]) == truth)
        if self.on_prediction:
            self.on_prediction(device, seq, step, message, truth)

    def run(
        self, duration: float | None = None, sequences: int | None = None, stop: threading.Event | None = None
    ) -> Tally:
        """Publish until `duration` seconds pass, each device has replayed `sequences` sequences, or stop."""
        n_seq, length = self.data.X.shape[0], self.data.X.shape[1]
        steps_total = length * sequences if sequences else None
        started = time.monotonic()
        tick = 0
        while True:
            if stop is not None and stop.is_set():
                break
            if duration is not None and time.monotonic() - started >= duration:
                break
            if steps_total is not None and tick >= steps_total:
                break
            k, step = divmod(tick, length)
            for i, device in enumerate(self.devices):
                seq = (i + k * len(self.devices)) % n_seq
                if step == 0:
                    self.pub.publish(self.reset_topic.format(device=device), b"", self.qos)
                t = time.time()
                with self._lock:
                    self._sent[(device, t)] = (seq, step, t)
                payload = json.dumps({"values": self.data.X[seq, step].tolist(), "t": t})
                self.pub.publish(self.topic.format(device=device), payload, self.qos)
                self.tally.sent += 1
            tick += 1
            # Pace by schedule, not by sleeping a fixed period, so publishing time does not slow the rate.
            delay = started + tick / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return self.tally

    def drain(self, timeout: float = 5.0) -> None:
        """Wait for outstanding predictions (up to timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._sent:
                    return
            time.sleep(0.05)

    @property
    def missing(self) -> int:
        with self._lock:
            return len(self._sent)

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.loop_stop()
            c.disconnect()


def load_dataset(
    model_spec: str,
    data_path: str | None,
    n_features: int,
    length: int = 100,
    class_names: list[str] | None = None,
) -> Dataset:
    """Test data for the replay: an .npz (X, y), the zoo's held-out split, or a random walk as a last resort."""
    if data_path:
        with np.load(data_path, allow_pickle=False) as f:
            return Dataset(
                np.asarray(f["X"], np.float32), np.asarray(f["y"]) if "y" in f else None, class_names
            )
    try:
        import zoo
        from zoo.loaders import is_fitted_folder

        if model_spec in zoo.list_models() or is_fitted_folder(model_spec):  # a fitted folder: its test split
            X, y = zoo.test_data(model_spec)
            return Dataset(np.asarray(X, np.float32), np.asarray(y), class_names)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    X = np.cumsum(rng.normal(size=(16, length, n_features)), axis=1).astype(np.float32) * 0.1
    return Dataset(X, None, class_names)
