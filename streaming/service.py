"""The streaming service: MQTT readings in, one model step per reading, predictions out.

One thread does everything. It waits on the paho socket with select(), reads every packet already there
(the paho callback only appends the message to a list), and when the socket is drained, `max_batch` readings
are waiting, or the oldest has waited `max_delay_ms`, it steps the whole micro-batch at once and publishes.
Under light load that is one reading per batch (lowest latency); under heavy load batches grow by themselves.
A single thread avoids the GIL hand-offs and the queue of a network thread + engine thread, which on 2 cores
cost more than the model step itself (docs/streaming.md has the numbers).

Per-device order: a batch is cut into "waves" (the 1st reading of each device, then the 2nd, ...), stepped in
turn; a reset message is a barrier, applied after the readings that came before it.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from streaming.config import Binding, Settings
from streaming.models import ServedModel, serve_model
from streaming.payloads import PayloadError, Reading, parse
from streaming.state import FULL, StateTable, load_snapshot, save_snapshot

log = logging.getLogger("streaming")


class BrokerUnreachable(ConnectionError):
    """The first connection to the broker failed for connect_timeout_s."""


@dataclass
class Route:
    """One binding at run time: its topic filter, model, state table and output topics."""

    binding: Binding
    model: ServedModel
    table: StateTable
    key: str
    device_level: int
    _topics: dict[str, str] = field(default_factory=dict)

    def output_topic(self, device: str) -> str:
        topic = self._topics.get(device)
        if topic is None:
            if len(self._topics) > 200_000:
                self._topics.clear()  # a bounded cache: device ids may churn forever
            topic = self.binding.output_topic.format(device=device, model=self.model.name)
            self._topics[device] = topic
        return topic


class Service:
    """Serve the bindings of `settings` until stop() (or SIGTERM through the CLI).

    Args:
        settings: validated settings (streaming.config).
        models: optional pre-loaded models, by binding index (tests pass models they built).
    """

    def __init__(self, settings: Settings, models: dict[int, ServedModel] | None = None):
        self.settings = settings
        svc = settings.service
        self.routes: list[Route] = []
        loaded: dict[tuple, ServedModel] = {}
        for i, b in enumerate(settings.bindings):
            if models and i in models:
                served = models[i]
            else:
                cache_key = (b.model, b.mode, b.window, b.name)
                if cache_key not in loaded:
                    loaded[cache_key] = serve_model(
                        b.model, b.mode, b.window, b.name, svc.compute_dtype, isolate=True
                    )
                served = loaded[cache_key]
            table = StateTable(served.engine.state_size, svc.max_devices, svc.ttl_s)
            self.routes.append(Route(b, served, table, f"{b.topic}|{served.name}", int(b.device_level or 0)))
        self.counters: Counter[str] = Counter()
        self.error_reasons: Counter[str] = Counter()
        self._pending: list[tuple[str, bytes]] = []
        self._received = 0
        self._route_cache: dict[str, tuple[Route | None, str, bool]] = {}
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._started = time.time()
        self.client = self._make_client()
        self._restore()

    # -- MQTT plumbing -----------------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        broker = self.settings.broker
        client_id = broker.client_id or f"rnnzoo-{socket.gethostname()}-{os.getpid()}"
        clean = broker.clean_session if broker.clean_session is not None else broker.qos == 0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls is not None:
            tls = broker.tls
            client.tls_set(
                ca_certs=tls.ca_certs, certfile=tls.certfile, keyfile=tls.keyfile, cert_reqs=ssl.CERT_REQUIRED
            )
            client.tls_insecure_set(tls.insecure)
        status = self.settings.service.status_topic
        client.will_set(
            status, json.dumps({"state": "offline", "reason": "connection lost"}), qos=1, retain=True
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # QoS 1 publishes made while the broker is away are queued by paho; cap the queue so memory is bounded.
        client.max_queued_messages_set(100_000)
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        qos = self.settings.broker.qos
        topics = {r.binding.topic for r in self.routes} | {
            r.binding.reset_topic for r in self.routes if r.binding.reset_topic
        }
        # Subscribing here, not once after connect, re-subscribes after every reconnect.
        client.subscribe([(t, qos) for t in sorted(topics)])
        self._publish_status("online")
        self._connected.set()
        log.info("connected to %s, subscribed to %s", self.settings.broker.url, ", ".join(sorted(topics)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Thin on purpose: parsing and stepping happen per batch in _flush.
        self._pending.append((msg.topic, msg.payload))
        self._received += 1

    def _connect(self, deadline: float | None) -> None:
        broker = self.settings.broker
        delay = 0.05
        while not self._stop.is_set():
            try:
                if self.client.socket() is None and self.counters["connects"] == 0:
                    self.client.connect(broker.host, broker.port, broker.keepalive)
                else:
                    self.client.reconnect()
                self.counters["connects"] += 1
                return
            except (OSError, ssl.SSLError) as err:
                if deadline is not None and time.monotonic() > deadline:
                    raise BrokerUnreachable(
                        f"broker {broker.url} unreachable: {err.strerror or err}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _publish_status(self, state: str) -> None:
        payload = {
            "state": state,
            "uptime_s": round(time.time() - self._started, 1),
            "counters": dict(self.counters),
            "errors": dict(self.error_reasons),
            "models": {r.model.name: {"mode": r.model.mode, "devices": len(r.table)} for r in self.routes},
        }
        self.client.publish(self.settings.service.status_topic, json.dumps(payload), qos=1, retain=True)

    # -- main loop ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish: it takes a final snapshot, publishes offline status and disconnects."""
        self._stop.set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def run(self) -> None:
        """Connect and serve until stop(). Raises BrokerUnreachable if the first connection never succeeds."""
        svc = self.settings.service
        try:
            # One BLAS thread: micro-batch matmuls are small, and a second BLAS thread fighting the broker and
            # the network for 2 cores made a 512-row step 7x slower in measurement.
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
        except ImportError:
            pass
        self._connect(time.monotonic() + self.settings.broker.connect_timeout_s)
        max_batch, max_delay = svc.max_batch, svc.max_delay_ms / 1000.0
        next_misc = next_status = next_evict = 0.0
        next_snapshot = time.monotonic() + svc.snapshot_interval_s
        client = self.client
        try:
            while not self._stop.is_set():
                sock = client.socket()
                if sock is None:
                    self._flush()  # readings already received still get their predictions (queued if QoS 1)
                    self.counters["reconnects"] += 1
                    self._connect(None)
                    continue
                wlist = [sock] if client.want_write() else []
                try:
                    readable, writable, _ = select.select([sock], wlist, [], 0.2)
                except (ValueError, OSError):
                    client.loop_misc()  # the socket was closed under us: let paho notice and drop it
                    continue
                if readable:
                    started = time.monotonic()
                    while True:
                        before = self._received
                        if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is None:
                            break
                        if self._received == before:
                            break  # drained (or a non-PUBLISH packet): step what we have
                        if len(self._pending) >= max_batch or time.monotonic() - started >= max_delay:
                            self._flush()
                            started = time.monotonic()
                    self._flush()
                if writable and client.socket() is not None:
                    client.loop_write()
                now = time.monotonic()
                if now >= next_misc:
                    client.loop_misc()  # keepalive pings and QoS retries
                    next_misc = now + 1.0
                if now >= next_evict and svc.ttl_s:
                    self._evict()
                    next_evict = now + max(0.5, min(svc.ttl_s / 4, 30.0))
                if svc.snapshot_path and now >= next_snapshot:
                    self.snapshot()
                    next_snapshot = now + svc.snapshot_interval_s
                if now >= next_status and self._connected.is_set():
                    self._publish_status("online")
                    next_status = now + svc.status_interval_s
        finally:
            self._flush()
            if svc.snapshot_path:
                self.snapshot()
            if client.socket() is not None:
                payload = json.dumps(
                    {"state": "offline", "reason": "stopped", "counters": dict(self.counters)}
                )
                info = client.publish(svc.status_topic, payload, qos=1, retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and client.socket() is not None and time.monotonic() < deadline:
                    client.loop(0.05)
                client.disconnect()

    # -- the engine --------------------------------------------------------------------------------------------

    def _route_for(self, topic: str) -> tuple[Route | None, str, bool]:
        """(route, device, is_reset) for a topic, cached: matching filters per message is the slow part."""
        hit = self._route_cache.get(topic)
        if hit is not None:
            return hit
        levels = topic.split("/")
        result: tuple[Route | None, str, bool] = (None, "", False)
        for route in self.routes:
            b = route.binding
            if b.reset_topic and mqtt.topic_matches_sub(b.reset_topic, topic):
                result = (route, levels[route.device_level], True)
                break
            if mqtt.topic_matches_sub(b.topic, topic):
                result = (route, levels[route.device_level], False)
                break
        if len(self._route_cache) > 200_000:
            self._route_cache.clear()
        self._route_cache[topic] = result
        return result

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self.counters["batches"] += 1
        now = time.time()
        max_bytes = self.settings.service.max_payload_bytes
        # Work per route, in arrival order, cut at resets so a reset lands between the right readings.
        segment: dict[int, list[tuple[str, Reading]]] = {}
        for topic, payload in batch:
            route, device, is_reset = self._route_for(topic)
            if route is None:
                continue
            if is_reset:
                self._step_segment(segment, now)
                segment = {}
                self._reset(device)
                continue
            try:
                readings = parse(payload, route.model.engine.n_features, max_bytes, route.binding.senml_names)
            except PayloadError as err:
                self._error(device, topic, err.reason, err.detail)
                continue
            items = segment.setdefault(id(route), [])
            for reading in readings:
                items.append((device, reading))
        self._step_segment(segment, now)

    def _step_segment(self, segment: dict[int, list[tuple[str, Reading]]], now: float) -> None:
        for route in self.routes:
            items = segment.get(id(route))
            if items:
                self._step_route(route, items, now)

    def _step_route(self, route: Route, items: list[tuple[str, Reading]], now: float) -> None:
        table = route.table
        # Waves: the k-th wave holds each device's k-th reading of this batch, so every device advances in order.
        waves: list[list[tuple[int, str, Reading]]] = []
        seen: dict[int, int] = {}
        for device, reading in items:
            slot = table.slot(device, now)
            if slot == FULL:
                self._error(device, "", "device limit reached", f"max_devices={table.max_devices}")
                continue
            k = seen.get(slot, 0)
            seen[slot] = k + 1
            if k == len(waves):
                waves.append([])
            waves[k].append((slot, device, reading))
        engine = route.model.engine
        for wave in waves:
            slots = np.fromiter((w[0] for w in wave), dtype=np.int64, count=len(wave))
            x = np.array([w[2].values for w in wave], dtype=np.float32)
            steps = table.steps[slots]
            outputs, new_state = engine.advance(x, table.state[slots], steps)
            table.commit(slots, new_state, now)
            self._publish_predictions(route, wave, steps, outputs)

    def _publish_predictions(
        self, route: Route, wave: list[tuple[int, str, Reading]], steps: np.ndarray, outputs: np.ndarray
    ) -> None:
        svc = self.settings.service
        qos = self.settings.broker.qos
        names = route.model.class_names
        # Rounding to 8 decimals keeps float32 values well inside 1e-5 and halves the JSON size.
        rows = np.round(outputs.astype(np.float64), 8).tolist()
        labels = np.argmax(outputs, axis=1).tolist() if names else None
        step_list = steps.tolist()
        partial = route.model.mode == "window"
        window = getattr(route.model.engine, "window", 0)
        records = []
        publish = self.client.publish
        for i, (_, device, reading) in enumerate(wave):
            msg: dict[str, Any] = {"step": step_list[i], "outputs": rows[i]}
            if names is not None:
                msg["label"] = names[labels[i]]
                msg["probabilities"] = dict(zip(names, rows[i], strict=True))
            if reading.t is not None:
                msg["t"] = reading.t
            if partial and step_list[i] + 1 < window:
                msg["partial"] = True
            if svc.output != "batch":
                publish(route.output_topic(device), json.dumps(msg), qos)
            if svc.output != "reading":
                msg.pop("probabilities", None)  # outputs already carry them; batch consumers want it compact
                msg["device"] = device
                records.append(msg)
        if records:
            topic = svc.batch_topic.format(model=route.model.name)
            publish(topic, json.dumps({"model": route.model.name, "predictions": records}), qos)
        self.counters["readings"] += len(wave)
        self.counters["predictions"] += len(wave)

    def _error(self, device: str, topic: str, reason: str, detail: str) -> None:
        self.counters["errors"] += 1
        self.error_reasons[reason] += 1
        payload = json.dumps({"reason": reason, "detail": detail[:200], "topic": topic})
        self.client.publish(self.settings.service.error_topic.format(device=device), payload, 0)

    def _reset(self, device: str) -> None:
        for route in self.routes:
            if route.table.remove(device):
                self.counters["resets"] += 1

    def _evict(self) -> None:
        now = time.time()
        for route in self.routes:
            evicted = route.table.evict_idle(now)
            if evicted:
                self.counters["evicted"] += len(evicted)
                log.info("evicted %d idle devices from %s", len(evicted), route.model.name)

    # -- snapshots ---------------------------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Write all state tables atomically to snapshot_path (between batches, so it is consistent)."""
        path = self.settings.service.snapshot_path
        if not path:
            return
        tables = {r.key: r.table for r in self.routes}
        fingerprints = {r.key: r.model.engine.fingerprint for r in self.routes}
        try:
            save_snapshot(path, tables, fingerprints)
            self.counters["snapshots"] += 1
        except OSError as err:
            # A full disk must not stop predictions; the next interval tries again.
            log.error("snapshot to %s failed: %s", path, err)

    def _restore(self) -> None:
        path = self.settings.service.snapshot_path
        if not path or not os.path.exists(path):
            return
        try:
            saved = load_snapshot(path)
        except ValueError as err:
            log.error("%s; starting with empty state", err)
            return
        for route in self.routes:
            if route.key not in saved:
                continue
            fingerprint, arrays = saved[route.key]
            if fingerprint != route.model.engine.fingerprint:
                log.warning("snapshot for %s was taken with other weights; starting it empty", route.key)
                continue
            try:
                route.table.load_arrays(arrays)
            except ValueError as err:
                log.warning("snapshot for %s not restored: %s", route.key, err)
                continue
            log.info("restored %d devices for %s from %s", len(route.table), route.key, path)


def run_until_signal(service: Service, on_started: Callable[[], None] | None = None) -> None:
    """Run in the main thread; SIGTERM and SIGINT stop the service cleanly (final snapshot, offline status)."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        service.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if on_started:
        on_started()
    service.run()
