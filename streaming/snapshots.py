"""The MQTT service's snapshot file (`streaming.service`): every binding's state table written atomically to
`snapshot_path` between batches, and restored at start — a bad file moved aside, never a crash loop.

The format and its checks are `streaming.state.save_snapshot` / `load_snapshot`; this class decides when a
snapshot counts as taken, what a failure costs (a counter and a log line: a full disk must not stop the
predictions) and which tables a restored file may fill (the same key and the same weights' fingerprint).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from streaming.config import ServiceSettings
from streaming.state import SnapshotError, load_snapshot, save_snapshot

log = logging.getLogger("streaming")


class Snapshots:
    """Save and restore the state tables of `routes` (each with `key`, `table` and `model.engine`).

    Args:
        settings: the service's settings (snapshot_path, max_snapshot_bytes, max_device_id_bytes).
        routes: the service's routes.
        counters: the service's counters (snapshots, snapshot_failures).
        histogram: observes each snapshot's seconds (None: no metrics).
    """

    def __init__(
        self, settings: ServiceSettings, routes: Sequence[Any], counters: Counter[str], histogram: Any = None
    ):
        self.settings, self.routes, self.counters, self.histogram = settings, routes, counters, histogram
        self.last: float | None = None  # monotonic time of the last snapshot written
        self.started = time.monotonic()

    def age(self) -> float | None:
        """Seconds since the last snapshot was written (since the start before the first); None without one."""
        if not self.settings.snapshot_path:
            return None
        return time.monotonic() - (self.last if self.last is not None else self.started)

    def save(self) -> None:
        """Write all state tables atomically to snapshot_path (between batches, so it is consistent)."""
        path = self.settings.snapshot_path
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
        self.last = time.monotonic()
        if self.histogram is not None:
            self.histogram.observe(self.last - began)

    def restore(self) -> None:
        """Fill the tables from snapshot_path when it exists; a table taken with other weights starts empty,
        a file that fails its checks is moved aside and every table starts empty."""
        path = self.settings.snapshot_path
        if not path or not os.path.exists(path):
            return
        try:
            saved = load_snapshot(path, self.settings.max_snapshot_bytes)
            restored = []
            for route in self.routes:
                if route.key not in saved:
                    continue
                fingerprint, arrays = saved[route.key]
                if fingerprint != route.model.engine.fingerprint:
                    log.warning("snapshot for %s was taken with other weights; starting it empty", route.key)
                    continue
                route.table.load_arrays(arrays, self.settings.max_device_id_bytes)
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
