"""Connection attempts, the same policy in both transports (`streaming.mqttconn`, `streaming.natsconn`).

Failures since the last accepted connection drive a jittered exponential back-off: 0.1 s doubling to a ceiling,
each delay drawn from [d/2, d], so a fleet of processes restarted together does not hammer the server in
lock-step (without a delay a refused password meant ~1,600 attempts a second). Refusals before the first
success — credentials, a TLS mismatch — are bounded: retrying cannot fix them, so start-up ends after
`max_refusals` of them (one line, exit status 2 on the command line).

    attempts = Attempts(max_refusals=3, max_s=30.0)
    while not attempts.gave_up:
        wait(attempts.delay())
        try: connect(); attempts.connected(); break
        except Refused as err: attempts.failed(str(err))
        except OSError: attempts.failed()
"""

from __future__ import annotations

import random

BACKOFF_FIRST_S = 0.1


class Attempts:
    """Failures and refusals of one connection's attempts.

    Args:
        max_refusals: refusals before a first success after which `gave_up` is true.
        first_s: the first delay after a failure.
        max_s: the longest delay.
    """

    def __init__(self, max_refusals: int, first_s: float = BACKOFF_FIRST_S, max_s: float = 30.0):
        self.max_refusals, self.first_s, self.max_s = max_refusals, first_s, max_s
        self.failures = 0  # since the last accepted connection
        self.refusals = 0  # likewise, the failures retrying cannot fix
        self.refusal = ""  # the last refusal, as the user reads it
        self.ever_connected = False

    def failed(self, refusal: str | None = None) -> None:
        """Count a failed attempt; `refusal` (why, one line) when retrying cannot fix it."""
        self.failures += 1
        if refusal is not None:
            self.refusals += 1
            self.refusal = refusal

    def connected(self) -> None:
        self.failures = self.refusals = 0
        self.ever_connected = True

    @property
    def gave_up(self) -> bool:
        """Refused `max_refusals` times before any success: start-up should end."""
        return not self.ever_connected and self.refusals >= self.max_refusals

    def delay(self) -> float:
        """Seconds to wait before the next attempt: 0 after a success, else jittered and doubling."""
        if not self.failures:
            return 0.0
        ceiling = min(self.max_s, self.first_s * 2 ** min(self.failures - 1, 16))
        return random.uniform(ceiling / 2, ceiling)
