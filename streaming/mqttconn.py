"""The MQTT transport's connection (`streaming.service`): the paho client, connecting with back-off and bounded
refusals (`streaming.backoff`), the callbacks, subscriptions and publishing with a bounded outgoing queue.

The service's loop drives the socket itself (select, `loop_read`, `loop_write`); this class only says when to
connect, what a CONNACK, SUBACK or disconnect means, and where a received message goes (`on_message`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from streaming.backoff import Attempts
from streaming.config import Settings
from streaming.logs import LogBudget

log = logging.getLogger("streaming")

# The most outgoing messages paho holds (QoS 1 while the broker is away included); one more is refused and
# counted (publish_dropped), so memory stays bounded.
MAX_OUTGOING = 200_000
BACKOFF_MAX_S = 30.0


class BrokerUnreachable(ConnectionError):
    """The first connection to the broker failed for connect_timeout_s."""


class BrokerRefused(ConnectionError):
    """At start-up the broker refused us (credentials, TLS) a bounded number of times: retrying cannot help."""


def client_id(settings: Settings) -> str:
    """The MQTT client id: the configured one; else, when a snapshot path is set, one derived from the host
    and that path — the same on every restart, so with QoS 1 the broker's persistent session keeps the
    readings published while the service was down and delivers them when it is back; else host and pid."""
    broker, svc = settings.broker, settings.service
    if broker.client_id:
        return broker.client_id
    host = socket.gethostname()
    if svc.snapshot_path:
        where = os.path.abspath(svc.snapshot_path).encode()
        return f"rnnzoo-{host}-{hashlib.sha256(where).hexdigest()[:12]}"
    return f"rnnzoo-{host}-{os.getpid()}"


class MqttConnection:
    """One paho client to the configured broker, subscribed to `topics` after every accepted CONNECT.

    Args:
        settings: the service's settings (broker, status topic).
        topics: the topic filters to subscribe to.
        counters: the service's counters (connects, publish_dropped).
        log_budget: the service's log budget.
        on_message: called with (topic, payload) for every PUBLISH received.
        on_connected: called after each accepted CONNECT (`reconnected` True after the first).
        stop: set when the service stops (a disconnect then is not news; a back-off ends at once).
    """

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        counters: Counter[str],
        log_budget: LogBudget,
        on_message: Callable[[str, bytes], None],
        on_connected: Callable[[bool], None],
        stop: threading.Event,
    ):
        self.settings, self.topics, self.counters = settings, sorted(topics), counters
        self._log_budget = log_budget
        self._on_message_cb, self._on_connected_cb = on_message, on_connected
        self._stop = stop
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self.attempts = Attempts(settings.broker.max_refusals, max_s=BACKOFF_MAX_S)
        self._awaiting_connack = False
        self._just_refused = False
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        broker = self.settings.broker
        clean = broker.clean_session if broker.clean_session is not None else broker.qos == 0
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(self.settings), clean_session=clean
        )
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
        client.max_queued_messages_set(MAX_OUTGOING)
        # paho's default of 20 unacknowledged QoS 1 messages made the broker's round trip the throughput limit.
        client.max_inflight_messages_set(1000)
        return client

    def outgoing(self) -> int:
        """Messages paho still holds for the broker (unsent, or QoS 1 awaiting PUBACK). paho has no public
        accessor for this; without it a sustained inflow filled the outgoing queue until publishes dropped."""
        return len(getattr(self.client, "_out_messages", ()))

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> None:
        """Hand one message to paho; one refused at the queue's cap is counted and logged within the budget."""
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.counters["publish_dropped"] += 1
            if self._log_budget.allow("dropped"):
                log.error(
                    "outgoing queue full (%d messages): an answer on %s was dropped", MAX_OUTGOING, topic[:80]
                )

    # -- callbacks (called by paho inside the service's loop_read / loop_write) -------------------------------

    def _refused(self, why: str, logged: bool = True) -> None:
        self.attempts.failed(why)
        if logged:
            log.error("%s (attempt %d)", why, self.attempts.failures)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._awaiting_connack = False
        if reason.is_failure:
            self._just_refused = True  # paho disconnects next; that is this refusal, not a new event
            self._refused(f"broker {self.settings.broker.safe_url} refused the connection: {reason}")
            return
        reconnected = self.attempts.ever_connected
        self.attempts.connected()
        # Subscribing here, not once after connect, re-subscribes after every reconnect.
        self.subscribed.clear()
        qos = self.settings.broker.qos
        _, self._subscribe_mid = client.subscribe([(t, qos) for t in self.topics])
        self._on_connected_cb(reconnected)
        self.connected.set()
        log.info("connected to %s, subscribed to %s", self.settings.broker.safe_url, ", ".join(self.topics))

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
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if self._awaiting_connack:  # closed before any answer: e.g. plain MQTT sent to a TLS listener
            self._awaiting_connack = False
            self._refused(
                f"broker {self.settings.broker.safe_url} closed the connection before answering "
                "(a TLS port spoken to without TLS? use mqtts://)",
                logged=False,
            )
            return
        if self._just_refused:
            self._just_refused = False
            return
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message_cb(msg.topic, msg.payload)

    # -- connecting -------------------------------------------------------------------------------------------

    def connect(self, deadline: float | None, beat: Callable[[], None]) -> None:
        """Open the connection (CONNACK arrives later, in the loop), after a jittered exponential back-off
        when the previous attempts failed. Before the first accepted CONNECT, refusals are bounded
        (`BrokerRefused`); `deadline` bounds an unreachable broker (`BrokerUnreachable`). `beat` is called
        on every turn: backing off is alive."""
        broker, attempts, stop = self.settings.broker, self.attempts, self._stop
        while not stop.is_set():
            beat()
            if attempts.gave_up:
                raise BrokerRefused(attempts.refusal)
            if attempts.failures and stop.wait(attempts.delay()):
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
                self._refused(f"TLS handshake with {broker.safe_url} failed: {err.reason or err}")
            except OSError as err:
                if broker.tls is not None and isinstance(err, ConnectionResetError):
                    # The peer hung up on our TLS hello: a plain MQTT listener, most likely.
                    self._refused(
                        f"TLS handshake with {broker.safe_url} failed: connection reset (not a TLS port?)"
                    )
                    continue
                attempts.failed()
                if deadline is not None and time.monotonic() > deadline:
                    raise BrokerUnreachable(
                        f"broker {broker.safe_url} unreachable: {err.strerror or err}"
                    ) from None
                if self._log_budget.allow("connect"):
                    log.warning("broker %s unreachable: %s", broker.safe_url, err.strerror or err)
