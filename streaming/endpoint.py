"""The HTTP endpoint both transports serve with `--metrics-port`: Prometheus `/metrics` read from the process's
public stats (`streaming.metrics`), `/healthz` from a `Heartbeat` of its loop and `/readyz` from its own
readiness (`streaming.health`).

    beat = Heartbeat("the service loop")
    http = start_endpoint("127.0.0.1", 9100, service, beat.liveness, service.readiness)
    ...  # the loop calls beat.beat() every turn
    http.stop()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.health import HealthServer

log = logging.getLogger("streaming")

# /healthz fails when a loop has not gone round for this long. The MQTT loop goes round at least every 0.2 s
# (its select timeout) and during reconnect back-offs (30 s at most), the worker's every third of its lease
# TTL; a 1,000,000-device snapshot takes seconds.
STALLED_AFTER_S = 60.0


class Heartbeat:
    """Whether a serving loop runs and went round lately: `/healthz`'s answer. `what` names the loop."""

    def __init__(self, what: str, stalled_after_s: float = STALLED_AFTER_S):
        self.what, self.stalled_after_s = what, stalled_after_s
        self.running = False
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def liveness(self) -> tuple[bool, str]:
        """(alive, why): the loop is running and went round within `stalled_after_s`."""
        if not self.running:
            return False, f"not running: {self.what} has ended"
        idle = time.monotonic() - self.last
        if idle > self.stalled_after_s:
            return False, f"stalled: {self.what} has not gone round for {idle:.0f} s"
        return True, "alive"


def readiness(missing: list[str]) -> tuple[bool, str]:
    """(ready, why) for `/readyz` from what is still missing."""
    if missing:
        return False, "not ready: " + "; ".join(missing)
    return True, "ready"


def start_endpoint(
    host: str,
    port: int,
    source: Any,
    liveness: Callable[[], tuple[bool, str]],
    readiness: Callable[[], tuple[bool, str]],
) -> HealthServer:
    """Serve /metrics (from `source.stats()` and `source.histograms`), /healthz and /readyz on host:port,
    in a thread of its own; OSError in one line when the port cannot be bound."""
    from streaming.health import HealthServer
    from streaming.metrics import service_registry

    try:
        http = HealthServer(host, port, service_registry(source), liveness, readiness)
    except OSError as err:
        raise OSError(f"metrics port {host}:{port}: {err.strerror or err}") from None
    http.start()
    log.info("metrics on http://%s:%d/metrics (probes: /healthz, /readyz)", host, http.port)
    return http
