"""Refused credentials and TLS mismatches end the start-up with one line (exit 2) after a few spaced attempts —
no reconnect storm — and a password never reaches a log line or an error message."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MOSQUITTO, Mosquitto, free_port, tiny_model, wait_port

from streaming.config import from_dict, redact_url
from streaming.models import build_served
from streaming.service import BrokerRefused, Service

SECRET = "s3cret-Pa55"


class PrivateMosquitto(Mosquitto):
    """A Mosquitto that wants user `rnnzoo` / SECRET, optionally with a TLS listener on `tls_port`."""

    def __init__(self, workdir: Path, tls: bool = False):
        super().__init__(workdir)
        passwords = workdir / "passwd"
        passwords.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), "rnnzoo", SECRET], check=True)
        conf = (
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            "persistence false\nuser root\n"
        )
        self.tls_port = None
        if tls:
            key, cert = workdir / "key.pem", workdir / "cert.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                 "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True,
            )  # fmt: skip
            while self.tls_port in (None, self.port):  # the OS may hand back the port it just gave
                self.tls_port = free_port()
            conf += f"listener {self.tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
        self.conf.write_text(conf + f"log_dest file {self.log}\nlog_type all\n")

    def start(self) -> None:
        super().start()
        if self.tls_port:
            wait_port(self.tls_port)
        time.sleep(0.2)
        self._probes = self._connections()  # the readiness probes above connected too

    def _connections(self) -> int:
        text = self.log.read_text()  # TLS listeners log a failed handshake as "Client connection from"
        return text.count("New connection from") + text.count("Client connection from")

    def connect_attempts(self) -> int:
        """TCP connections made since the broker became ready."""
        time.sleep(0.2)  # let the broker write its last log lines
        return self._connections() - self._probes


@pytest.fixture
def private_broker(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.skip("no mosquitto")
    broker = PrivateMosquitto(tmp_path, tls=True)
    broker.start()
    yield broker
    broker.stop()


def _service(url: str, **broker) -> Service:
    settings = from_dict(
        {
            "broker": {"url": url, "connect_timeout_s": 5.0, **broker},
            "bindings": [{"topic": "sensors/+/imu", "model": "tiny"}],
        }
    )
    return Service(settings, models={0: build_served(tiny_model(), None, "tiny")})


@pytest.mark.parametrize(
    "how",
    ["wrong password", "no credentials", "plain MQTT on the TLS port", "TLS on the plain port"],
)
def test_refusals_at_start_up_give_one_clear_error_after_a_few_spaced_attempts(
    private_broker, caplog, how: str
) -> None:
    b = private_broker
    url = {
        "wrong password": f"mqtt://rnnzoo:wrong-{SECRET}@127.0.0.1:{b.port}",
        "no credentials": f"mqtt://127.0.0.1:{b.port}",
        "plain MQTT on the TLS port": f"mqtt://rnnzoo:{SECRET}@127.0.0.1:{b.tls_port}",
        "TLS on the plain port": f"mqtts://rnnzoo:{SECRET}@127.0.0.1:{b.port}",
    }[how]
    svc = _service(url)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(BrokerRefused) as err:
        svc.run()
    took = time.monotonic() - started
    assert SECRET not in str(err.value) and all(SECRET not in r.getMessage() for r in caplog.records)
    assert b.connect_attempts() == 3, b.log.read_text()[-500:]  # broker.max_refusals, then stop
    assert 0.1 < took < 10  # spaced by the backoff (0.05-0.1 s, then 0.1-0.2 s), not a storm
    assert any(word in str(err.value) for word in ("refused", "closed the connection", "TLS")), str(err.value)


def test_the_right_password_connects_and_the_log_shows_it_redacted(private_broker, caplog) -> None:
    caplog.set_level(logging.INFO)
    svc = _service(f"mqtt://rnnzoo:{SECRET}@127.0.0.1:{private_broker.port}")
    import threading

    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    assert svc.wait_connected(10)
    svc.stop()
    thread.join(10)
    lines = [r.getMessage() for r in caplog.records]
    assert any("rnnzoo:***@127.0.0.1" in line for line in lines) and not any(SECRET in line for line in lines)
    assert (
        redact_url(f"mqtts://u:{SECRET}@h:1") == "mqtts://u:***@h:1" and redact_url("mqtt://h") == "mqtt://h"
    )


def test_cli_serve_with_a_wrong_password_exits_2_in_one_line(private_broker, tmp_path) -> None:
    model = tmp_path / "tiny.keras"
    tiny_model().save(model)
    url = f"mqtt://rnnzoo:wrong-{SECRET}@127.0.0.1:{private_broker.port}"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnzoo.cli",
            "serve",
            "--model",
            str(model),
            "--topic",
            "s/+/x",
            "--broker",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("rnnzoo serve: error:")]
    assert run.returncode == 2 and len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "refused" in errors[0] and SECRET not in run.stderr + run.stdout
