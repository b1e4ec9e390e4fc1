"""The service's HTTP side: Prometheus `/metrics`, `/healthz` and `/readyz` on a small threaded server.

    /metrics  the registry in Prometheus text format (OpenMetrics when asked), by prometheus_client
    /healthz  200 while the service's loop is alive (it went round recently); 503 with the reason otherwise
    /readyz   200 once connected, subscribed and the snapshot restored; 503 with what is missing otherwise

The server runs on its own daemon thread (wsgiref, one thread per request) and touches the service only
through the two probe callables and the registry's collectors, so a scrape never blocks the MQTT loop for
longer than it takes to copy a few counters. `stop()` shuts it down and closes the socket: the port is free
again when it returns.

Example:

    server = HealthServer("127.0.0.1", 9100, registry, service.liveness, service.readiness)
    server.start()       # curl http://127.0.0.1:9100/readyz
    ...
    server.stop()
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

Probe = Callable[[], tuple[bool, str]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck client never keeps the process alive
    allow_reuse_address = True  # a restarted service can bind the port its predecessor just left


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a scrape every 15 s is not news; stderr belongs to the service's own log lines


class HealthServer:
    """Serve `/metrics`, `/healthz` and `/readyz` on host:port (port 0: any free port, see `.port`).

    Args:
        host: address to bind; 127.0.0.1 keeps the endpoints off the network.
        port: TCP port, 0 for one chosen by the OS.
        registry: what /metrics exposes.
        liveness: () -> (alive, reason) for /healthz.
        readiness: () -> (ready, reason) for /readyz.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry, liveness: Probe, readiness: Probe):
        self._metrics = make_wsgi_app(registry)
        self._probes = {"/healthz": liveness, "/readyz": readiness}
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        self._httpd = make_server(
            host, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self.host = host
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="rnnzoo-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)
        probe = self._probes.get(path)
        if probe is None:
            body = b"not found: try /metrics, /healthz or /readyz\n"
            status = "404 Not Found"
        else:
            try:
                ok, why = probe()
            except Exception as err:  # noqa: BLE001 - a probe that fails says so; it must not kill the server
                ok, why = False, f"probe failed: {type(err).__name__}: {err}"
            body = f"{why}\n".encode()
            status = "200 OK" if ok else "503 Service Unavailable"
        start_response(
            status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        )
        return [body]
