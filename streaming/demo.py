"""`rnnzoo demo`: an embedded broker, the service and simulated sensors in one process, printing live predictions.

Needs no installed broker: amqtt (pure Python) listens on a free loopback port. With `--broker URL` the demo
uses that broker instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from streaming.ports import free_port


class EmbeddedBroker:
    """amqtt running on its own asyncio loop in a daemon thread, on 127.0.0.1:<port>."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._broker: Any = None
        self._thread = threading.Thread(target=self._main, name="amqtt-broker", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as err:  # surfaced to the caller of start()
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        # amqtt logs every connection at INFO; the demo's output is the predictions.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded MQTT broker did not start")
        if self._error is not None:
            raise RuntimeError(f"embedded MQTT broker failed to start: {self._error}")
        return self

    def stop(self) -> None:
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(5)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def run_demo(
    model: str,
    devices: int,
    rate: float,
    duration: float,
    broker_url: str | None,
    data_path: str | None,
    every: int,
    out: Any = print,
) -> int:
    """Start broker (unless given), service and simulator; print predictions and the running accuracy."""
    from streaming.config import from_dict
    from streaming.models import serve_model
    from streaming.service import Service
    from streaming.simulate import Simulator, load_dataset

    out(f"loading {model} ...")
    served = serve_model(model)
    engine = served.engine
    broker = None
    if broker_url is None:
        broker = EmbeddedBroker().start()
        broker_url = broker.url
        out(f"embedded MQTT broker (amqtt) on {broker_url}")
    settings = from_dict(
        {
            "broker": {"url": broker_url, "connect_timeout_s": 5.0, "client_id": "rnnzoo-demo-service"},
            "service": {"max_delay_ms": 5, "ttl_s": 600},
            "bindings": [{"topic": "sensors/+/imu", "model": model, "name": served.name}],
        }
    )
    service = Service(settings, models={0: served})
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    thread.start()
    try:
        if not service.wait_connected(10):
            raise ConnectionError(f"service could not connect to {broker_url}")
        data = load_dataset(model, data_path, engine.n_features, class_names=served.class_names)
        names = served.class_names
        out(
            f"serving {served.name} in {served.mode} mode; {devices} devices at {rate:g} Hz for {duration:g} s"
        )
        printed = [0]

        def show(device: str, seq: int, step: int, message: dict, truth: int | None) -> None:
            printed[0] += 1
            if printed[0] % every:
                return
            label = message.get("label", "")
            conf = max(message["outputs"]) if names else None
            acc = sim.tally.accuracy
            truth_s = f"  truth {names[truth]:<10}" if names and truth is not None else ""
            acc_s = f"  running accuracy {acc:6.1%}" if acc is not None else ""
            value = f"{label:<10} ({conf:.2f})" if names else f"{message['outputs'][:3]}"
            out(f"{device}  step {message['step']:>4}  {value}{truth_s}{acc_s}")

        sim = Simulator(broker_url, data, devices, rate, served.name, on_prediction=show)
        try:
            sim.run(duration=duration)
            sim.drain(3.0)
        finally:
            sim.close()
        t = sim.tally
        lat = sorted(t.latencies)
        p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
        acc = (
            f", accuracy {t.accuracy:.1%} over {t.labelled} labelled steps" if t.accuracy is not None else ""
        )
        out(f"done: {t.sent} readings sent, {t.received} predictions received, p50 latency {p50:.1f} ms{acc}")
        return 0
    finally:
        service.stop()
        thread.join(10)
        if broker is not None:
            broker.stop()
        time.sleep(0)  # let daemon threads unwind before interpreter exit
