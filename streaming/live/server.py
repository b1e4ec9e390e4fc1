"""The live page's HTTP server: `/` the page (streaming/static, no CDN), `/events` one Server-Sent Events stream
of table changes and fleet figures, `/events/device?id=…` one device's ring and new points.

Safe by default: it binds 127.0.0.1, answers GET only, refuses a Host header that is not the address it serves
on (DNS rebinding) and, with a token, refuses the data streams without it. Every response carries a
Content-Security-Policy that allows no inline script, and at most MAX_STREAMS streams are open at once.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from streaming.live.feed import MAX_ID_CHARS, LiveFeed
from streaming.live.fleet import PUSH_INTERVAL_S, Fleet

log = logging.getLogger("streaming")

MAX_STREAMS = 32  # open event streams; more are refused (each holds a thread)

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "live.css": "text/css; charset=utf-8",
    "vendor/uplot/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
    "vendor/uplot/LICENSE": "text/plain; charset=utf-8",
}
SECURITY_HEADERS = [
    # No inline script or style attribute, nothing from another origin: a string that slipped into markup
    # still could not run.
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


def _static(name: str) -> bytes:
    return (resources.files("streaming") / "static" / name).read_bytes()


def _event(name: str, data: Any) -> bytes:
    # json.dumps escapes newlines inside strings, so one event is one `data:` line whatever a device sent.
    try:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite number (JSON has none): sent as null, never as a broken stream
        body = json.dumps(_nulls(data), separators=(",", ":"), allow_nan=False)
    return f"event: {name}\ndata: {body}\n\n".encode()


def _nulls(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_nulls(v) for v in value]
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class LiveServer:
    """Serve the live page of `feed` and `fleet` on host:port (port 0: any free port; see `.port`, `.url`).

    Args:
        feed: what the service writes.
        fleet: where the fleet figures come from (ServiceFleet, WorkerFleet), or None.
        host: address to bind; 127.0.0.1 keeps the page off the network.
        port: TCP port, 0 for one the OS picks.
        token: when set, /events and /events/device need `?token=…` or `Authorization: Bearer …`.
        interval_s: how often a stream sends what changed.
    """

    def __init__(
        self,
        feed: LiveFeed,
        fleet: Fleet | None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        interval_s: float = PUSH_INTERVAL_S,
    ):
        self.feed, self.fleet, self.token, self.interval_s = feed, fleet, token or None, interval_s
        self.stopping = threading.Event()
        self._streams = threading.BoundedSemaphore(MAX_STREAMS)
        server_class = _IPv6Server if ":" in host else _Server
        self._httpd = server_class((host, port), _handler(self))
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="rnnzoo-live", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?token={urllib.parse.quote(self.token)}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the streams, stop serving and release the port."""
        self.stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    # -- what the handler asks --------------------------------------------------------------------------

    def host_allowed(self, header: str | None) -> bool:
        """A page bound to loopback answers only to loopback names (a rebinding DNS name is refused)."""
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            return True
        if not header:
            return False
        name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
        return name.strip("[]").lower() in ("127.0.0.1", "localhost", "::1")

    def authorised(self, query: dict[str, list[str]], authorization: str | None) -> bool:
        if self.token is None:
            return True
        given = (query.get("token") or [""])[0]
        if not given and authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def fleet_stream(self) -> Iterator[bytes]:
        """The page's main stream: models once, then every interval the changed rows and the fleet figures."""
        yield b"retry: 1000\n\n"
        yield _event("hello", {"models": dict(self.feed.models), "ring": self.feed.ring})
        version = 0
        while not self.stopping.is_set():
            version, rows = self.feed.rows_since(version)
            if rows:
                yield _event("rows", [[_finite(v) for v in r] for r in rows])
            if self.fleet is not None:
                figures = dict(self.fleet.figures())
                figures["shown"] = len(self.feed)
                figures["dropped_rows"] = self.feed.dropped
                yield _event("fleet", figures)
            else:
                yield b": tick\n\n"
            self.stopping.wait(self.interval_s)

    def device_stream(self, device: str) -> Iterator[bytes]:
        """One device: its ring on connect, then the points that follow."""
        yield b"retry: 1000\n\n"
        known = self.feed.watch(device)
        row = self.feed.row(device)
        yield _event(
            "device", {"id": device[:MAX_ID_CHARS], "known": known, "model": row[0] if row else None}
        )
        after = 0
        while not self.stopping.is_set():
            points = self.feed.history(device, after)
            if points:
                after = points[-1][0]
                yield _event("points", [[p[1], p[2], p[3], p[4]] for p in points])
            else:
                yield b": tick\n\n"
            self.stopping.wait(self.interval_s)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open stream never keeps the process alive
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A page that went away is not news; anything else is one log line, not a traceback on stderr."""
        err = sys.exc_info()[1]
        if not isinstance(err, ConnectionError | TimeoutError):
            log.warning("live page: a request failed: %s: %s", type(err).__name__, err)


class _IPv6Server(_Server):
    import socket as _socket

    address_family = _socket.AF_INET6


def _handler(live: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rnnzoo-live"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the service's log lines are about devices, not page views

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            """One whole response: its status, type, length and the security headers, then the body (not
            for HEAD)."""
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in SECURITY_HEADERS:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _plain(self, status: int, text: str) -> None:
            self._send(status, "text/plain; charset=utf-8", f"{text}\n".encode())

        def _refuse_write(self) -> None:
            self.send_response(405)
            self.send_header("Allow", "GET, HEAD")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_write  # noqa: N815 - read-only

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not live.host_allowed(self.headers.get("Host")):
                return self._plain(421, "this page answers on 127.0.0.1 or localhost only")
            parts = urllib.parse.urlsplit(self.path)
            path = parts.path
            query = urllib.parse.parse_qs(parts.query)
            if path in ("/", "/index.html"):
                return self._file("index.html")
            if path == "/favicon.ico":
                return self._plain(404, "no icon")  # asked by every browser; answered quietly
            if path.startswith("/static/") and path[len("/static/") :] in STATIC_FILES:
                return self._file(path[len("/static/") :])
            if path in ("/events", "/events/device"):
                if not live.authorised(query, self.headers.get("Authorization")):
                    return self._plain(401, "a token is needed: open the URL the service logged")
                if path == "/events":
                    return self._stream(live.fleet_stream())
                device = (query.get("id") or [""])[0]
                if not device:
                    return self._plain(400, "give ?id=DEVICE")
                return self._stream(live.device_stream(device))
            return self._plain(404, "not found: the page is at /")

        def _file(self, name: str) -> None:
            self._send(200, STATIC_FILES[name], _static(name))

        def _stream(self, events: Iterator[bytes]) -> None:
            if not live._streams.acquire(blocking=False):
                return self._plain(503, f"too many open streams (at most {MAX_STREAMS})")
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Connection", "close")
                for k, v in SECURITY_HEADERS:
                    self.send_header(k, v)
                self.end_headers()
                self.close_connection = True
                if self.command == "HEAD":
                    return
                for chunk in events:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the page went away
            finally:
                live._streams.release()

    return Handler
