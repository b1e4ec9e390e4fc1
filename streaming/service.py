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

import hashlib
import json
import logging
import os
import random
import re
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import paho.mqtt.client as mqtt

from streaming.config import Binding, Settings
from streaming.logs import LogBudget
from streaming.models import ServedModel, serve_model
from streaming.payloads import PayloadError, Reading, parse
from streaming.state import FULL, RATE_LIMITED, SnapshotError, StateTable, load_snapshot, save_snapshot
from zoo.step import one_blas_thread

if TYPE_CHECKING:
    from streaming.health import HealthServer
    from streaming.homeassistant import Discovery
    from streaming.metrics import Histogram, ServiceHistograms

log = logging.getLogger("streaming")

# Reconnect delays: 0.1 s doubling to 30 s, each drawn from [d/2, d] so a fleet of services restarted together
# does not hammer the broker in lock-step. Without a delay a refused password meant ~1,600 attempts a second.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 30.0
# Outgoing messages: above BACKPRESSURE_AT the loop writes before it steps more; paho refuses (and we count)
# publishes above MAX_OUTGOING.
BACKPRESSURE_AT, MAX_OUTGOING = 20_000, 200_000
# Service-owned error topic level for readings whose device id cannot be echoed (too long, reserved).
REJECTED_DEVICE = "_rejected"
# /healthz fails when the loop has not gone round for this long. It goes round at least every 0.2 s (the
# select timeout) and during reconnect backoffs (30 s at most); a 1,000,000-device snapshot takes seconds.
STALLED_AFTER_S = 60.0


class BrokerUnreachable(ConnectionError):
    """The first connection to the broker failed for connect_timeout_s."""


class BrokerRefused(ConnectionError):
    """At start-up the broker refused us (credentials, TLS) a bounded number of times: retrying cannot help."""


def topic_safe(name: str) -> str:
    """A model name usable as one topic level: MQTT wildcards, separators and control characters become '_'."""
    return re.sub(r"[+#/\x00-\x1f\x7f]", "_", name) or "_"


@dataclass
class Route:
    """One binding at run time: its topic filter, model, state table and output topics."""

    binding: Binding
    model: ServedModel
    table: StateTable
    key: str
    device_level: int
    _topics: dict[str, str] = field(default_factory=dict)
    # Counted here, read by the metrics collector at scrape time (the status carries the service's totals).
    readings: int = 0
    predictions: int = 0
    resets: int = 0
    # Set when metrics are on; the loop observes into them once per wave.
    step_seconds: Histogram | None = None
    latency_seconds: Histogram | None = None

    def output_topic(self, device: str) -> str:
        topic = self._topics.get(device)
        if topic is None:
            if len(self._topics) > 200_000:
                self._topics.clear()  # a bounded cache: device ids may churn forever
            topic = self.binding.output_topic.format(device=device, model=topic_safe(self.model.name))
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
                        b.model,
                        b.mode,
                        b.window,
                        b.name,
                        svc.compute_dtype,
                        isolate=True,
                        runtime=svc.runtime,
                    )
                served = loaded[cache_key]
            table = StateTable(
                served.engine.state_size, svc.max_devices, svc.ttl_s, max_new_per_s=svc.max_new_devices_per_s
            )
            self.routes.append(Route(b, served, table, f"{b.topic}|{served.name}", int(b.device_level or 0)))
        self.counters: Counter[str] = Counter()
        # Errors by (model, reason); the model is "" where the message reached no binding.
        self.errors: Counter[tuple[str, str]] = Counter()
        self._pending: list[tuple[str, bytes]] = []
        self._received = 0
        self._route_cache: dict[str, tuple[Route | None, str, bool, str | None]] = {}
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._started = time.time()
        self._started_monotonic = time.monotonic()
        # Connection health: failures since the last accepted CONNECT drive the backoff; refusals before the
        # first success (bad credentials, TLS mismatch) end the start-up after broker.max_refusals.
        self._failures = 0
        self._refusals = 0
        self._refusal = ""
        self._ever_connected = False
        self._awaiting_connack = False
        self._just_refused = False
        self._log_budget = LogBudget(log)
        # Probes (/healthz, /readyz): the loop's last turn, SUBACK received, snapshot restored.
        self._beat = time.monotonic()
        self._running = False
        self._subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._restored = False
        self._last_snapshot: float | None = None
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
                str(svc.homeassistant), svc.status_topic, svc.homeassistant_remove, self._publish
            )
        self.client = self._make_client()
        self._restore()
        self._restored = True  # whatever it found: restored, none, or a bad one moved aside

    @property
    def error_reasons(self) -> Counter[str]:
        """Errors by reason, whatever the model (the status's "errors")."""
        out: Counter[str] = Counter()
        for (_, reason), n in list(self.errors.items()):
            out[reason] += n
        return out

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def liveness(self) -> tuple[bool, str]:
        """(alive, why) for /healthz: the loop is running and went round within STALLED_AFTER_S."""
        if not self._running:
            return False, "not running: the service loop has ended"
        idle = time.monotonic() - self._beat
        if idle > STALLED_AFTER_S:
            return False, f"stalled: the service loop has not gone round for {idle:.0f} s"
        return True, "alive"

    def readiness(self) -> tuple[bool, str]:
        """(ready, why) for /readyz: connected to the broker, subscriptions acknowledged, snapshot restored."""
        missing = []
        if not self._running:
            missing.append("the service loop is not running")
        if not self._connected.is_set():
            missing.append(f"not connected to {self.settings.broker.safe_url}")
        elif not self._subscribed.is_set():
            missing.append("subscriptions not acknowledged yet")
        if not self._restored:
            missing.append("snapshot not restored yet")
        if missing:
            return False, "not ready: " + "; ".join(missing)
        return True, "ready"

    def snapshot_age(self) -> float | None:
        """Seconds since the last snapshot was written (since the start before the first); None without one."""
        if not self.settings.service.snapshot_path:
            return None
        since = self._last_snapshot if self._last_snapshot is not None else self._started_monotonic
        return time.monotonic() - since

    # -- MQTT plumbing -----------------------------------------------------------------------------------------

    def client_id(self) -> str:
        """The MQTT client id: the configured one; else, when a snapshot path is set, one derived from the host
        and that path — the same on every restart, so with QoS 1 the broker's persistent session keeps the
        readings published while the service was down and delivers them when it is back; else host and pid."""
        broker, svc = self.settings.broker, self.settings.service
        if broker.client_id:
            return broker.client_id
        host = socket.gethostname()
        if svc.snapshot_path:
            where = os.path.abspath(svc.snapshot_path).encode()
            return f"rnnzoo-{host}-{hashlib.sha256(where).hexdigest()[:12]}"
        return f"rnnzoo-{host}-{os.getpid()}"

    def _make_client(self) -> mqtt.Client:
        broker = self.settings.broker
        client_id = self.client_id()
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
        client.on_subscribe = self._on_subscribe
        # QoS 1 publishes made while the broker is away are queued by paho; cap the queue so memory is bounded.
        # A publish refused at the cap is counted (publish_dropped) and logged.
        client.max_queued_messages_set(MAX_OUTGOING)
        # paho's default of 20 unacknowledged QoS 1 messages made the broker's round trip the throughput limit.
        client.max_inflight_messages_set(1000)
        return client

    def _outgoing(self) -> int:
        """Messages paho still holds for the broker (unsent, or QoS 1 awaiting PUBACK). paho has no public
        accessor for this; without it a sustained inflow filled the outgoing queue until publishes dropped."""
        return len(getattr(self.client, "_out_messages", ()))

    def _backlogged(self) -> bool:
        """Too many answers wait to go out: leave the read loop so select() can write them (and collect the
        broker's acknowledgements) before more readings are stepped."""
        return self._outgoing() > BACKPRESSURE_AT

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._awaiting_connack = False
        if reason.is_failure:
            self._failures += 1
            self._refusals += 1
            self._refusal = f"broker {self.settings.broker.safe_url} refused the connection: {reason}"
            self._just_refused = True  # paho disconnects next; that is this refusal, not a new event
            log.error("%s (attempt %d)", self._refusal, self._failures)
            return
        self._failures = self._refusals = 0
        if self._ever_connected and self._ha is not None:
            self._ha.reconnected()  # a broker without persistence has forgotten the retained configs
        self._ever_connected = True
        qos = self.settings.broker.qos
        topics = {r.binding.topic for r in self.routes} | {
            r.binding.reset_topic for r in self.routes if r.binding.reset_topic
        }
        # Subscribing here, not once after connect, re-subscribes after every reconnect.
        self._subscribed.clear()
        _, self._subscribe_mid = client.subscribe([(t, qos) for t in sorted(topics)])
        self._publish_status("online")
        self._connected.set()
        log.info(
            "connected to %s, subscribed to %s", self.settings.broker.safe_url, ", ".join(sorted(topics))
        )

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            # Stays not ready (/readyz says so): an ACL that refuses our filters is not fixed by retrying.
            log.error(
                "broker %s refused a subscription: %s", self.settings.broker.safe_url, ", ".join(refused)
            )
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if self._awaiting_connack:  # closed before any answer: e.g. plain MQTT sent to a TLS listener
            self._awaiting_connack = False
            self._failures += 1
            self._refusals += 1
            self._refusal = (
                f"broker {self.settings.broker.safe_url} closed the connection before answering "
                "(a TLS port spoken to without TLS? use mqtts://)"
            )
            return
        if self._just_refused:
            self._just_refused = False
            return
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Thin on purpose: parsing and stepping happen per batch in _flush.
        self._pending.append((msg.topic, msg.payload))
        self._received += 1

    def _connect(self, deadline: float | None) -> None:
        """Open the connection (CONNACK arrives later, in the loop), after a jittered exponential backoff
        when the previous attempts failed. Before the first accepted CONNECT, refusals are bounded."""
        broker = self.settings.broker
        while not self._stop.is_set():
            self._beat = time.monotonic()  # backing off is alive: /healthz stays 200
            if not self._ever_connected and self._refusals >= broker.max_refusals:
                raise BrokerRefused(self._refusal)
            if self._failures:
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(self._failures - 1, 16))
                if self._stop.wait(random.uniform(delay / 2, delay)):
                    return
            try:
                if self.client.socket() is None and self.counters["connects"] == 0:
                    self.client.connect(broker.host, broker.port, broker.keepalive)
                else:
                    self.client.reconnect()
                self.counters["connects"] += 1
                self._awaiting_connack = True
                return
            except ssl.SSLError as err:  # before OSError: it is one
                self._failures += 1
                self._refusals += 1
                self._refusal = f"TLS handshake with {broker.safe_url} failed: {err.reason or err}"
                log.error("%s (attempt %d)", self._refusal, self._failures)
            except OSError as err:
                self._failures += 1
                if broker.tls is not None and isinstance(err, ConnectionResetError):
                    # The peer hung up on our TLS hello: a plain MQTT listener, most likely.
                    self._refusals += 1
                    self._refusal = (
                        f"TLS handshake with {broker.safe_url} failed: connection reset (not a TLS port?)"
                    )
                    log.error("%s (attempt %d)", self._refusal, self._failures)
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    raise BrokerUnreachable(
                        f"broker {broker.safe_url} unreachable: {err.strerror or err}"
                    ) from None
                if self._log_budget.allow("connect"):
                    log.warning("broker %s unreachable: %s", broker.safe_url, err.strerror or err)

    def _counters(self) -> dict[str, int]:
        """Service counters plus the state tables' own (evictions and refusals, exact, whoever caused them)."""
        # dict() copies in one step: /metrics calls this from its own thread while the loop may add a key.
        merged = Counter(dict(self.counters))
        for route in self.routes:
            merged.update(dict(route.table.counters))
        merged["evicted"] = merged["evicted_idle"] + merged["evicted_lru"]
        return dict(merged)

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
        return self._connected.wait(timeout)

    def run(self) -> None:
        """Connect and serve until stop(). Raises BrokerUnreachable if the first connection never succeeds,
        OSError if the metrics port cannot be bound."""
        one_blas_thread()
        self._running = True
        self._beat = time.monotonic()
        try:
            self._start_http()
            self._serve()
        finally:
            self._running = False
            self._log_budget.flush(final=True)
            if self.http is not None:
                self.http.stop()

    def _start_http(self) -> None:
        """Serve /metrics, /healthz and /readyz when a metrics port is configured."""
        svc = self.settings.service
        if svc.metrics_port is None:
            return
        from streaming.health import HealthServer
        from streaming.metrics import service_registry

        try:
            self.http = HealthServer(
                svc.metrics_host, svc.metrics_port, service_registry(self), self.liveness, self.readiness
            )
        except OSError as err:
            raise OSError(
                f"metrics port {svc.metrics_host}:{svc.metrics_port}: {err.strerror or err}"
            ) from None
        self.http.start()
        log.info(
            "metrics on http://%s:%d/metrics (probes: /healthz, /readyz)", svc.metrics_host, self.http.port
        )

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
                            started = self._beat = time.monotonic()
                    self._flush()
                if writable and client.socket() is not None:
                    client.loop_write()
                now = self._beat = time.monotonic()
                if now >= next_misc:
                    client.loop_misc()  # keepalive pings and QoS retries
                    self._log_budget.flush()  # "suppressed N lines" once a kind's period is over
                    next_misc = now + 1.0
                if now >= next_evict:
                    self._evict()
                    next_evict = now + max(0.5, min((svc.ttl_s or 120.0) / 4, 30.0))
                if svc.snapshot_path and now >= next_snapshot:
                    self.snapshot()
                    next_snapshot = now + svc.snapshot_interval_s
                if now >= next_status and self._connected.is_set():
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

    # -- the engine --------------------------------------------------------------------------------------------

    def _route_for(self, topic: str) -> tuple[Route | None, str, bool, str | None]:
        """(route, device, is_reset, why the device id is refused or None) for a topic, cached: matching
        filters per message is the slow part."""
        hit = self._route_cache.get(topic)
        if hit is not None:
            return hit
        levels = topic.split("/")
        result: tuple[Route | None, str, bool, str | None] = (None, "", False, None)
        for route in self.routes:
            b = route.binding
            is_reset = bool(b.reset_topic and mqtt.topic_matches_sub(b.reset_topic, topic))
            if is_reset or mqtt.topic_matches_sub(b.topic, topic):
                device = levels[route.device_level]
                result = (route, device, is_reset, self._refuse_device(device))
                break
        if len(self._route_cache) > 200_000:
            self._route_cache.clear()
        self._route_cache[topic] = result
        return result

    def _refuse_device(self, device: str) -> str | None:
        limit = self.settings.service.max_device_id_bytes
        if len(device.encode()) > limit:
            return f"device id too long: {len(device.encode())} bytes > {limit}"
        if not device or device.startswith("_"):
            # '_…' levels belong to the service (predictions/_batch/…, errors/_rejected).
            return f"reserved device id {device[:40]!r}: ids may not be empty or start with '_'"
        return None

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self.counters["batches"] += 1
        if self.histograms is not None:
            self.histograms.batch_size.observe(len(batch))
        now = time.time()
        # Work per route, in arrival order, cut at resets so a reset lands between the right readings.
        segment: dict[int, list[tuple[str, Reading]]] = {}
        for topic, payload in batch:
            # No message may end the loop or cost its neighbours their answers: anything unexpected becomes
            # an error for that message alone.
            try:
                segment = self._take(topic, payload, segment, now)
            except Exception as err:  # noqa: BLE001 - the guard is the point
                self._internal_error(topic, err)
        self._step_segment(segment, now)

    def _take(
        self, topic: str, payload: bytes, segment: dict[int, list[tuple[str, Reading]]], now: float
    ) -> dict[int, list[tuple[str, Reading]]]:
        """Parse one message into `segment` (or apply it, for a reset); returns the segment to go on with."""
        route, device, is_reset, refused = self._route_for(topic)
        if route is None:
            return segment
        if refused:
            self._error(REJECTED_DEVICE, topic[:200], "bad device id", refused, route.model.name)
            return segment
        if is_reset:
            self._step_segment(segment, now)
            self._reset(device)
            return {}
        try:
            readings = parse(
                payload,
                route.model.engine.n_features,
                self.settings.service.max_payload_bytes,
                route.binding.senml_names,
            )
        except PayloadError as err:
            self._error(device, topic, err.reason, err.detail, route.model.name)
            return segment
        route.readings += len(readings)
        items = segment.setdefault(id(route), [])
        for reading in readings:
            items.append((device, reading))
        return segment

    def _internal_error(self, topic: str, err: Exception) -> None:
        try:  # the binding's own device level, not a guess at the topic's shape
            route, device, _, refused = self._route_for(topic)
        except Exception:  # noqa: BLE001 - routing itself may be what failed
            route, refused = None, "unroutable"
        if route is None or refused:
            device = REJECTED_DEVICE
        model = route.model.name if route is not None else ""
        if self._log_budget.allow("internal error"):
            log.exception(
                "unexpected failure on a message from %r (the service goes on)",
                topic[:200],
                extra={"device": device, "model": model, "reason": "internal error", "topic": topic[:200]},
            )
        self._error(device, topic[:200], "internal error", type(err).__name__, model, logged=True)

    def _step_segment(self, segment: dict[int, list[tuple[str, Reading]]], now: float) -> None:
        for route in self.routes:
            items = segment.get(id(route))
            if items:
                try:
                    self._step_route(route, items, now)
                except Exception as err:  # noqa: BLE001 - a bug must not stop the service
                    model = route.model.name
                    if self._log_budget.allow("internal error"):
                        log.exception(
                            "stepping %s failed (the service goes on)",
                            model,
                            extra={"model": model, "reason": "internal error"},
                        )
                    for device, _ in items:
                        self._error(device, "", "internal error", type(err).__name__, model, logged=True)

    def _step_route(self, route: Route, items: list[tuple[str, Reading]], now: float) -> None:
        table = route.table
        model = route.model.name
        # Waves: the k-th wave holds each device's k-th reading of this batch, so every device advances in order.
        waves: list[list[tuple[int, str, Reading]]] = []
        seen: dict[int, int] = {}
        last_t: dict[int, float] = {}
        for device, reading in items:
            slot = table.slot(device, now)
            if slot == FULL:
                self._error(device, "", "device limit reached", f"max_devices={table.max_devices}", model)
                continue
            if slot == RATE_LIMITED:
                self._error(
                    device, "", "new device rate limit", f"max_new_devices_per_s={table.max_new_per_s}", model
                )
                continue
            if reading.t is not None:
                # A reading must be newer than the device's last one: a duplicate (e.g. a QoS 1 redelivery)
                # or a late reading would otherwise advance the state a second time or out of order.
                previous = last_t.get(slot, table.last_t[slot])
                if previous == previous and reading.t <= previous:  # previous is NaN when there was none
                    self._error(
                        device,
                        "",
                        "stale timestamp",
                        f"t={reading.t!r} is not after {float(previous)!r}",
                        model,
                    )
                    continue
                last_t[slot] = reading.t
            k = seen.get(slot, 0)
            seen[slot] = k + 1
            if k == len(waves):
                waves.append([])
            waves[k].append((slot, device, reading))
        if self._ha is not None and waves:
            self._ha.announce(route, [w[1] for w in waves[0]])  # the first wave holds every device once
        engine = route.model.engine
        step_seconds, latency_seconds = route.step_seconds, route.latency_seconds
        for wave in waves:
            slots = np.fromiter((w[0] for w in wave), dtype=np.int64, count=len(wave))
            x = np.array([w[2].values for w in wave], dtype=np.float32)
            steps = table.steps[slots]
            began = time.perf_counter()
            outputs, new_state = engine.advance(x, table.state[slots], steps)
            if step_seconds is not None:
                step_seconds.observe(time.perf_counter() - began)
            # A reading that would make the state or the output non-finite is refused, not committed: one
            # such reading would otherwise poison that device's state for good.
            finite = np.isfinite(new_state).all(axis=1) & np.isfinite(outputs).all(axis=1)
            if not finite.all():
                for i in np.flatnonzero(~finite).tolist():
                    self._error(
                        wave[i][1],
                        "",
                        "non-finite result",
                        "the reading drives the model out of range",
                        model,
                    )
                wave = [w for w, ok in zip(wave, finite.tolist(), strict=True) if ok]
                slots, steps = slots[finite], steps[finite]
                outputs, new_state = outputs[finite], new_state[finite]
                if not wave:
                    continue
            t = np.array([np.nan if w[2].t is None else w[2].t for w in wave], dtype=np.float64)
            table.commit(slots, new_state, now, t)
            self._publish_predictions(route, wave, steps, outputs)
            if latency_seconds is not None:
                latency_seconds.observe_latencies(t, time.time())

    def _publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.counters["publish_dropped"] += 1
            if self._log_budget.allow("dropped"):
                log.error(
                    "outgoing queue full (%d messages): an answer on %s was dropped", MAX_OUTGOING, topic[:80]
                )

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
        publish = self._publish
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
                # allow_nan=False: what we publish is always valid JSON (non-finite rows were refused above).
                publish(route.output_topic(device), json.dumps(msg, allow_nan=False), qos)
            if svc.output != "reading":
                msg.pop("probabilities", None)  # outputs already carry them; batch consumers want it compact
                msg["device"] = device
                records.append(msg)
        if records:
            topic = svc.batch_topic.format(model=topic_safe(route.model.name))
            body = {"model": route.model.name, "predictions": records}
            publish(topic, json.dumps(body, allow_nan=False), qos)
        self.counters["readings"] += len(wave)
        self.counters["predictions"] += len(wave)
        route.predictions += len(wave)

    def _error(
        self, device: str, topic: str, reason: str, detail: str, model: str = "", logged: bool = False
    ) -> None:
        """Answer a refused or failed message on the error topic, count it, and log it within the budget
        (one kind per reason: a flood of one kind cannot hide the first lines of another)."""
        self.counters["errors"] += 1
        self.errors[(model, reason)] += 1
        payload = json.dumps({"reason": reason, "detail": detail[:200], "topic": topic})
        self._publish(self.settings.service.error_topic.format(device=device), payload, 0)
        if not logged and self._log_budget.allow(reason):
            # %r: a device id or topic comes from outside and may hold a newline; repr keeps it on one line.
            log.warning(
                "refused a message from device %r (%s): %s: %s",
                device[:200],
                model or "no model",
                reason,
                detail[:200],
                extra={"device": device[:200], "model": model, "reason": reason, "topic": topic},
            )

    def _reset(self, device: str) -> None:
        for route in self.routes:
            if route.table.remove(device):
                self.counters["resets"] += 1
                route.resets += 1

    def _evict(self) -> None:
        now = time.time()
        for route in self.routes:
            evicted = route.table.evict_idle(now)
            if evicted:
                log.info("evicted %d idle devices from %s", len(evicted), route.model.name)
            if self._ha is not None:
                self._ha.sweep(route)  # before compact() below clears the route's topic cache
            if route.table.compact():
                # The caches hold device ids too; drop them with the slots, so memory really comes back.
                self._route_cache.clear()
                route._topics.clear()
                _return_freed_memory()

    # -- snapshots ---------------------------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Write all state tables atomically to snapshot_path (between batches, so it is consistent)."""
        path = self.settings.service.snapshot_path
        if not path:
            return
        tables = {r.key: r.table for r in self.routes}
        fingerprints = {r.key: r.model.engine.fingerprint for r in self.routes}
        began = time.monotonic()
        try:
            save_snapshot(path, tables, fingerprints)
            self.counters["snapshots"] += 1
        except OSError as err:
            # A full disk must not stop predictions; the next interval tries again.
            self.counters["snapshot_failures"] += 1
            log.error("snapshot to %s failed: %s", path, err)
            return
        self._last_snapshot = time.monotonic()
        if self.histograms is not None:
            self.histograms.snapshot_seconds.observe(self._last_snapshot - began)

    def _restore(self) -> None:
        svc = self.settings.service
        path = svc.snapshot_path
        if not path or not os.path.exists(path):
            return
        try:
            saved = load_snapshot(path, svc.max_snapshot_bytes)
            restored = []
            for route in self.routes:
                if route.key not in saved:
                    continue
                fingerprint, arrays = saved[route.key]
                if fingerprint != route.model.engine.fingerprint:
                    log.warning("snapshot for %s was taken with other weights; starting it empty", route.key)
                    continue
                route.table.load_arrays(arrays, svc.max_device_id_bytes)
                restored.append(route)
        except (SnapshotError, OSError) as err:
            # A bad snapshot must not become a crash loop: keep it for inspection, start empty.
            aside = f"{path}.rejected-{time.strftime('%Y%m%dT%H%M%S')}"
            try:
                os.replace(path, aside)
            except OSError:
                aside = "(could not move it)"
            for route in self.routes:
                route.table.clear()  # a table restored before the bad part was found goes too
            log.error("%s; moved to %s, starting with empty state", err, aside)
            return
        for route in restored:
            log.info("restored %d devices for %s from %s", len(route.table), route.key, path)


def _return_freed_memory() -> None:
    """Hand the heap pages freed by a mass eviction back to the OS (glibc keeps them otherwise: RSS stayed
    ~65 MB above its baseline after 50,000 devices were evicted). A no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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
