"""A killed service restarts from its last snapshot; SIGTERM writes a final snapshot and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import offline, publisher, tiny_model

from streaming.state import load_snapshot

TOLERANCE = 1e-5
ROOT = Path(__file__).resolve().parents[1]


def start_serve(config: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", "streaming", "serve", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def probe_until_answered(pub, col, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while col.count(f"predictions/{name}/") == 0:
        assert time.monotonic() < deadline, f"service never answered {name}"
        pub.publish(f"sensors/{name}/imu", json.dumps({"values": [0, 0, 0]}), qos=1)
        time.sleep(0.25)


def snapshot_steps(path: Path) -> dict[str, int]:
    try:
        ((_, arrays),) = load_snapshot(path).values()
    except (ValueError, FileNotFoundError):
        return {}
    return dict(zip(arrays["devices"].tolist(), arrays["steps"].tolist(), strict=True))


def test_service_killed_and_restarted_continues_from_snapshot(mosquitto, collector_factory, tmp_path) -> None:
    model = tiny_model(seed=5)
    model.save(tmp_path / "tiny.keras")
    snap = tmp_path / "state" / "snapshot.npz"
    config = tmp_path / "serve.toml"
    config.write_text(f"""
[broker]
url = "{mosquitto.url}"
qos = 1
client_id = "restart-test"

[service]
snapshot_path = "{snap}"
snapshot_interval_s = 0.3
status_interval_s = 0.5

[[bindings]]
topic = "sensors/+/imu"
model = "{tmp_path / "tiny.keras"}"
""")
    log = tmp_path / "serve.log"
    rng = np.random.default_rng(6)
    devices = ["p", "q", "r"]
    seqs = rng.normal(size=(3, 24, 3)).astype("float32")
    expected = offline(model, seqs)
    col = collector_factory(mosquitto.port, ["predictions/#", "rnnzoo/status"])
    pub = publisher(mosquitto.port)

    def send(ts: range) -> None:
        for t in ts:
            for d, device in enumerate(devices):
                pub.publish(f"sensors/{device}/imu", json.dumps({"values": seqs[d, t].tolist()}), qos=1)

    proc = start_serve(config, log)
    try:
        probe_until_answered(pub, col, "probe1")
        send(range(12))
        assert col.wait_for(lambda: col.count("predictions/") - col.count("predictions/probe") >= 36)
        # Wait until a periodic snapshot holds all 12 steps of every device, then crash the service.
        deadline = time.monotonic() + 10
        while not all(snapshot_steps(snap).get(d) == 12 for d in devices):
            assert time.monotonic() < deadline, snapshot_steps(snap)
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start_serve(config, log)
        probe_until_answered(pub, col, "probe2")
        send(range(12, 24))
        assert col.wait_for(lambda: col.count("predictions/") - col.count("predictions/probe") >= 72, 30)
        for d, device in enumerate(devices):
            msgs = [m for _, m in col.of(f"predictions/{device}/")]
            assert [m["step"] for m in msgs] == list(range(24)), "steps continue across the restart"
            got = np.array([m["outputs"] for m in msgs])
            assert np.max(np.abs(got - expected[d])) <= TOLERANCE

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()[-2000:]
        assert all(snapshot_steps(snap).get(d) == 24 for d in devices), "final snapshot on SIGTERM"
        assert col.wait_for(lambda: col.of("rnnzoo/status")[-1][1]["state"] == "offline", 5)
        assert col.of("rnnzoo/status")[-1][1]["reason"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.loop_stop()


def _cli_cases(tmp_path, heavy: bool) -> list[list[str]]:
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"not a zip file")
    if not heavy:  # refused before any model is read
        return [
            ["serve", "--config", str(tmp_path / "missing.toml")],
            ["serve", "--topic", "sensors/#", "--model", str(bad)],
        ]
    tiny_model().save(tmp_path / "ok.keras")
    port = 1  # nothing listens on port 1
    ok = ["serve", "--model", str(tmp_path / "ok.keras"), "--topic", "sensors/+/imu"]
    return [  # each starts the TensorFlow child that reads the .keras file (~8 s apiece on 2 cores)
        ["serve", "--model", str(bad), "--topic", "sensors/+/imu"],
        [*ok, "--broker", f"mqtt://127.0.0.1:{port}", "--connect-timeout", "0.5"],
    ]


@pytest.mark.parametrize("heavy", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_cli_errors_are_one_line(tmp_path, heavy) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    for args in _cli_cases(tmp_path, heavy):
        out = subprocess.run(
            [sys.executable, "-m", "streaming", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [line for line in out.stderr.splitlines() if line.startswith("rnnzoo")]
        assert out.returncode != 0 and len(lines) == 1, (args, out.stderr[-1500:])
        assert "Traceback" not in out.stderr


def test_rnnzoo_serve_of_a_step_model_never_loads_tensorflow(mosquitto, collector_factory, tmp_path) -> None:
    """The command users run: its serving process holds numpy weights only (the child that reads the .keras
    file exits), so RSS stays small and a restart does not carry TensorFlow's ~600 MB."""
    tiny_model(seed=3).save(tmp_path / "tiny.keras")
    col = collector_factory(mosquitto.port, ["rnnzoo/status", "predictions/#"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnzoo.cli", "serve", "--model", str(tmp_path / "tiny.keras"), "--topic",
         "sensors/+/imu", "--broker", mosquitto.url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pub = publisher(mosquitto.port)
    try:
        probe_until_answered(pub, col, "probe")
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "tensorflow" not in maps and "jaxlib" not in maps  # no native library of either backend
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_mb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024
        assert rss_mb < 150, rss_mb
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.loop_stop()


@pytest.mark.slow  # 14 s: three export children
def test_a_restart_reuses_the_exported_step_model_without_starting_tensorflow(tmp_path, monkeypatch) -> None:
    import streaming.models as models

    monkeypatch.setenv("RNNZOO_CACHE", str(tmp_path / "cache"))
    tiny_model(seed=4).save(tmp_path / "tiny.keras")
    children = []
    real_export = models._export_in_child
    monkeypatch.setattr(models, "_export_in_child", lambda *a: children.append(a) or real_export(*a))
    first = models.serve_model(str(tmp_path / "tiny.keras"), isolate=True)
    second = models.serve_model(str(tmp_path / "tiny.keras"), isolate=True)
    assert len(children) == 1 and second.engine.fingerprint == first.engine.fingerprint
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    assert np.array_equal(second.engine.run(x), first.engine.run(x))
    # A damaged cache file is noticed by its sha256 and rebuilt.
    (npz,) = (tmp_path / "cache" / "step").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:-10] + b"0" * 10)
    models.serve_model(str(tmp_path / "tiny.keras"), isolate=True)
    assert len(children) == 2
    # A changed model file is a new key, so it is exported afresh, never served from the old entry.
    key = models.export_cache_key(str(tmp_path / "tiny.keras"), "auto", "float64")
    tiny_model(seed=5).save(tmp_path / "tiny.keras")
    assert models.export_cache_key(str(tmp_path / "tiny.keras"), "auto", "float64") != key


def test_qos1_readings_sent_while_the_service_is_down_arrive_after_a_restart(
    mosquitto, collector_factory, tmp_path, monkeypatch
) -> None:
    """With a snapshot path and QoS 1 the service reconnects under the same client id and a persistent
    session, so the broker hands over what devices published while it was stopped: no step number is
    skipped, and every output equals the offline model on the whole sequence."""
    from conftest import start_service, stop_service

    model = tiny_model()
    seq = np.random.default_rng(7).normal(size=(1, 20, 3)).astype("float32")
    expected = offline(model, seq)[0]
    settings = {"broker": {"qos": 1}, "snapshot_path": str(tmp_path / "state.npz")}
    col = collector_factory(mosquitto.port, ["predictions/#"])
    pub = publisher(mosquitto.port)

    def send(ts: range) -> None:
        for t in ts:
            pub.publish("sensors/d1/imu", json.dumps({"values": seq[0, t].tolist()}), qos=1).wait_for_publish(
                5
            )

    import streaming.mqttconn

    monkeypatch.setattr(streaming.mqttconn.os, "getpid", lambda: 1111)  # the first process…
    svc, thread = start_service(mosquitto.url, model, **settings)
    send(range(10))
    assert col.wait_for(lambda: col.count("predictions/d1/") >= 10)
    first_id = svc.client_id()
    stop_service(svc, thread)
    send(range(10, 20))  # nobody is subscribed under this id now: the broker queues them for the session
    monkeypatch.setattr(streaming.mqttconn.os, "getpid", lambda: 2222)  # …and the restarted one
    svc, thread = start_service(mosquitto.url, model, **settings)
    assert svc.client_id() == first_id
    assert col.wait_for(lambda: col.count("predictions/d1/") >= 20), col.count("predictions/d1/")
    msgs = sorted((m for _, m in col.of("predictions/d1/")), key=lambda m: m["step"])
    assert [m["step"] for m in msgs] == list(range(20))
    assert np.abs(np.array([m["outputs"] for m in msgs]) - expected).max() <= 1e-5
    stop_service(svc, thread)
    pub.loop_stop()
