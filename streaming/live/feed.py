"""The live page's feed: a bounded, thread-safe table of devices and rings of their recent outputs.

The serving thread calls `LiveFeed.predictions()` once per stepped wave and `LiveFeed.error()` per refused
message; the page's HTTP threads read the rows changed since a version and a watched device's ring. At most
`max_devices` rows (the least recently seen go first) and `history_devices` rings of `ring` points.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np

RING = 300  # points kept per watched device: a few hundred steps of a chart
MAX_DEVICES = 10_000  # rows held; the least recently seen device makes room for a new one
HISTORY_DEVICES = 64  # devices with a ring: the first seen, then the ones a page asks for
SHOWN_OUTPUTS = 4  # outputs shown in a row of a model without class names
MAX_ID_CHARS = 200  # a device id is cut to this in rows (the service caps ids at 128 bytes anyway)


class LiveFeed:
    """A bounded, thread-safe table of devices and rings of their recent outputs, written by the service.

    Args:
        ring: points kept per watched device.
        max_devices: rows held; beyond it the least recently seen device is dropped.
        history_devices: devices that keep a ring (the first seen, then those a page watches).
    """

    def __init__(
        self, ring: int = RING, max_devices: int = MAX_DEVICES, history_devices: int = HISTORY_DEVICES
    ):
        if ring < 1 or max_devices < 1 or history_devices < 1:
            raise ValueError("ring, max_devices and history_devices must be >= 1")
        self.ring = ring
        self.max_devices = max_devices
        self.history_devices = history_devices
        self.models: dict[str, list[str] | None] = {}  # model name -> class names (None: a regressor)
        self.dropped = 0  # rows dropped to stay within max_devices
        self._lock = threading.Lock()
        self._version = 0
        # device -> [model, step, label, confidence, outputs, last seen, errors, last error, version]
        self._rows: OrderedDict[str, list[Any]] = OrderedDict()
        self._history: OrderedDict[str, deque] = OrderedDict()
        self._point = 0  # sequence number of history points, so a stream sends only the new ones

    def add_model(self, name: str, class_names: Sequence[str] | None) -> None:
        """Declare a served model (its class names make rows show a label and the chart probabilities)."""
        with self._lock:
            self.models[name] = list(class_names) if class_names else None

    # -- written by the service's thread ------------------------------------------------------------------

    def predictions(
        self,
        model: str,
        devices: Sequence[str],
        steps: Any,
        outputs: Any,
        readings: Sequence[Any] | None = None,
        now: float | None = None,
    ) -> None:
        """Record one wave: device i made outputs[i] at step steps[i] from readings[i] (optional)."""
        n = len(devices)
        if not n:
            return
        now = time.time() if now is None else now
        out = np.asarray(outputs, dtype=np.float64).reshape(n, -1)
        step_list = np.asarray(steps).reshape(n).tolist()
        names = self.models.get(model)
        if names is not None:
            best = np.argmax(out, axis=1).tolist()
            conf = np.round(out.max(axis=1), 4).tolist()
            labels = [names[b] if b < len(names) else str(b) for b in best]
            shown: list[Any] = [None] * n
        else:
            labels, conf = [None] * n, [None] * n
            shown = np.round(out[:, :SHOWN_OUTPUTS], 5).tolist()
        with self._lock:
            self._version += 1
            version = self._version
            rows, history = self._rows, self._history
            for i, device in enumerate(devices):
                row = rows.get(device)
                if row is None:
                    row = self._new_row(device)
                else:
                    rows.move_to_end(device)
                row[0], row[1], row[2], row[3], row[4], row[5], row[8] = (
                    model,
                    step_list[i],
                    labels[i],
                    conf[i],
                    shown[i],
                    now,
                    version,
                )
                ring = history.get(device)
                if ring is None and len(history) < self.history_devices:
                    ring = history[device] = deque(maxlen=self.ring)
                if ring is not None:
                    self._point += 1
                    reading = None
                    if readings is not None:
                        reading = np.round(np.asarray(readings[i], dtype=np.float64), 5).tolist()
                    ring.append((self._point, step_list[i], now, np.round(out[i], 5).tolist(), reading))

    def error(self, device: str, reason: str, model: str = "", now: float | None = None) -> None:
        """Count a refused message against its device (the row shows the count and the last reason)."""
        with self._lock:
            self._version += 1
            row = self._rows.get(device)
            if row is None:
                row = self._new_row(device)
                row[0] = model or None
            else:
                self._rows.move_to_end(device)
            row[5] = time.time() if now is None else now
            row[6] += 1
            row[7] = reason
            row[8] = self._version

    def _new_row(self, device: str) -> list[Any]:
        if len(self._rows) >= self.max_devices:
            gone, _ = self._rows.popitem(last=False)
            self._history.pop(gone, None)
            self.dropped += 1
        row = [None, 0, None, None, None, 0.0, 0, None, 0]
        self._rows[device] = row
        return row

    # -- read by the HTTP threads -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def rows_since(self, version: int) -> tuple[int, list[list[Any]]]:
        """(current version, [[id, model, step, label, confidence, outputs, last seen, errors, last error]])
        of the devices changed after `version` (0: every device)."""
        # Every write moves its row to the end and stamps it with a newer version, so the rows changed since
        # `version` are the table's tail: read backwards to the first older one, O(changed) not O(devices).
        changed = []
        with self._lock:
            rows = self._rows
            for device in reversed(rows):
                row = rows[device]
                if row[8] <= version:
                    break
                changed.append([device[:MAX_ID_CHARS], *row[:8]])
            current = self._version
        changed.reverse()
        return current, changed

    def watch(self, device: str) -> bool:
        """Keep a ring for `device` from now on (the least recently watched gives its ring up); False when
        the device is not in the table."""
        with self._lock:
            if device not in self._rows:
                return False
            if device in self._history:
                self._history.move_to_end(device)
                return True
            if len(self._history) >= self.history_devices:
                self._history.popitem(last=False)
            self._history[device] = deque(maxlen=self.ring)
            return True

    def history(self, device: str, after: int = 0) -> list[tuple]:
        """The ring's points after point number `after`: (point, step, time, outputs, reading or None)."""
        with self._lock:
            ring = self._history.get(device)
            if ring is None:
                return []
            return [p for p in ring if p[0] > after]

    def row(self, device: str) -> list[Any] | None:
        with self._lock:
            row = self._rows.get(device)
            return None if row is None else list(row)
