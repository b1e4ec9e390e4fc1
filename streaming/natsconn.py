"""The JetStream transport's connection: start-up like MQTT mode's, and a client that cannot be made deaf.

- Start-up: attempts with MQTT mode's jittered exponential back-off (`streaming.backoff`: 0.1 s doubling,
  here to 5 s, each drawn from [d/2, d]); refusals before the first success (wrong token or password, a TLS
  mismatch) end it after `max_refusals` with `NatsRefused`, an unreachable server after `connect_timeout_s` with `NatsUnreachable` — one line each
  for the command line (exit 2). A stop request (SIGTERM) ends the wait at once.
- One log line per failure kind, rate-limited (`LogBudget`); URLs are shown with the password redacted and
  tokens are never logged.
- `tls://` means TLS: a server that does not ask for TLS is refused before the client sends CONNECT (which
  carries the credentials), instead of talking plain text.
- A subject that is not valid UTF-8 reaches the worker with its bad bytes as lone surrogates
  (`surrogateescape`), where the device-id policy refuses it; nats-py would otherwise end its read loop on
  the decode error and the worker would live on deaf. `ReadLoopWatch` catches any other way the loop ends.

`SafeClient` overrides two internal hooks of nats-py 2.x (`_build_message`, `_process_info`); both exist in
every 2.x release (checked on 2.16).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import urllib.parse
from typing import Any

from nats.aio.client import Client

from streaming.backoff import Attempts
from streaming.config import redact_url
from streaming.logs import LogBudget

log = logging.getLogger("streaming.worker")

BACKOFF_MAX_S = 5.0


class NatsUnreachable(ConnectionError):
    """The server could not be reached for connect_timeout_s."""


class NatsRefused(ConnectionError):
    """The server refused us (credentials, TLS) max_refusals times before a first success."""


class PlainTextRefused(ConnectionError):
    """A tls:// URL, and the server does not ask for TLS."""


class SafeClient(Client):
    """nats-py's client, never deaf on an undecodable subject and never plain text to a tls:// URL."""

    def _build_message(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Any:
        return self.msg_class(
            subject=subject.decode("utf-8", "surrogateescape"),
            reply=reply.decode("utf-8", "surrogateescape"),
            data=data,
            headers=headers,
            _client=self,
            _sid=sid,
        )

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        server = getattr(self, "_current_server", None)
        if initial_connection and server is not None and server.uri.scheme == "tls":
            if not info.get("tls_required") and not info.get("tls_available"):
                raise PlainTextRefused(f"{server.uri.hostname}:{server.uri.port} does not offer TLS")
        await super()._process_info(info, initial_connection)


def safe_url(url: str) -> str:
    """The URL as logs show it: a password becomes '***', a token (user part alone) too."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None and parts.password is None:
        return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{parts.netloc.rsplit('@', 1)[1]}"))
    return redact_url(url)


def _kind(err: BaseException) -> tuple[str, bool]:
    """(failure kind for the log, whether it is a refusal that retrying will not fix)."""
    from nats import errors

    text = str(err).lower()
    if isinstance(err, PlainTextRefused):
        return "plain-text server for a tls:// URL", True
    if isinstance(err, errors.AuthorizationError) or "authorization" in text or "authentication" in text:
        return "credentials refused", True
    if isinstance(err, ssl.SSLError):
        return "TLS handshake failed", True
    if isinstance(err, (ConnectionRefusedError, errors.NoServersError)):
        return "connection refused", False
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        return "timed out", False
    return type(err).__name__, False


async def connect(
    url: str,
    stop: asyncio.Event,
    connect_timeout_s: float = 10.0,
    max_refusals: int = 3,
    **options: Any,
) -> SafeClient | None:
    """A connected SafeClient that reconnects for ever once it was connected, or None when `stop` was set
    first; NatsRefused / NatsUnreachable end a start-up that cannot succeed."""
    budget = LogBudget(log, per_period=1, period_s=30.0)
    deadline = time.monotonic() + connect_timeout_s
    attempts = Attempts(max_refusals, max_s=BACKOFF_MAX_S)
    where = safe_url(url)
    while not stop.is_set():
        nc = SafeClient()

        async def quiet(err: Exception) -> None:  # failures are logged below, once per kind
            return None

        try:
            # max_reconnect_attempts=1: with 0, nats-py retries a closed port for ever inside connect().
            await asyncio.wait_for(
                nc.connect(
                    url,
                    connect_timeout=min(2.0, connect_timeout_s),
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.05,
                    error_cb=quiet,
                    **options,
                ),
                min(5.0, connect_timeout_s) + 1.0,
            )
        except Exception as err:  # noqa: BLE001 - every failure is classified below
            kind, refused = _kind(err)
            attempts.failed(f"NATS server {where}: {kind}" if refused else None)
            if budget.allow(kind):
                log.error("NATS server %s: %s (%s)", where, kind, type(err).__name__)
            if attempts.gave_up:
                raise NatsRefused(f"{attempts.refusal} ({attempts.refusals} attempts)") from None
            if not refused and time.monotonic() >= deadline:
                raise NatsUnreachable(
                    f"NATS server {where} unreachable for {connect_timeout_s:g} s: {kind}"
                ) from None
            try:
                await asyncio.wait_for(stop.wait(), attempts.delay())
            except TimeoutError:
                pass
            continue
        # Connected: from now on the client reconnects by itself (the server may restart under us).
        attempts.connected()
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
        return nc
    return None


class ReadLoopWatch:
    """Whether the client still reads: a PING answered by a PONG within `timeout_s`, asked every turn;
    `dead()` after `misses` unanswered ones while the client believes it is connected."""

    def __init__(self, nc: Any, misses: int = 3, timeout_s: float = 2.0):
        self.nc, self.misses, self.timeout_s = nc, misses, timeout_s
        self.missed = 0

    async def check(self) -> bool:
        """One probe; True while the client is alive (or reconnecting, which is not deafness)."""
        if not self.nc.is_connected:
            self.missed = 0
            return True
        try:
            await self.nc.flush(timeout=self.timeout_s)
            self.missed = 0
        except Exception:  # noqa: BLE001 - a timeout, or the connection closing under us
            self.missed += self.nc.is_connected
        return self.missed < self.misses
