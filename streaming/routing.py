"""Answering MQTT messages (`streaming.service`): route a topic to its binding and device, parse and step each
binding's messages through the shared core (`streaming.core.step_payloads`), publish a prediction or an error
for every reading, resets and idle-device sweeps. Nothing here holds the connection, the loop or the
snapshots: `Service` owns those and hands each micro-batch to `Routing.answer`."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import paho.mqtt.client as mqtt

from streaming.config import Binding, Settings
from streaming.core import (
    REJECTED_DEVICE,
    Answering,
    ErrorAnswers,
    PredictionEncoder,
    refuse_device,
    step_payloads,
)
from streaming.logs import LogBudget
from streaming.models import ServedModel
from streaming.state import StateTable

if TYPE_CHECKING:
    from streaming.homeassistant import Discovery
    from streaming.metrics import Histogram

log = logging.getLogger("streaming")


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
    encoder: PredictionEncoder | None = None  # the prediction schema shared with the JetStream worker

    def __post_init__(self) -> None:
        window = getattr(self.model.engine, "window", 0) if self.model.mode == "window" else 0
        self.encoder = PredictionEncoder(self.model.engine.n_outputs, self.model.class_names, window)

    def output_topic(self, device: str) -> str:
        topic = self._topics.get(device)
        if topic is None:
            if len(self._topics) > 200_000:
                self._topics.clear()  # a bounded cache: device ids may churn forever
            topic = self.binding.output_topic.format(device=device, model=topic_safe(self.model.name))
            self._topics[device] = topic
        return topic


class Routing(Answering):
    """The bindings at run time and the answering of their messages.

    Args:
        settings: the service's settings.
        routes: one Route per binding.
        publish: publish(topic, payload, qos) on the broker (the service's connection).
        counters: the service's counters (shared: the status and /metrics read them).
        log_budget: the service's log budget.
    """

    def __init__(
        self,
        settings: Settings,
        routes: list[Route],
        publish: Callable[..., None],
        counters: Counter[str],
        log_budget: LogBudget,
    ):
        self.settings, self.routes, self._publish = settings, routes, publish
        self.counters, self._log_budget = counters, log_budget
        self.refusals = ErrorAnswers(
            counters,
            log_budget,
            log,
            lambda topic, body: publish(topic, body, 0),
            lambda device: settings.service.error_topic.format(device=device),
        )
        self._route_cache: dict[str, tuple[Route | None, str, bool, str | None]] = {}
        self.ha: Discovery | None = None  # Home Assistant discovery, when on

    # -- answering --------------------------------------------------------------------------------------------

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
        return refuse_device(device, self.settings.service.max_device_id_bytes)

    def answer(self, batch: list[tuple[str, bytes]], now: float) -> None:
        """Answer one micro-batch of (topic, payload): a prediction or an error for every reading in it."""
        # Messages per route, in arrival order, cut at resets so a reset lands between the right readings.
        segment: dict[int, list[tuple[str, str, bytes]]] = {}
        for topic, payload in batch:
            # No message may end the loop or cost its neighbours their answers: anything unexpected becomes
            # an error for that message alone.
            try:
                route, device, is_reset, refused = self._route_for(topic)
                if route is None:
                    continue
                if refused:
                    self.error(REJECTED_DEVICE, topic[:200], "bad device id", refused, route.model.name)
                elif is_reset:
                    self._step_segment(segment, now)
                    segment = {}
                    self.reset(device)
                else:
                    segment.setdefault(id(route), []).append((device, topic, payload))
            except Exception as err:  # noqa: BLE001 - the guard is the point
                self._internal_error(topic, err)
        self._step_segment(segment, now)

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
        self.error(device, topic[:200], "internal error", type(err).__name__, model, logged=True)

    def _step_segment(self, segment: dict[int, list[tuple[str, str, bytes]]], now: float) -> None:
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
                    for device, _, _ in items:
                        self.error(device, "", "internal error", type(err).__name__, model, logged=True)

    def _step_route(self, route: Route, items: list[tuple[str, str, bytes]], now: float) -> None:
        model = route.model.name
        devices = [device for device, _, _ in items]
        # The shared core (streaming.core.step_payloads): one parse pass over the batch, then admission, stale
        # time stamps, waves, the finite guard and the commit — the JetStream worker's path too.
        step_seconds, latency_seconds = route.step_seconds, route.latency_seconds
        got = step_payloads(
            route.model.engine,
            route.table,
            devices,
            [payload for _, _, payload in items],
            now,
            self.settings.service.max_payload_bytes,
            route.binding.senml_names,
            step_timer=step_seconds.observe if step_seconds is not None else None,
        )
        batch, done = got.batch, got.done
        for j, err in batch.errors.items():
            self.error(devices[j], items[j][1], err.reason, err.detail, model)
        route.readings += len(batch.source)
        owner = [devices[j] for j in batch.source]  # the device of each reading
        for i, reason, detail in done.refusals:
            if reason == "internal error" and self._log_budget.allow("internal error"):
                log.error("stepping %s failed (%s); the service goes on", model, detail)
            self.error(owner[i], "", reason, detail, model, logged=reason == "internal error")
        keep = np.flatnonzero(done.ok).tolist()
        if not keep:
            return
        kept = [owner[i] for i in keep]
        if self.ha is not None:
            self.ha.announce(route, list(dict.fromkeys(kept)))
        steps, outputs = done.steps[keep], done.outputs[keep]
        times = [batch.t[i] for i in keep]
        self._publish_predictions(route, kept, steps, outputs, times, [batch.part[i] for i in keep])
        if self.observer is not None:  # the live page: (devices, steps, outputs, readings, time) per batch
            self.observer.predictions(model, kept, steps, outputs, batch.values[keep], now)
        if latency_seconds is not None:
            latency_seconds.observe_latencies(
                np.array([np.nan if t is None else t for t in times]), time.time()
            )

    def _publish_predictions(
        self,
        route: Route,
        devices: list[str],
        steps: np.ndarray,
        outputs: np.ndarray,
        times: list[float | None],
        parts: list[int],
    ) -> None:
        svc = self.settings.service
        qos = self.settings.broker.qos
        names = route.model.class_names
        step_list = steps.tolist()
        publish = self._publish
        encoder: PredictionEncoder = route.encoder  # type: ignore[assignment]
        if svc.output != "batch":
            # One schema with the JetStream worker (streaming.core.PredictionEncoder): byte-equal to json.dumps.
            bodies = encoder.encode(None, step_list, outputs, parts, times)
            for device, body in zip(devices, bodies, strict=True):
                publish(route.output_topic(device), body, qos)
        if svc.output != "reading":
            # Rounding to 8 decimals keeps float32 values well inside 1e-5 and halves the JSON size.
            rows = np.round(outputs.astype(np.float64), 8).tolist()
            labels = np.argmax(outputs, axis=1).tolist() if names else None
            records = []
            for i, device in enumerate(devices):
                msg: dict[str, Any] = {"step": step_list[i], "outputs": rows[i]}
                if names is not None:
                    msg["label"] = names[labels[i]]  # outputs carry the probabilities: batches stay compact
                if times[i] is not None:
                    msg["t"] = times[i]
                if step_list[i] + 1 < encoder.window:
                    msg["partial"] = True
                msg["device"] = device
                records.append(msg)
            topic = svc.batch_topic.format(model=topic_safe(route.model.name))
            body = {"model": route.model.name, "predictions": records}
            publish(topic, json.dumps(body, allow_nan=False), qos)
        self.counters["readings"] += len(devices)
        self.counters["predictions"] += len(devices)
        route.predictions += len(devices)

    def error(
        self, device: str, topic: str, reason: str, detail: str, model: str = "", logged: bool = False
    ) -> None:
        """Answer a refused or failed message on the error topic (`streaming.core.ErrorAnswers`)."""
        self.refusals.answer(device, topic, reason, detail, model, logged)

    def reset(self, device: str) -> None:
        for route in self.routes:
            if route.table.remove(device):
                self.counters["resets"] += 1
                route.resets += 1

    def evict(self) -> None:
        now = time.time()
        for route in self.routes:
            evicted = route.table.evict_idle(now)
            if evicted:
                log.info("evicted %d idle devices from %s", len(evicted), route.model.name)
            if self.ha is not None:
                self.ha.sweep(route)  # before compact() below clears the route's topic cache
            if route.table.compact():
                # The caches hold device ids too; drop them with the slots, so memory really comes back.
                self._route_cache.clear()
                route._topics.clear()
                _return_freed_memory()


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
