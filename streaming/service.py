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
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from streaming.config import Settings
from streaming.core import REJECTED_DEVICE, DevicePolicy, ModelStats, Stats, table_counters
from streaming.endpoint import Heartbeat, readiness, start_endpoint
from streaming.logs import LogBudget
from streaming.models import ServedModel, serve_model
from streaming.mqttconn import BrokerRefused, BrokerUnreachable, MqttConnection, client_id
from streaming.routing import Route, Routing, topic_safe
from streaming.snapshots import Snapshots
from zoo.step import one_blas_thread

if TYPE_CHECKING:
    from streaming.health import HealthServer
    from streaming.homeassistant import Discovery
    from streaming.metrics import ServiceHistograms

log = logging.getLogger("streaming")

# Outgoing messages: above BACKPRESSURE_AT the loop writes before it steps more (paho refuses, and the
# connection counts, publishes above streaming.mqttconn.MAX_OUTGOING).
BACKPRESSURE_AT = 20_000
__all__ = [
    "REJECTED_DEVICE",
    "BrokerRefused",
    "BrokerUnreachable",
    "Route",
    "Service",
    "run_until_signal",
    "topic_safe",
]


class Service:
    """Serve the bindings of `settings` until stop() (or SIGTERM through the CLI): the serving loop over the
    broker's socket (`streaming.mqttconn.MqttConnection`), the routing and stepping of each micro-batch
    (`streaming.routing.Routing`, over the shared core), status, probes and snapshots (`streaming.snapshots`).

    Args:
        settings: validated settings (streaming.config).
        models: optional pre-loaded models, by binding index (tests pass models they built).
    """

    def __init__(self, settings: Settings, models: dict[int, ServedModel] | None = None):
        self.settings = settings
        svc = settings.service
        # The device policy, shared with the JetStream worker (streaming.core).
        self.policy = DevicePolicy(
            svc.max_devices, svc.ttl_s, svc.max_new_devices_per_s, svc.max_device_id_bytes
        )
        self.routes: list[Route] = []
        loaded: dict[tuple, ServedModel] = {}
        for i, b in enumerate(settings.bindings):
            if models and i in models:
                served = models[i]
            else:
                cache_key = (b.model, b.mode, b.window, b.name)
                if cache_key not in loaded:
                    loaded[cache_key] = serve_model(
                        b.model,
                        b.mode,
                        b.window,
                        b.name,
                        svc.compute_dtype,
                        isolate=True,
                        runtime=svc.runtime,
                    )
                served = loaded[cache_key]
            table = self.policy.table(served.engine)
            self.routes.append(Route(b, served, table, f"{b.topic}|{served.name}", int(b.device_level or 0)))
        self.counters: Counter[str] = Counter()
        self._pending: list[tuple[str, bytes]] = []
        self._received = 0
        self._stop = threading.Event()
        self._started = time.time()
        self._log_budget = LogBudget(log)
        topics = {r.binding.topic for r in self.routes} | {
            r.binding.reset_topic for r in self.routes if r.binding.reset_topic
        }
        self.connection = MqttConnection(
            settings,
            list(topics),
            self.counters,
            self._log_budget,
            self._on_message,
            self._on_connected,
            self._stop,
        )
        self.client = self.connection.client
        # Routing, parsing, stepping and answering (streaming.routing); the service keeps the loop.
        self.routing = Routing(
            settings, self.routes, self.connection.publish, self.counters, self._log_budget
        )
        self.errors = self.routing.refusals.errors  # by (model, reason); "" where no binding was reached
        # Probes (/healthz, /readyz): the loop's last turn, SUBACK received, snapshot restored.
        self.heartbeat = Heartbeat("the service loop")
        self._restored = False
        self.histograms: ServiceHistograms | None = None
        self.http: HealthServer | None = None
        if svc.metrics_port is not None:
            from streaming.metrics import ServiceHistograms

            self.histograms = ServiceHistograms()
            for route in self.routes:
                route.step_seconds, route.latency_seconds = self.histograms.for_model(route.model.name)
        self._ha: Discovery | None = None
        if svc.homeassistant:
            from streaming.homeassistant import Discovery

            self._ha = Discovery(
                str(svc.homeassistant), svc.status_topic, svc.homeassistant_remove, self.connection.publish
            )
            self.routing.ha = self._ha
        self.snapshots = Snapshots(
            svc, self.routes, self.counters, self.histograms.snapshot_seconds if self.histograms else None
        )
        self.snapshots.restore()
        self._restored = True  # whatever it found: restored, none, or a bad one moved aside

    @property
    def error_reasons(self) -> Counter[str]:
        """Errors by reason, whatever the model (the status's "errors")."""
        return self.routing.refusals.reasons()

    @property
    def connected(self) -> bool:
        return self.connection.connected.is_set()

    def client_id(self) -> str:
        """The MQTT client id (`streaming.mqttconn.client_id`)."""
        return client_id(self.settings)

    def liveness(self) -> tuple[bool, str]:
        """(alive, why) for /healthz: the loop is running and went round lately (`Heartbeat`)."""
        return self.heartbeat.liveness()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why) for /readyz: connected to the broker, subscriptions acknowledged, snapshot restored."""
        missing = []
        if not self.heartbeat.running:
            missing.append("the service loop is not running")
        if not self.connection.connected.is_set():
            missing.append(f"not connected to {self.settings.broker.safe_url}")
        elif not self.connection.subscribed.is_set():
            missing.append("subscriptions not acknowledged yet")
        if not self._restored:
            missing.append("snapshot not restored yet")
        return readiness(missing)

    def snapshot_age(self) -> float | None:
        """Seconds since the last snapshot was written (since the start before the first); None without one."""
        return self.snapshots.age()

    def snapshot(self) -> None:
        """Write all state tables atomically to snapshot_path (between batches, so it is consistent)."""
        self.snapshots.save()

    def _on_message(self, topic: str, payload: bytes) -> None:
        # Thin on purpose: parsing and stepping happen per batch in _flush.
        self._pending.append((topic, payload))
        self._received += 1

    def _on_connected(self, reconnected: bool) -> None:
        if reconnected and self._ha is not None:
            self._ha.reconnected()  # a broker without persistence has forgotten the retained configs
        self._publish_status("online")

    def _backlogged(self) -> bool:
        """Too many answers wait to go out: leave the read loop so select() can write them (and collect the
        broker's acknowledgements) before more readings are stepped."""
        return self.connection.outgoing() > BACKPRESSURE_AT

    def _counters(self) -> dict[str, int]:
        """Service counters plus the state tables' own (evictions and refusals, exact, whoever caused them)."""
        return table_counters(self.counters, [route.table for route in self.routes])

    def stats(self) -> Stats:
        """What the service has counted, now (`streaming.core.Stats`): read by /metrics from its own thread."""
        models: dict[str, ModelStats] = {}
        for route in self.routes:
            m = models.setdefault(route.model.name, ModelStats(route.model.mode))
            m.readings += route.readings
            m.predictions += route.predictions
            m.resets += route.resets
            m.add_table(route.table)
        return Stats(
            received=self._received,
            counters=self._counters(),
            errors=dict(self.errors),  # a C-level copy: the loop may add a reason while we read
            models=models,
            connected=self.connected,
            outgoing=self.connection.outgoing(),
            snapshot_age_s=self.snapshot_age(),
        )

    def _publish_status(self, state: str) -> None:
        payload = {
            "state": state,
            "uptime_s": round(time.time() - self._started, 1),
            "counters": self._counters(),
            "errors": dict(self.error_reasons),
            "models": {r.model.name: {"mode": r.model.mode, "devices": len(r.table)} for r in self.routes},
        }
        self.client.publish(self.settings.service.status_topic, json.dumps(payload), qos=1, retain=True)

    # -- main loop ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish: it takes a final snapshot, publishes offline status and disconnects."""
        self._stop.set()

    def wait_connected(self, timeout: float) -> bool:
        return self.connection.connected.wait(timeout)

    def run(self) -> None:
        """Connect and serve until stop(). Raises BrokerUnreachable if the first connection never succeeds,
        OSError if the metrics port cannot be bound."""
        one_blas_thread()
        self.heartbeat.running = True
        self.heartbeat.beat()
        try:
            svc = self.settings.service
            if svc.metrics_port is not None:
                self.http = start_endpoint(
                    svc.metrics_host, svc.metrics_port, self, self.liveness, self.readiness
                )
            self._serve()
        finally:
            self.heartbeat.running = False
            self._log_budget.flush(final=True)
            if self.http is not None:
                self.http.stop()

    def _serve(self) -> None:
        svc = self.settings.service
        self._connect(time.monotonic() + self.settings.broker.connect_timeout_s)
        max_batch, max_delay = svc.max_batch, svc.max_delay_ms / 1000.0
        next_misc = next_status = next_evict = 0.0
        next_snapshot = time.monotonic() + svc.snapshot_interval_s
        client = self.client
        stop_reason = "stopped"
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
                    # Always readable: the broker's PUBACKs for our answers arrive on this socket too, so a
                    # loop that stopped reading to let answers drain would wait for ever (it did, in a soak).
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
                            # Answers go out as we go: under a sustained inflow the read side never drains,
                            # and writing only afterwards let the outgoing queue grow without bound.
                            if client.want_write():
                                client.loop_write()
                            if self._backlogged():
                                break
                            started = time.monotonic()
                            self.heartbeat.beat()
                    self._flush()
                if writable and client.socket() is not None:
                    client.loop_write()
                now = time.monotonic()
                self.heartbeat.beat()
                if now >= next_misc:
                    client.loop_misc()  # keepalive pings and QoS retries
                    self._log_budget.flush()  # "suppressed N lines" once a kind's period is over
                    next_misc = now + 1.0
                if now >= next_evict:
                    self.routing.evict()
                    next_evict = now + max(0.5, min((svc.ttl_s or 120.0) / 4, 30.0))
                if svc.snapshot_path and now >= next_snapshot:
                    self.snapshot()
                    next_snapshot = now + svc.snapshot_interval_s
                if now >= next_status and self.connection.connected.is_set():
                    self._publish_status("online")
                    next_status = now + svc.status_interval_s
        except BaseException as err:
            # Not a deliberate stop: say so in the last status, then let the error end the process.
            stop_reason = f"crashed: {type(err).__name__}"
            raise
        finally:
            try:
                self._flush()
            finally:
                if svc.snapshot_path:
                    self.snapshot()
            if client.socket() is not None:
                payload = json.dumps(
                    {"state": "offline", "reason": stop_reason, "counters": self._counters()}
                )
                info = client.publish(svc.status_topic, payload, qos=1, retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and client.socket() is not None and time.monotonic() < deadline:
                    client.loop(0.05)
                client.disconnect()

    def _connect(self, deadline: float | None) -> None:
        self.connection.connect(deadline, self.heartbeat.beat)  # backing off is alive: /healthz stays 200

    # -- answering (streaming.routing) ---------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self.counters["batches"] += 1
        if self.histograms is not None:
            self.histograms.batch_size.observe(len(batch))
        self.routing.answer(batch, time.time())

    def _error(self, *args: Any, **kwargs: Any) -> None:
        self.routing.error(*args, **kwargs)

    @property
    def observer(self) -> Any:
        """The live page's feed (`streaming.live.LiveFeed`, `--ui`), told of every answer; None: off."""
        return self.routing.observer

    @observer.setter
    def observer(self, feed: Any) -> None:
        self.routing.observer = feed


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
