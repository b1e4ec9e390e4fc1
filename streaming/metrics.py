"""Prometheus metrics for `rnnzoo serve`: the service's own counters read at scrape time, plus histograms.

Nothing is counted twice. `ServiceCollector.collect()` runs in the HTTP thread when Prometheus scrapes and
reads what the service already counts, through its public stats object (`Service.stats()`, a
`streaming.core.Stats`: counters, errors by model and reason, each model's readings, predictions and devices). Only the four histograms are fed from the
service's loop, and there per micro-batch or per wave, never per reading: `Histogram.observe_many` bins a
whole wave's latencies with one numpy call.

Every series lives in the service's own `CollectorRegistry`, never the library's global one, so several
services in one process (the tests start many) do not clash. Label values are the configured model names
and the service's fixed error reasons; device ids, which come from whoever publishes, are never labels.

Example:

    registry = service_registry(service)      # what `rnnzoo serve --metrics-port 9100` serves on /metrics
    print(prometheus_client.generate_latest(registry).decode())
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from streaming.service import Service

PREFIX = "rnnzoo"
# Messages per micro-batch: one under light load, up to max_batch (256 by default) when the loop falls behind.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
# One engine step of a wave (every device of the wave at once): ~50 µs for one device, a few ms for 512.
STEP_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# A reading's `t` to the moment its prediction is handed to the MQTT client.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SNAPSHOT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
# `t` above this is taken as milliseconds since the epoch (1e11 seconds is the year 5138).
MILLISECONDS_ABOVE = 1e11
# Waves up to this size observe their latencies one by one: 0.4 µs a reading, where the numpy path costs ~30 µs
# a call whatever the size (0.1 µs a reading at 512). Measured with timeit on this 2-core machine.
SMALL_WAVE = 64


class Histogram:
    """A fixed-bucket histogram written by the service's thread and read by the scrape thread.

    Bucket i counts values v with bounds[i-1] < v <= bounds[i] (Prometheus' `le`); the last counts the rest.
    Cheaper than prometheus_client's own Histogram in the loop: no lock (one writer), a scalar in 0.3 µs, and
    a large wave's values in one numpy call.

    Args:
        bounds: increasing upper bounds, without +Inf.
    """

    def __init__(self, bounds: Sequence[float]):
        self._bounds = [float(b) for b in bounds]
        self._bounds_array = np.asarray(self._bounds, dtype=np.float64)
        self.counts = [0] * (len(self._bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: np.ndarray) -> None:
        if values.size:
            bins = np.bincount(
                np.searchsorted(self._bounds_array, values, side="left"), minlength=len(self.counts)
            )
            counts = self.counts
            for i, n in enumerate(bins.tolist()):
                counts[i] += n
            self.sum += float(values.sum())

    def observe_latencies(self, t: np.ndarray, now: float) -> None:
        """Observe `now - t` for a wave's readings that carried a timestamp (`t` NaN where none). A `t` in
        milliseconds is recognised by its size; one in the future (a device clock ahead of ours) is skipped."""
        if (
            t.size <= SMALL_WAVE
        ):  # under light load a wave is one reading: numpy's call overhead would dominate
            for stamp in t.tolist():
                if stamp == stamp:  # not NaN
                    latency = now - (stamp / 1000.0 if stamp > MILLISECONDS_ABOVE else stamp)
                    if latency >= 0:
                        self.observe(latency)
            return
        stamped = t[~np.isnan(t)]
        if stamped.size:
            seconds = np.where(stamped > MILLISECONDS_ABOVE, stamped / 1000.0, stamped)
            latency = now - seconds
            self.observe_many(latency[latency >= 0])

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """([(le, cumulative count)], sum) as HistogramMetricFamily takes them. The counts are copied first (a
        list copy is one step under the GIL), so the +Inf bucket always equals the count."""
        counts, total = list(self.counts), self.sum
        running = np.cumsum(counts).tolist()
        les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        return list(zip(les, running, strict=True)), total


class ServiceHistograms:
    """The histograms the loop feeds: micro-batch sizes, and per model name step times and latencies."""

    def __init__(self) -> None:
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.snapshot_seconds = Histogram(SNAPSHOT_BUCKETS)
        self.step_seconds: dict[str, Histogram] = {}
        self.latency_seconds: dict[str, Histogram] = {}

    def for_model(self, model: str) -> tuple[Histogram, Histogram]:
        """(step time, latency) histograms of a model name; bindings serving the same name share them."""
        if model not in self.step_seconds:
            self.step_seconds[model] = Histogram(STEP_BUCKETS)
            self.latency_seconds[model] = Histogram(LATENCY_BUCKETS)
        return self.step_seconds[model], self.latency_seconds[model]


class ServiceCollector(Collector):
    """Reads a Service's counters at scrape time and yields them as Prometheus metric families."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        stats = svc.stats()
        counters, errors = stats.counters, stats.errors
        per_model = {name: vars(m) for name, m in stats.models.items()}

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)

        received = counter(
            "messages_received", "MQTT messages received on the subscribed topics (any payload)."
        )
        received.add_metric([], stats.received)
        yield received

        for key, doc in (
            ("readings", "Readings parsed for a model (a SenML pack may hold several)."),
            ("predictions", "Predictions made (one per stepped reading, published alone or in a batch)."),
            ("resets", "Device states dropped by a message on the reset topic."),
        ):
            family = counter(key, doc, ["model"])
            for model, m in per_model.items():
                family.add_metric([model], m[key])
            yield family

        family = counter(
            "errors", "Messages answered on the error topic, by model and reason.", ["model", "reason"]
        )
        for (model, reason), n in sorted(errors.items()):
            family.add_metric([model, reason], n)
        yield family

        family = gauge("devices", "Device states held.", ["model"])
        for model, m in per_model.items():
            family.add_metric([model], m["devices"])
        yield family

        family = counter(
            "evictions", "Device states evicted: idle past the TTL, or LRU when full.", ["model", "cause"]
        )
        for model, m in per_model.items():
            family.add_metric([model, "idle"], m["evicted_idle"])
            family.add_metric([model, "lru"], m["evicted_lru"])
        yield family

        family = gauge(
            "model_info", "The models served and their mode (step or window); always 1.", ["model", "mode"]
        )
        for model, mode in sorted((name, m["mode"]) for name, m in per_model.items()):
            family.add_metric([model, mode], 1)
        yield family

        for key, name, doc in (
            ("reconnects", "reconnects", "Connections to the broker lost and attempted again."),
            ("publish_dropped", "publish_dropped", "Answers dropped because the outgoing queue was full."),
            ("snapshot_failures", "snapshot_failures", "Snapshots that could not be written."),
        ):
            family = counter(name, doc)
            family.add_metric([], counters.get(key, 0))
            yield family

        family = gauge("broker_connected", "1 while connected to the broker, else 0.")
        family.add_metric([], 1.0 if stats.connected else 0.0)
        yield family

        family = gauge("outgoing_messages", "Messages the MQTT client still holds for the broker.")
        family.add_metric([], stats.outgoing)
        yield family

        age = stats.snapshot_age_s
        if age is not None:
            family = gauge(
                "snapshot_age_seconds",
                "Seconds since the last snapshot was written (since start before one).",
            )
            family.add_metric([], age)
            yield family

        hist = svc.histograms
        if hist is None:
            return
        batch = HistogramMetricFamily(f"{PREFIX}_batch_size", "Messages per micro-batch.")
        batch.add_metric([], *hist.batch_size.cumulative())
        yield batch
        for name, doc, table in (
            ("step_seconds", "One engine step of a wave (every device in it at once).", hist.step_seconds),
            (
                "latency_seconds",
                "From a reading's `t` to its prediction being published.",
                hist.latency_seconds,
            ),
        ):
            family = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=["model"])
            for model, h in sorted(table.items()):
                family.add_metric([model], *h.cumulative())
            yield family
        snap = HistogramMetricFamily(f"{PREFIX}_snapshot_seconds", "Time to write one snapshot.")
        snap.add_metric([], *hist.snapshot_seconds.cumulative())
        yield snap


def service_registry(service: Service) -> CollectorRegistry:
    """A registry of the service's own (not prometheus_client's global one), with the process's CPU, memory
    and file descriptors (`process_*`, on Linux) beside the service's series."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    ProcessCollector(registry=registry)
    return registry
