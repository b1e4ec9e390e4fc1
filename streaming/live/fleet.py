"""The live page's fleet figures (readings/s, errors by reason, latency p50/p99, devices held, evictions), read
from what the serving process already counts: its `stats()` (`streaming.core.Stats`, the same shape from both
transports, what /metrics reads) and the service's latency histograms."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

PUSH_INTERVAL_S = 0.5  # how often a stream sends what changed (a new reading shows within this)
WINDOW_S = 10.0  # readings/s and latency quantiles are over the last WINDOW_S seconds


def bucket_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The q-quantile of a histogram (cumulative `counts` per upper bound, the last +Inf), interpolated
    linearly inside its bucket as Prometheus' histogram_quantile does; None when it holds nothing."""
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    below, low = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return low  # beyond the last finite bound: say the bound, as Prometheus does
            inside = count - below
            return low + (bound - low) * ((rank - below) / inside if inside else 0.0)
        below, low = count, bound
    return low


class _Window:
    """Counts sampled over time, so a figure can be a rate or a quantile over the last WINDOW_S seconds."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._samples: deque[tuple[float, Any]] = deque()

    def add(self, now: float, value: Any) -> Any:
        """Store `value` at `now`; return the oldest value still inside the window, with its time."""
        self._samples.append((now, value))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        return self._samples[0]


class Fleet:
    """Turns cumulative counts into the page's figures; subclasses say where the counts come from."""

    transport = ""

    def __init__(self) -> None:
        self._readings = _Window()
        self._latency = _Window()
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def counts(self) -> dict[str, Any]:  # pragma: no cover - overridden
        """Cumulative counts: readings (int), errors {reason: n}, devices, evictions {cause: n}, connected
        (None: not known) and latency ((upper bounds with +Inf, cumulative counts), or None: no histogram)."""
        raise NotImplementedError

    def figures(self) -> dict[str, Any]:
        """readings, readings_per_s, errors {reason: n}, latency_p50_s/p99_s (None: no data), devices,
        evictions {cause: n}, connected; recomputed at most every PUSH_INTERVAL_S whatever the streams."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < PUSH_INTERVAL_S / 2:
                return self._cached[1]
            c = self.counts()
            then, before = self._readings.add(now, c["readings"])
            span = now - then
            rate = (c["readings"] - before) / span if span > 0 else 0.0
            p50 = p99 = None
            if c.get("latency") is not None:
                bounds, counts = c["latency"]
                _, old = self._latency.add(now, counts)
                recent = [a - b for a, b in zip(counts, old, strict=True)]
                if recent and recent[-1] <= 0:
                    recent = list(counts)  # nothing new in the window: the figures since the start
                p50, p99 = bucket_quantile(0.5, bounds, recent), bucket_quantile(0.99, bounds, recent)
            figures = {
                "transport": self.transport,
                "readings": c["readings"],
                "readings_per_s": round(rate, 2),
                "errors": c["errors"],
                "latency_p50_s": p50,
                "latency_p99_s": p99,
                "devices": c["devices"],
                "evictions": c["evictions"],
                "connected": c.get("connected"),
                "time": time.time(),
            }
            self._cached = (now, figures)
            return figures


class StatsFleet(Fleet):
    """Figures from a serving process's `stats()` (`streaming.core.Stats`: the same shape from the MQTT service
    and the JetStream worker, what /metrics reads too) and, where it keeps them, its latency histograms
    (`Service.histograms`, kept when the service has a metrics port: `--ui` gives it one).

    Args:
        source: the Service or Worker.
    """

    def __init__(self, source: Any):
        super().__init__()
        self.source = source

    def counts(self) -> dict[str, Any]:
        st = self.source.stats()
        models = list(st.models.values())
        errors: dict[str, int] = {}
        for (_, reason), n in st.errors.items():
            errors[reason] = errors.get(reason, 0) + n
        return {
            "readings": sum(m.readings for m in models),
            "errors": errors,
            "devices": sum(m.devices for m in models),
            "evictions": {
                "idle": sum(m.evicted_idle for m in models),
                "lru": sum(m.evicted_lru for m in models),
            },
            "connected": st.connected,
            "latency": self._latency_buckets(),
        }

    def _latency_buckets(self) -> tuple[list[float], list[float]] | None:
        """Every model's latency histogram summed: (upper bounds with +Inf, cumulative counts), or None."""
        hist = getattr(self.source, "histograms", None)
        if hist is None or not hist.latency_seconds:
            return None
        summed: dict[float, float] = {}
        for h in list(hist.latency_seconds.values()):
            for le, count in h.cumulative()[0]:
                summed[float(le)] = summed.get(float(le), 0) + count
        bounds = sorted(summed)
        return bounds, [summed[b] for b in bounds]


class ServiceFleet(StatsFleet):
    """`rnnzoo serve`'s figures: its stats and its latency histograms."""

    transport = "mqtt"


class WorkerFleet(StatsFleet):
    """`rnnzoo worker`'s figures: its stats over the partitions it owns now. The worker keeps no latency
    histogram, so the page shows none for it."""

    transport = "jetstream"
