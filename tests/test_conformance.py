"""One conformance suite over transport × runtime: the MQTT service (`rnnzoo serve`, a real Mosquitto) and the
JetStream worker (`rnnzoo worker`, a real nats-server), each started here as users start it, on free ports, with
the numpy engine, ONNX or LiteRT stepping the model. Every cell must give the same answers:

- exactness: each device's predictions equal the Keras model over its whole sequence (≤ 1e-5), steps 0..n-1;
- hostile payloads and ids: one error each, in the one error schema, and the valid readings around them answered;
- broker/server killed and restarted: the process reconnects and answers again, state intact;
- SIGKILL of the process: a new one answers; JetStream resumes each device's state exactly once;
- connection refused: start-up ends with exit status 2 and one line, no traceback.

The quick suite runs exactness and hostile input on one runtime per transport (a few seconds each); everything
else is in the slow suite (`pytest -m slow tests/test_conformance.py`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import MOSQUITTO, Collector, Mosquitto, offline, publisher, tiny_model

from streaming.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
N_FEATURES = 3
DEVICES = [f"dev{i}" for i in range(4)]
PER_DEVICE = 12


def _has_nats() -> bool:
    from streaming.jetstream import find_nats_server

    try:
        return bool(find_nats_server())
    except FileNotFoundError:
        return False


HAS_MOSQUITTO = bool(shutil.which(MOSQUITTO) or os.path.exists(MOSQUITTO))
HAS_NATS = _has_nats()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[str, dict[str, str], object]:
    """(.keras path, environment whose step cache already holds its export, keras model): a serving process
    starts in about a second instead of importing TensorFlow to export it."""
    from streaming.models import export_cache_key
    from zoo.cards import sha256
    from zoo.step import StepModel

    folder = tmp_path_factory.mktemp("conformance")
    model = tiny_model(N_FEATURES)
    path = str(folder / "tiny.keras")
    model.save(path)
    step_dir = folder / "cache" / "step"
    step_dir.mkdir(parents=True)
    key = export_cache_key(path, "step", "float64")
    StepModel.from_keras(model).save(step_dir / f"{key}.npz")
    meta = {"name": "tiny", "card": None, "mode": "step", "class_names": None, "note": ""}
    meta["npz_sha256"] = sha256(step_dir / f"{key}.npz")
    (step_dir / f"{key}.json").write_text(json.dumps(meta))
    env = dict(os.environ, RNNZOO_CACHE=str(folder / "cache"), PYTHONPATH=str(ROOT))
    return path, env, model


class Mqtt:
    """`rnnzoo serve` on a private Mosquitto; QoS 1 with a snapshot, as a fleet would run it."""

    name = "mqtt"

    def __init__(self, tmp: Path, model: str, env: dict, runtime: str):
        self.tmp, self.model, self.env, self.runtime = tmp, model, env, runtime
        self.broker = Mosquitto(tmp)
        self.broker.start()
        self.collector = Collector(self.broker.port, ["predictions/#", "errors/#"])
        self.pub = publisher(self.broker.port)
        self.proc: subprocess.Popen | None = None

    def command(self, url: str) -> list[str]:
        return [sys.executable, "-m", "streaming", "serve", "--model", self.model, "--mode", "step", "--topic", "sensors/+/imu",
                "--broker", url, "--runtime", self.runtime, "--qos", "1", "--max-delay-ms", "2",
                "--snapshot", str(self.tmp / "snap.npz"), "--snapshot-interval", "0.2",
                "--connect-timeout", "3", "--log-level", "warning"]  # fmt: skip

    def start(self) -> None:
        log = open(self.tmp / "sut.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(self.command(self.broker.url), env=self.env, stdout=log, stderr=log)
        # Until it has subscribed: a probe reading every 0.1 s until one is answered (MQTT keeps nothing for a
        # subscriber that has not subscribed yet).
        before, deadline = len(self.predictions("probe")), time.monotonic() + 60
        while len(self.predictions("probe")) == before:
            assert time.monotonic() < deadline and self.proc.poll() is None, system_log(self)
            self.publish("probe", b"[0, 0, 0]")
            time.sleep(0.1)

    def publish(self, device: str, payload: bytes) -> None:
        self.pub.publish(f"sensors/{device}/imu", payload, qos=1)

    def predictions(self, device: str) -> list[dict]:
        return [m for _, m in self.collector.of(f"predictions/{device}/")]

    def errors(self) -> list[tuple[str, dict]]:
        return [(t.split("/")[1], m) for t, m in self.collector.of("errors/")]

    def kill_broker_and_restart(self) -> None:
        self.broker.restart()

    def close(self) -> None:
        stop(self.proc)
        self.collector.close()
        self.pub.loop_stop()
        self.broker.stop()


class JetStream:
    """`rnnzoo worker` (2 partitions) on a private nats-server with JetStream; readings stored before answered."""

    name = "jetstream"

    def __init__(self, tmp: Path, model: str, env: dict, runtime: str):
        from streaming.jetstream import Layout, LocalNatsServer

        self.tmp, self.model, self.env, self.runtime = tmp, model, env, runtime
        self.server = LocalNatsServer(str(tmp / "nats"), Layout(2, group="conf"), mqtt=False)
        self.server.start()
        self.received: dict[str, list[dict]] = defaultdict(list)
        self.errs: list[tuple[str, dict]] = []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self._call(self._connect())
        self.proc: subprocess.Popen | None = None

    def _call(self, coro, timeout: float = 20):  # noqa: ANN001
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self) -> None:
        import nats

        self.nc = await nats.connect(self.server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)

        async def on_prediction(msg) -> None:  # noqa: ANN001
            self.received[msg.subject.split(".")[1]].append(json.loads(msg.data))

        async def on_error(msg) -> None:  # noqa: ANN001
            self.errs.append((msg.subject.split(".", 1)[1], json.loads(msg.data)))

        await self.nc.subscribe("predictions.>", cb=on_prediction)
        await self.nc.subscribe("errors.>", cb=on_error)
        await self.nc.flush()

    def command(self, url: str) -> list[str]:
        return [sys.executable, "-m", "streaming", "worker", "--nats", url, "--model", self.model,
                "--partitions", "2", "--group", "conf", "--worker-id", "w", "--lease-ttl", "1",
                "--checkpoint-interval", "0.2", "--runtime", self.runtime, "--connect-timeout", "3",
                "--log-level", "warning"]  # fmt: skip

    def start(self) -> None:
        log = open(self.tmp / "sut.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(self.command(self.server.url), env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:  # readings published before the worker made the streams would not be stored
            try:
                self._call(self.nc.jetstream().stream_info("RNNZOO_READINGS_P1"), 5)
                return
            except Exception:  # noqa: BLE001 - not there yet
                assert time.monotonic() < deadline and self.proc.poll() is None, self.log()
                time.sleep(0.1)

    def log(self) -> str:
        return (self.tmp / "sut.log").read_text(errors="replace")[-3000:]

    def publish(self, device: str, payload: bytes) -> None:
        async def put() -> None:
            await self.nc.jetstream().publish(f"sensors.{device}.imu", payload)

        self._call(put())

    def predictions(self, device: str) -> list[dict]:
        by_seq: dict[int, dict] = {}  # at least once: a replayed duplicate is identical and dropped by seq
        for p in list(self.received[device]):
            assert by_seq.setdefault(p["seq"], p) == p, f"a replayed prediction differs: {p}"
        return [by_seq[s] for s in sorted(by_seq)]

    def errors(self) -> list[tuple[str, dict]]:
        return list({(d, m["seq"]): (d, m) for d, m in self.errs}.values())

    def kill_broker_and_restart(self) -> None:
        self.server.kill()
        self.server.start()

    def close(self) -> None:
        stop(self.proc)
        try:
            self._call(self.nc.close(), 5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.server.stop()


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


TRANSPORTS = {"mqtt": (Mqtt, HAS_MOSQUITTO), "jetstream": (JetStream, HAS_NATS)}
QUICK = {"mqtt": "numpy", "jetstream": "onnx"}  # one runtime per transport in the quick suite


def cells(quick_only: bool = False) -> list:
    out = []
    for transport in TRANSPORTS:
        for runtime in ("numpy", "onnx", "litert"):
            quick = QUICK[transport] == runtime
            if quick_only and not quick:
                continue
            marks = [] if quick else [pytest.mark.slow]
            out.append(pytest.param((transport, runtime), marks=marks, id=f"{transport}-{runtime}"))
    return out


@pytest.fixture
def sut(request, tmp_path, tiny):
    transport, runtime = request.param
    cls, available = TRANSPORTS[transport]
    if not available:
        pytest.skip(f"no {transport} broker binary")
    if runtime == "onnx":
        pytest.importorskip("onnxruntime")
    if runtime == "litert":
        pytest.importorskip("ai_edge_litert")
    system = cls(tmp_path, tiny[0], tiny[1], runtime)
    system.start()
    try:
        yield system
    finally:
        system.close()


class Fleet:
    """DEVICES × PER_DEVICE readings (each with an increasing `t`), sent interleaved; checked against Keras."""

    def __init__(self, model, seed: int = 0):
        self.model = model
        self.data = np.random.default_rng(seed).normal(size=(len(DEVICES), PER_DEVICE, N_FEATURES)).round(4)
        self.sent = 0

    def send(self, system, upto: int) -> None:
        for t in range(self.sent, upto):
            for d, device in enumerate(DEVICES):
                body = {"values": self.data[d, t].tolist(), "t": 1_700_000_000.0 + t}
                system.publish(device, json.dumps(body).encode())
        self.sent = upto

    def wait(self, system, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while any(len(system.predictions(d)) < self.sent for d in DEVICES):
            if time.monotonic() > deadline:
                got = {d: len(system.predictions(d)) for d in DEVICES}
                pytest.fail(
                    f"{system.name}: predictions {got} of {self.sent} each; log:\n{system_log(system)}"
                )
            time.sleep(0.05)

    def check(self, system) -> None:
        """Steps 0..n-1, outputs equal to Keras over each device's whole sequence (≤ 1e-5), one schema."""
        expected = offline(self.model, self.data[:, : self.sent].astype(np.float32))
        for d, device in enumerate(DEVICES):
            got = system.predictions(device)
            assert [p["step"] for p in got] == list(range(self.sent)), (device, [p["step"] for p in got])
            np.testing.assert_allclose([p["outputs"] for p in got], expected[d], atol=1e-5, err_msg=device)
            assert [p["t"] for p in got] == [1_700_000_000.0 + t for t in range(self.sent)]
            assert {"step", "outputs", "t"} <= set(got[0]) and ("seq" in got[0]) == (
                system.name == "jetstream"
            )


def system_log(system) -> str:
    path = system.tmp / "sut.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def hostile() -> list[tuple[str, bytes, str]]:
    """(device, payload, the reason its error must give): what an attacker sends."""
    return [
        ("h1", b"not json", "not JSON"),
        ("h2", b"[1, 2]", "wrong number of values"),
        ("h3", b'{"values": [1e300, -1e300, 0]}', "value out of float32 range"),
        ("h4", b'{"values": [NaN, 0, 0]}', "non-finite value"),
        ("h5", b"[" * 5000 + b"]" * 5000, "not JSON"),
        ("h6", b'{"values": ["1", 2, 3]}', "non-numeric value"),
        ("h7", b'{"values": [1, 2, 3], "t": "yesterday"}', "bad timestamp"),
        ("_reserved", b"[1, 2, 3]", "bad device id"),
        ("x" * 200, b"[1, 2, 3]", "bad device id"),
    ]


@pytest.mark.parametrize("sut", cells(quick_only=True) + [c for c in cells() if c.marks], indirect=True)
def test_outputs_equal_keras_and_hostile_input_costs_only_itself(sut, tiny) -> None:
    fleet = Fleet(tiny[2])
    fleet.send(sut, PER_DEVICE // 2)
    for device, payload, _ in hostile():
        sut.publish(device, payload)
    # A duplicate of a reading already answered (same t): refused, not stepped a second time.
    sut.publish(DEVICES[0], json.dumps({"values": [0, 0, 0], "t": 1_700_000_000.0}).encode())
    fleet.send(sut, PER_DEVICE)
    fleet.wait(sut)
    expected = [reason for _, _, reason in hostile()] + ["stale timestamp"]
    deadline = time.monotonic() + 20
    while len(sut.errors()) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    errors = sut.errors()
    reasons = sorted(m["reason"] for _, m in errors)
    assert reasons == sorted(expected), (reasons, system_log(sut))
    for _, m in errors:  # one error schema; the JetStream worker adds its stream sequence
        assert set(m) == {"reason", "detail", "topic"} | ({"seq"} if sut.name == "jetstream" else set()), m
    fleet.check(sut)
    assert sut.proc.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("sut", cells(), indirect=True)
def test_broker_killed_and_restarted_the_process_answers_again_state_intact(sut, tiny) -> None:
    fleet = Fleet(tiny[2], seed=1)
    fleet.send(sut, PER_DEVICE // 2)
    fleet.wait(sut)
    sut.kill_broker_and_restart()
    time.sleep(1.0)
    probe_deadline = time.monotonic() + 60
    n = 0
    while not sut.predictions("probe"):  # until the process has reconnected and subscribed again
        assert time.monotonic() < probe_deadline, system_log(sut)
        sut.publish("probe", json.dumps({"values": [0, 0, 0], "t": 1e9 + n}).encode())
        n += 1
        time.sleep(0.3)
    fleet.send(sut, PER_DEVICE)
    fleet.wait(sut)
    fleet.check(sut)
    assert sut.proc.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("sut", cells(), indirect=True)
def test_sigkill_of_the_process_a_new_one_answers(sut, tiny) -> None:
    """JetStream: the new worker resumes every device exactly once (outputs equal Keras over the whole sequence).
    MQTT: the new service resumes from its last snapshot — what MQTT mode promises (docs/streaming.md, 'What MQTT
    mode guarantees across a restart'): later readings are answered, steps go on from the snapshot's."""
    fleet = Fleet(tiny[2], seed=2)
    fleet.send(sut, PER_DEVICE // 2)
    fleet.wait(sut)
    time.sleep(0.6)  # a snapshot (MQTT) / checkpoint (JetStream) interval passes
    sut.proc.send_signal(signal.SIGKILL)
    sut.proc.wait(10)
    sut.start()
    fleet.send(sut, PER_DEVICE)
    if sut.name == "jetstream":
        fleet.wait(sut)
        fleet.check(sut)
        return
    deadline = time.monotonic() + 60
    while any(len(sut.predictions(d)) < PER_DEVICE for d in DEVICES) and time.monotonic() < deadline:
        time.sleep(0.05)
    for device in DEVICES:
        steps = [p["step"] for p in sut.predictions(device)]
        assert steps[: PER_DEVICE // 2] == list(range(PER_DEVICE // 2)), steps
        assert steps[-1] == PER_DEVICE - 1, (device, steps)  # resumed from the snapshot, not from zero


@pytest.mark.slow
@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_connection_refused_ends_start_up_with_exit_2_and_one_line(transport, tmp_path, tiny) -> None:
    cls, available = TRANSPORTS[transport]
    if not available:
        pytest.skip(f"no {transport} broker binary")
    port = free_port()  # nobody listens there
    scheme = "mqtt" if transport == "mqtt" else "nats"
    stub = type("Stub", (), {"model": tiny[0], "runtime": "numpy", "tmp": tmp_path})()
    cmd = cls.command(stub, f"{scheme}://127.0.0.1:{port}")
    proc = subprocess.run(cmd, env=tiny[1], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
