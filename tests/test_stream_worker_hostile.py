# ruff: noqa: F811 - the fixtures nats_server and tiny_file are imported from test_jetstream
"""`rnnzoo worker` tried as an attacker would: undecodable subjects, NUL-terminated device ids, poison floods,
refused and unreachable servers, tls:// to a plain server, SIGTERM before a connection, bad flags. A real
nats-server each time; every failure one line and exit status 2, every partition still served."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import offline
from test_jetstream import N_FEATURES, PARTITIONS, ROOT, Fleet, Workers, nats_server, tiny_file  # noqa: F401

from streaming.jetstream import Layout, LocalNatsServer
from streaming.ports import free_port


def _worker(url: str, tiny, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run(
        [sys.executable, "-m", "streaming", "worker", "--nats", url, "--model", tiny[0], "--group", "tiny"]
        + ["--partitions", str(PARTITIONS), *extra],
        env=tiny[1],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "flags",
    [
        ["--nats", "nats://127.0.0.1:99999"],
        ["--lease-ttl", "inf"],
        ["--lease-ttl", "1e-9"],
        ["--max-age", "inf"],
        ["--checkpoint-interval", "nan"],
        ["--nats", "nats://user:hunter2@127.0.0.1:0"],
    ],
)
def test_bad_flags_are_one_line_and_exit_2(flags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streaming", "worker", "--model", "m", *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("rnnzoo worker: error:"), done.stderr
    assert "hunter2" not in done.stderr


def test_a_closed_port_ends_start_up_in_one_line(tiny_file) -> None:
    began = time.monotonic()
    done = _worker(f"nats://127.0.0.1:{free_port()}", tiny_file, "--connect-timeout", "1.5")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rnnzoo worker: error: NATS server") and "unreachable" in last, done.stderr
    assert "Traceback" not in done.stderr and time.monotonic() - began < 30
    # Jittered back-off: a handful of attempts in 1.5 s, one log line for the kind, not one per attempt.
    assert done.stderr.count("connection refused") <= 2, done.stderr


def test_a_wrong_token_is_refused_three_times_then_exit_2_and_the_token_is_never_logged(
    tmp_path, tiny_file, monkeypatch
) -> None:
    server = LocalNatsServer(str(tmp_path / "auth"), Layout(PARTITIONS, group="tiny"), mqtt=False)
    with open(server.config_path, "a") as f:
        f.write('authorization { token: "right-token" }\n')
    server.start()
    try:
        env = dict(tiny_file[1], NATS_TOKEN="wrong-token-123")
        done = subprocess.run(
            [sys.executable, "-m", "streaming", "worker", "--nats", server.url, "--model", tiny_file[0]]
            + ["--group", "tiny", "--token-env", "NATS_TOKEN"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "credentials refused (3 attempts)" in last, done.stderr
    assert "wrong-token-123" not in done.stderr and "right-token" not in done.stderr
    assert "Traceback" not in done.stderr


def test_tls_url_to_a_plain_server_is_refused_not_spoken_in_plain_text(nats_server, tiny_file) -> None:
    done = _worker(nats_server.url.replace("nats://", "tls://"), tiny_file)
    assert done.returncode == 2, done.stderr
    assert "plain-text server for a tls:// URL" in done.stderr.strip().splitlines()[-1], done.stderr


def test_sigterm_while_the_server_is_unreachable_stops_at_once(tiny_file) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming", "worker", "--nats", f"nats://127.0.0.1:{free_port()}"]
        + ["--model", tiny_file[0], "--connect-timeout", "60"],
        env=tiny_file[1],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while "connection refused" not in (line := proc.stderr.readline()):  # trying to connect now
        assert line and time.monotonic() < deadline, line
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - began < 5


def _raw_publish(port: int, subject: bytes, payload: bytes) -> None:
    """PUB with a subject nats-py cannot even build (invalid UTF-8), over a plain socket."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false}\r\nPUB ' + subject + b" %d\r\n" % len(payload) + payload)
        s.sendall(b"\r\nPING\r\n")
        deadline = time.monotonic() + 5
        got = b""
        while b"PONG" not in got and time.monotonic() < deadline:
            got += s.recv(4096)


def test_an_undecodable_subject_is_refused_and_acknowledged_and_the_partition_goes_on(
    nats_server, tiny_file, tmp_path
) -> None:
    """One message whose subject is not UTF-8 used to end the client's read loop: every worker deaf, for
    ever (the message stays in the stream). Now it is answered as a bad device id, acknowledged, and the
    readings around it — and after a restart of the worker — are answered."""
    model = tiny_file[2]
    workers = Workers(nats_server.url, tiny_file[0], tiny_file[1], tmp_path)

    async def scenario() -> None:
        fleet = Fleet(nats_server.url, devices=6, per_device=10, seed=4)
        await fleet.connect()
        workers.start("a")
        await fleet.wait_stream()
        await fleet.publish(30)
        for bad in (b"sensors.\xff\xfe.imu", b"sensors.ok\xc3.imu", b"sensors.\xed\xa0\x80.imu"):
            _raw_publish(nats_server.port, bad, b"[1, 2, 3]")
        await fleet.publish(15)
        await fleet.wait_all(20)
        workers.stop_all()  # checkpoint, acknowledge, release
        workers.start("b")  # the next owner is not poisoned either
        await fleet.publish(15)
        await fleet.finish(model, workers.logs)
        assert sorted({e["reason"] for e in fleet.errors}) == ["bad device id"], fleet.errors
        assert len({(e["topic"], e["seq"]) for e in fleet.errors}) == 3, fleet.errors

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()


def test_nul_terminated_device_ids_round_trip_through_checkpoints(nats_server, tiny_file, tmp_path) -> None:
    """`n`, `n\\0` and `n\\0\\0` are three devices; a checkpoint used to strip the NULs (a device restarted at
    step 0, and twins made every load fail). After a restart each goes on at its own step."""
    model = tiny_file[2]
    workers = Workers(nats_server.url, tiny_file[0], tiny_file[1], tmp_path)
    ids = ["n", "n\x00", "n\x00\x00"]
    data = np.random.default_rng(8).normal(size=(3, 8, N_FEATURES)).astype(np.float32)
    got: dict[str, list[dict]] = {d: [] for d in ids}

    async def scenario() -> None:
        import nats

        nc = await nats.connect(nats_server.url)

        async def on(msg) -> None:  # noqa: ANN001
            got[msg.subject.split(".")[1]].append(json.loads(msg.data))

        await nc.subscribe("predictions.>", cb=on)
        js = nc.jetstream()
        workers.start("a")
        fleet = Fleet(nats_server.url, 1, 1)
        fleet.nc = nc
        await fleet.wait_stream()
        for t in range(8):
            if t == 4:
                deadline = time.monotonic() + 20
                while sum(len(v) for v in got.values()) < 12 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                workers.stop_all()
                workers.start("b")
            for k, device in enumerate(ids):
                await js.publish(f"sensors.{device}.imu", json.dumps(data[k, t].tolist()).encode())
        deadline = time.monotonic() + 20
        while sum(len({p["seq"] for p in v}) for v in got.values()) < 24 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await nc.close()

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()
    expected = offline(model, data)
    for k, device in enumerate(ids):
        rows = list({p["seq"]: p for p in got[device]}.values())
        rows.sort(key=lambda p: p["seq"])
        assert [p["step"] for p in rows] == list(range(8)), (device, rows, workers.logs())
        np.testing.assert_allclose([p["outputs"] for p in rows], expected[k], atol=1e-5)


def test_a_poison_flood_is_answered_but_logged_within_the_budget(nats_server, tiny_file, tmp_path) -> None:
    model = tiny_file[2]
    workers = Workers(nats_server.url, tiny_file[0], tiny_file[1], tmp_path)

    async def scenario() -> None:
        fleet = Fleet(nats_server.url, devices=4, per_device=5, seed=2)
        await fleet.connect()
        workers.start("a")
        await fleet.wait_stream()
        js = fleet.nc.jetstream()
        for i in range(500):
            await js.publish(f"sensors.p{i % 7}.imu", b"{not json")
        await fleet.publish(20)
        await fleet.finish(model, workers.logs)
        deadline = time.monotonic() + 10
        while len(fleet.errors) < 500 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(fleet.errors) == 500

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()
    log = (tmp_path / "a.log").read_text()
    assert log.count("refused a message") <= 12, log.count("refused a message")
