"""Local TCP ports: pick a free one, wait until something listens on one (brokers started by demo, tests and
benchmarks)."""

from __future__ import annotations

import argparse
import socket
import time


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; it stays free until someone binds it)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` different free ports: each socket stays bound until all are picked, so the OS cannot hand one port
    back twice (two `free_port` calls in a row can return the same one)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Return once a TCP connection to host:port succeeds; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def port_number(text: str) -> int:
    """A command line's port argument: 0..65535 (0: any free port), else one argparse error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535 (0: any free port), got {text}")
    return value
