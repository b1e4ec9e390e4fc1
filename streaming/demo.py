"""`rnnzoo demo`: an embedded broker, the service and simulated sensors in one process, shown live.

Needs no installed broker: amqtt (pure Python) listens on a free loopback port. With `--broker URL` the demo
uses that broker instead. The terminal shows one row per device, refreshed in place (rich): what it is
replaying, what the model says with what confidence, and each device's and the fleet's running accuracy. The
devices cycle through recordings of every class (device i plays class i, i+1, ... in turn), so the table shows
the model telling the activities apart. The service also serves the live page (streaming.live): its URL is
printed first.
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


def cycle_classes(data: Any, devices: int) -> Any:
    """The recordings reordered so that the simulator's device i replays class (i + k) mod C in its k-th round
    (the simulator gives device i sequence i + k * devices); unlabelled data is returned as it is."""
    import numpy as np

    from streaming.simulate import Dataset

    if data.y is None or np.ndim(data.y) != 1:
        return data
    classes = sorted({int(c) for c in data.y.tolist()})
    pools = {c: np.flatnonzero(data.y == c).tolist() for c in classes}
    taken = dict.fromkeys(classes, 0)
    rounds = max(len(classes), -(-len(data.y) // devices))
    order = []
    for k in range(rounds):
        for i in range(devices):
            c = classes[(i + k) % len(classes)]
            order.append(pools[c][taken[c] % len(pools[c])])
            taken[c] += 1
    return Dataset(data.X[order], data.y[order], data.class_names)


class DemoBoard:
    """What the terminal table shows: per device its replayed class, last prediction and running accuracy."""

    def __init__(self, devices: list[str], names: list[str] | None):
        self.names = names
        self.rows: dict[str, dict[str, Any]] = {
            d: {
                "step": None,
                "truth": None,
                "label": "",
                "conf": None,
                "correct": 0,
                "labelled": 0,
                "seen": set(),
            }
            for d in devices
        }
        self.correct = self.labelled = self.predictions = 0
        self._lock = threading.Lock()

    def update(self, device: str, seq: int, step: int, message: dict, truth: int | None) -> None:
        with self._lock:
            row = self.rows.get(device)
            if row is None:
                return
            self.predictions += 1
            outputs = message.get("outputs") or []
            row["step"] = message.get("step", step)
            row["label"] = message.get("label", "")
            row["conf"] = max(outputs) if self.names and outputs else None
            row["outputs"] = outputs[:3]
            if truth is not None and self.names:
                row["truth"] = self.names[truth]
                row["seen"].add(self.names[truth])
                hit = int(row["label"] == self.names[truth])
                row["correct"] += hit
                row["labelled"] += 1
                self.correct += hit
                self.labelled += 1

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def table(self, title: str) -> Any:
        from rich.table import Table

        table = Table(title=title, expand=False, caption=self._caption())
        table.add_column("device")
        if self.names:
            for name in ("replaying", "step", "model says", "confidence", "accuracy", "classes played"):
                table.add_column(
                    name, justify="right" if name in ("step", "confidence", "accuracy") else "left"
                )
        else:
            table.add_column("step", justify="right")
            table.add_column("outputs")
        with self._lock:
            for device, row in self.rows.items():
                step = "–" if row["step"] is None else str(row["step"])
                if not self.names:
                    table.add_row(device, step, ", ".join(f"{v:.3f}" for v in row.get("outputs", [])))
                    continue
                right = row["truth"] is not None and row["label"] == row["truth"]
                said = (
                    f"[green]{row['label']}[/]"
                    if right
                    else f"[red]{row['label']}[/]"
                    if row["label"]
                    else ""
                )
                conf = "" if row["conf"] is None else f"{row['conf']:.2f}"
                acc = f"{row['correct'] / row['labelled']:.0%}" if row["labelled"] else ""
                played = f"{len(row['seen'])}/{len(self.names)}"
                table.add_row(device, row["truth"] or "", step, said, conf, acc, played)
        return table

    def _caption(self) -> str:
        acc = self.accuracy
        return f"{self.predictions} predictions" + (
            f" · running accuracy {acc:.1%} over {self.labelled} labelled steps" if acc is not None else ""
        )


def run_demo(
    model: str,
    devices: int,
    rate: float,
    duration: float,
    broker_url: str | None,
    data_path: str | None,
    ui_port: int | None = 0,
    ui_host: str = "127.0.0.1",
    out: Any = print,
    console: Any = None,
) -> int:
    """Start broker (unless given), service (with the live page on `ui_port` unless None) and simulator; show
    every device live in the terminal and end with the accuracy."""
    from rich.console import Console
    from rich.live import Live

    from streaming.config import from_dict
    from streaming.live import LiveFeed, LiveServer, ServiceFleet
    from streaming.models import serve_model
    from streaming.service import Service
    from streaming.simulate import Simulator, load_dataset

    console = console or Console()
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
            # A metrics port (any free one) makes the service keep its latency histograms for the page.
            "service": {"max_delay_ms": 5, "ttl_s": 600, "metrics_port": 0 if ui_port is not None else None},
            "bindings": [{"topic": "sensors/+/imu", "model": model, "name": served.name}],
        }
    )
    service = Service(settings, models={0: served})
    server = None
    if ui_port is not None:
        feed = LiveFeed()
        feed.add_model(served.name, served.class_names)
        service.observer = feed
        server = LiveServer(feed, ServiceFleet(service), ui_host, ui_port).start()
        out(f"live page: {server.url}")
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    thread.start()
    try:
        if not service.wait_connected(10):
            raise ConnectionError(f"service could not connect to {broker_url}")
        data = load_dataset(model, data_path, engine.n_features, class_names=served.class_names)
        data = cycle_classes(data, devices)
        names = served.class_names
        length = data.X.shape[1]
        out(
            f"serving {served.name} in {served.mode} mode; {devices} devices at {rate:g} Hz for {duration:g} s; "
            f"each device replays a {length}-step recording, then the next class"
        )
        board = DemoBoard([f"sim{i:04d}" for i in range(devices)], names)
        sim = Simulator(broker_url, data, devices, rate, served.name, on_prediction=board.update)
        title = f"{served.name} · {devices} devices" + (f" · {server.url}" if server else "")
        runner = threading.Thread(
            target=sim.run, kwargs={"duration": duration}, name="simulator", daemon=True
        )
        try:
            with Live(board.table(title), console=console, refresh_per_second=4, transient=False) as live:
                runner.start()
                while runner.is_alive():
                    runner.join(0.25)
                    live.update(board.table(title))
                sim.drain(3.0)
                live.update(board.table(title))
            console.line()  # the last table stays on screen; the summary goes below it
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
        if server is not None:
            server.stop()
        if broker is not None:
            broker.stop()
        time.sleep(0)  # let daemon threads unwind before interpreter exit
