"""Log lines of `rnnzoo serve`: text or one JSON object per line, and a budget that bounds per-message lines.

`--log-format json` writes one object a line with `ts` (UTC, ISO 8601), `level`, `logger` and `msg`, plus the
fields a line was given through `extra=`: for a refused or failed message `device`, `model`, `reason` and
`topic`; for a suppression summary `kind` and `suppressed`; `exc` holds a traceback when there is one.

Every log line that a message from outside can cause goes through a `LogBudget`: at most `per_period` lines
of each kind per `period_s`, the rest counted and reported in one "suppressed N log lines" line when the
period ends (or the service stops). Kinds are the service's fixed error reasons, never a device id, so
10,000 bad payloads of one kind write 10 lines and a summary, not 10,000.

Example:

    configure("info", "json")
    budget = LogBudget(logging.getLogger("streaming"))
    if budget.allow("not JSON"):
        log.warning("refused a message", extra={"device": "dev1", "reason": "not JSON"})
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import IO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# The `extra=` fields a JSON line carries when a record has them.
FIELDS = ("device", "model", "reason", "topic", "kind", "suppressed")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the FIELDS it was given, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) as text or JSON lines; returns the handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    return handler


class LogBudget:
    """At most `per_period` log lines of each kind per `period_s`; the others are counted, and one line says
    how many were suppressed once their period is over (`flush`) — so a flood cannot fill a disk, and is
    still visible in the log.

    Args:
        logger: where the summary lines go.
        per_period: lines allowed per kind and period.
        period_s: the period, in seconds.
    """

    def __init__(self, logger: logging.Logger, per_period: int = 10, period_s: float = 60.0):
        self.logger = logger
        self.per_period = per_period
        self.period_s = period_s
        # kind -> [period start (monotonic), lines asked for, lines suppressed]
        self._windows: dict[str, list[float]] = {}

    def allow(self, kind: str) -> bool:
        """True if a line of this kind may be written now; False means it was counted as suppressed."""
        now = time.monotonic()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.period_s:
            if window is not None and window[2]:
                self._summary(kind, window, now)
            window = self._windows[kind] = [now, 0, 0]
        window[1] += 1
        if window[1] <= self.per_period:
            return True
        window[2] += 1
        return False

    def flush(self, final: bool = False) -> None:
        """Write the summary of every period that has ended (every period at all when `final`)."""
        now = time.monotonic()
        for kind, window in list(self._windows.items()):
            if final or now - window[0] >= self.period_s:
                if window[2]:
                    self._summary(kind, window, now)
                del self._windows[kind]

    def _summary(self, kind: str, window: list[float], now: float) -> None:
        n = int(window[2])
        self.logger.warning(
            "suppressed %d log lines of kind %r in the last %.0f s (at most %d a kind per %.0f s)",
            n,
            kind,
            now - window[0],
            self.per_period,
            self.period_s,
            extra={"kind": kind, "suppressed": n},
        )
