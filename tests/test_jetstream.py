"""The JetStream mode (`rnnzoo worker`): partitioned workers against a real nats-server started here, killed
with SIGKILL and restarted, and every device's predictions still equal the offline model over its readings once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import offline, tiny_model

from streaming.jetstream import Layout, LayoutError, LocalNatsServer, find_nats_server, mapping_config
from streaming.worker import CRASH_ENV

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
LEASE_TTL = 1.5
N_FEATURES = 3

try:
    find_nats_server()
except FileNotFoundError:
    pytest.skip("no nats-server binary", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> tuple[str, dict[str, str], object]:
    """(.keras path, environment whose step cache already holds its export, keras model): workers start in
    well under a second instead of importing TensorFlow each."""
    from streaming.models import export_cache_key
    from zoo.cards import sha256
    from zoo.step import StepModel

    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_model(N_FEATURES)
    path = str(folder / "tiny.keras")
    model.save(path)
    cache = folder / "cache"
    step_dir = cache / "step"
    step_dir.mkdir(parents=True)
    key = export_cache_key(path, "step", "float64")
    StepModel.from_keras(model).save(step_dir / f"{key}.npz")
    meta = {"name": "tiny", "card": None, "mode": "step", "class_names": None, "note": ""}
    meta["npz_sha256"] = sha256(step_dir / f"{key}.npz")
    (step_dir / f"{key}.json").write_text(json.dumps(meta))
    env = dict(os.environ, RNNZOO_CACHE=str(cache), PYTHONPATH=str(ROOT))
    return path, env, model


@pytest.fixture
def nats_server(tmp_path):
    server = LocalNatsServer(str(tmp_path / "nats"), Layout(PARTITIONS, group="tiny"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_server_8(tmp_path):
    """A server whose mapping spreads the devices over 8 partitions."""
    server = LocalNatsServer(str(tmp_path / "nats8"), Layout(8, group="tiny"))
    server.start()
    yield server
    server.stop()


class Workers:
    """`rnnzoo worker` processes of one group, started, killed and stopped by the test."""

    def __init__(
        self, url: str, model: str, env: dict[str, str], log_dir: Path, partitions: int = PARTITIONS
    ):
        self.url, self.model, self.env, self.log_dir = url, model, env, log_dir
        self.partitions = partitions
        self.procs: dict[str, subprocess.Popen] = {}
        self.log_from: dict[str, int] = {}  # where the latest start of each worker begins in its log

    def start(self, name: str, crash: str | None = None) -> None:
        """Start worker `name`; `crash` ("<point>:<n>") makes it SIGKILL itself there (the worker's test hook)."""
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.log_from[name] = log.tell()
        env = dict(self.env, **({CRASH_ENV: crash} if crash else {}))
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "streaming", "worker", "--nats", self.url, "--model", self.model]
            + ["--partitions", str(self.partitions), "--group", "tiny", "--worker-id", name]
            + ["--lease-ttl", str(LEASE_TTL), "--checkpoint-interval", "0.2", "--log-level", "debug"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_joined(self, timeout: float = 120.0) -> None:
        """Until every running worker's latest start has joined the group. Starting a worker (importing Keras)
        takes seconds to over a minute on a loaded 2-core box, so the tests' ownership deadlines count from
        here, not from the start."""
        deadline = time.monotonic() + timeout
        for name in list(self.procs):
            path = self.log_dir / f"{name}.log"
            while b"joined group" not in path.read_bytes()[self.log_from[name] :]:
                assert self.procs[name].poll() is None, f"worker {name} ended before joining: {self.logs()}"
                assert time.monotonic() < deadline, f"worker {name} has not joined the group: {self.logs()}"
                await asyncio.sleep(0.1)

    def wait_exit(self, name: str, timeout: float) -> int:
        """Until worker `name` has ended by itself; its exit status (-9: SIGKILL)."""
        code = self.procs[name].wait(timeout)
        del self.procs[name]
        return code

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in self.log_dir.glob("*.log"))


@pytest.fixture
def workers(nats_server, tiny_file, tmp_path):
    group = Workers(nats_server.url, tiny_file[0], tiny_file[1], tmp_path)
    yield group
    group.stop_all()


class Fleet:
    """Publishes interleaved readings for `devices` devices and collects every prediction and error."""

    def __init__(self, url: str, devices: int, per_device: int, seed: int = 1, partitions: int = PARTITIONS):
        rng = np.random.default_rng(seed)
        self.url = url
        self.partitions = partitions
        self.devices = [f"dev{i}" for i in range(devices)]
        self.data = {d: rng.normal(size=(per_device, N_FEATURES)).astype(np.float32) for d in self.devices}
        self.order = [(d, t) for t in range(per_device) for d in self.devices]
        self.sent = 0
        self.predictions: dict[str, list[dict]] = defaultdict(list)
        self.errors: list[dict] = []

    async def connect(self) -> None:
        import nats

        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        await self.nc.subscribe("predictions.>", cb=self._on_prediction)
        await self.nc.subscribe("errors.>", cb=self._on_error)
        await self.nc.flush()

    async def _on_prediction(self, msg) -> None:
        self.predictions[msg.subject.split(".")[1]].append(json.loads(msg.data))

    async def _on_error(self, msg) -> None:
        self.errors.append({"subject": msg.subject, **json.loads(msg.data)})

    async def wait_stream(self, timeout: float = 20.0) -> None:
        """Until a worker has created the readings stream (readings published before it would be lost)."""
        js = self.nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                await js.stream_info(f"RNNZOO_READINGS_P{self.partitions - 1}")
                return
            except Exception:  # noqa: BLE001 - not there yet
                assert time.monotonic() < deadline, "no worker created the stream"
                await asyncio.sleep(0.05)

    async def publish(self, n: int, pause: float = 0.0) -> None:
        """Publish the next `n` readings (JetStream publish: each one stored before the next)."""
        js = self.nc.jetstream()
        for device, t in self.order[self.sent : self.sent + n]:
            await js.publish(f"sensors.{device}.imu", json.dumps(self.data[device][t].tolist()).encode())
            self.sent += 1
            if pause:
                await asyncio.sleep(pause)

    async def owners(self) -> dict[str, int]:
        """worker id → partitions whose lease it holds now."""
        from nats.js.errors import BucketNotFoundError, NoKeysError

        try:
            kv = await self.nc.jetstream().key_value("tiny-leases")
            keys = [k for k in await kv.keys() if k.startswith("partition.")]
        except (BucketNotFoundError, NoKeysError):  # no worker has made the bucket yet, or holds nothing
            return {}
        owners: dict[str, int] = defaultdict(int)
        for key in keys:
            try:
                owners[(await kv.get(key)).value.decode()] += 1
            except Exception:  # noqa: BLE001 - expired between keys() and get()
                pass
        return dict(owners)

    async def wait_owners(self, expected: dict[str, int], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := await self.owners()) != expected:
            assert time.monotonic() < deadline, f"owners {got}, expected {expected}"
            await asyncio.sleep(0.1)

    def distinct(self) -> int:
        return sum(len({p["seq"] for p in preds}) for preds in self.predictions.values())

    async def wait_all(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.distinct() < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def check(self, model) -> dict[str, int]:
        """Every device: one prediction per reading (duplicates identical), steps 0..n-1 in stream order and
        first arriving in that order (also while its partition moves between workers), outputs equal to the
        Keras model run offline over exactly that device's readings."""
        n = len(self.order) // len(self.devices)
        sequences = np.stack([self.data[d] for d in self.devices])
        expected = offline(model, sequences)
        duplicates = 0
        for i, device in enumerate(self.devices):
            by_seq: dict[int, dict] = {}
            for p in self.predictions[device]:
                if p["seq"] in by_seq:
                    assert by_seq[p["seq"]] == p, f"{device}: a replayed prediction differs: {p}"
                    duplicates += 1
                by_seq[p["seq"]] = p
            ordered = [by_seq[s] for s in sorted(by_seq)]
            arrival = list(dict.fromkeys(p["seq"] for p in self.predictions[device]))  # first arrivals
            assert arrival == sorted(arrival), f"{device}: new predictions arrived out of order: {arrival}"
            assert [p["step"] for p in ordered] == list(range(n)), (
                f"{device}: steps {[p['step'] for p in ordered]}"
            )
            got = np.array([p["outputs"] for p in ordered])
            np.testing.assert_allclose(got, expected[i], atol=1e-5, err_msg=device)
        return {"duplicates": duplicates}

    async def close(self) -> None:
        await self.nc.drain()

    async def finish(self, model, logs, timeout: float = 30.0) -> dict[str, int]:  # noqa: ANN001
        """Wait for a prediction of every reading sent, `check` them all, close; `logs()` explains a shortfall."""
        await self.wait_all(timeout)
        assert self.distinct() == len(self.order), (self.distinct(), logs())
        result = self.check(model)
        await self.close()
        return result


def assert_checkpoints_hold_every_reading_once(
    url: str, devices: int, per_device: int, partitions: int = PARTITIONS
) -> None:
    """After the workers stopped: every device's checkpointed state has taken exactly its `per_device` steps."""
    steps = asyncio.run(_checkpointed_steps(url, partitions))
    assert steps == {f"dev{i}": per_device for i in range(devices)}, steps


async def _checkpointed_steps(url: str, partitions: int = PARTITIONS) -> dict[str, int]:
    """device → steps in the partitions' checkpoints (what a new owner would resume from)."""
    import nats

    from streaming.checkpoint import read_partition

    nc = await nats.connect(url)
    layout = Layout(partitions, group="tiny")
    steps: dict[str, int] = {}
    for p in range(partitions):
        table, _ = await read_partition(nc.jetstream(), layout, p)
        rows = table.rows()
        steps.update(zip(rows["ids"], rows["steps"].tolist(), strict=True))
    await nc.close()
    return steps


def test_layout_refuses_bad_subjects_and_prints_the_mapping() -> None:
    with pytest.raises(LayoutError):
        Layout(4, "sensors.>")
    with pytest.raises(LayoutError):
        Layout(4, "sensors.*.*")
    layout = Layout(4)
    assert layout.device_of("part.2.sensors.abc.imu") == "abc"
    assert "partition(4,1)" in mapping_config(layout)


def test_bad_worker_arguments_are_one_line_errors() -> None:
    for argv in (["--nats", "http://x", "--model", "m"], ["--subject", "a.b", "--model", "m"]):
        done = subprocess.run(
            [sys.executable, "-m", "streaming", "worker", *argv], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("rnnzoo worker: error:"), done.stderr


def test_kill_9_a_worker_mid_stream_state_is_exactly_once(nats_server, workers, tiny_file) -> None:
    """Two workers; one is SIGKILLed mid-stream and the other takes its partitions over after the lease
    expires; a hostile payload is answered and never blocks its partition. Then the killed one comes back
    and takes its share again (2 → 1 → 2)."""
    model = tiny_file[2]

    async def scenario() -> dict:
        fleet = Fleet(nats_server.url, devices=8, per_device=30)
        await fleet.connect()
        workers.start("a")
        workers.start("b")
        await fleet.wait_stream()
        await workers.wait_joined()
        await fleet.wait_owners({"a": 2, "b": 2})
        await fleet.publish(40, pause=0.002)
        await fleet.nc.publish("sensors.dev0x.imu", b"{not json")  # poison: answered, acknowledged
        await fleet.nc.publish("sensors._x.imu", b"[1,2,3]")  # reserved id
        await fleet.publish(40, pause=0.002)
        workers.kill("a")  # mid-stream: its last readings may be stepped but not yet checkpointed
        await fleet.publish(40, pause=0.002)
        await fleet.wait_owners({"b": 4}, timeout=LEASE_TTL + 5)  # its leases expired: b took them over
        await fleet.publish(40, pause=0.002)
        workers.start("a")  # rejoins: b releases two partitions (checkpointed) and a claims them
        await workers.wait_joined()
        await fleet.wait_owners({"a": 2, "b": 2}, timeout=LEASE_TTL + 5)
        await fleet.publish(80, pause=0.002)
        result = await fleet.finish(model, workers.logs)
        # A refused reading counts as done like a stepped one: if the kill lands before its checkpoint, the
        # next owner answers it again, identically (at least once, deduplicable by subject and seq).
        answers: dict[tuple[str, int], dict] = {}
        for e in fleet.errors:
            assert answers.setdefault((e["topic"], e["seq"]), e) == e, (answers, e)
        result["errors"] = sorted(e["reason"] for e in answers.values())
        return result

    result = asyncio.run(scenario())
    assert result["errors"] == ["bad device id", "not JSON"], result
    workers.stop_all()  # SIGTERM: checkpoint and release
    assert_checkpoints_hold_every_reading_once(nats_server.url, 8, 30)


def test_nats_server_killed_and_restarted(nats_server, workers, tiny_file) -> None:
    """SIGKILL the server itself mid-stream: the workers reconnect, resume from their checkpoints, and every
    reading stored before the kill or published after the restart is applied once."""
    model = tiny_file[2]

    async def scenario() -> None:
        fleet = Fleet(nats_server.url, devices=6, per_device=20)
        await fleet.connect()
        workers.start("a")
        await fleet.wait_stream()
        await fleet.publish(60)
        await fleet.wait_all(20)
        nats_server.kill()
        await asyncio.sleep(0.5)
        nats_server.start()
        await fleet.publish(60)
        await fleet.finish(model, workers.logs)

    asyncio.run(scenario())


def test_mqtt_devices_through_the_nats_mqtt_listener(nats_server, workers, tiny_file) -> None:
    """Devices that speak MQTT publish `sensors/<device>/imu` to the server's MQTT listener and read
    `predictions/<device>/tiny` back over MQTT; the worker sees subjects only."""
    import paho.mqtt.client as mqtt

    model = tiny_file[2]
    workers.start("a")
    got: list[tuple[str, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sink")
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    sub.connect("127.0.0.1", nats_server.mqtt_port)
    sub.subscribe("predictions/+/tiny", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev")
    pub.connect("127.0.0.1", nats_server.mqtt_port)
    pub.loop_start()
    try:
        asyncio.run(_wait_for_stream(nats_server.url))
        data = np.random.default_rng(3).normal(size=(2, 5, N_FEATURES)).astype(np.float32)
        for t in range(5):
            for d in range(2):
                pub.publish(f"sensors/m{d}/imu", json.dumps(data[d, t].tolist()), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.loop_stop()
        sub.loop_stop()
    assert len(got) == 10, (got, workers.logs())
    expected = offline(model, data)
    for d in range(2):
        rows = sorted((p for topic, p in got if topic == f"predictions/m{d}/tiny"), key=lambda p: p["seq"])
        assert [p["step"] for p in rows] == list(range(5))
        np.testing.assert_allclose([p["outputs"] for p in rows], expected[d], atol=1e-5)


async def _wait_for_stream(url: str) -> None:
    import nats

    nc = await nats.connect(url)
    fleet = Fleet(url, 1, 1)
    fleet.nc = nc
    await fleet.wait_stream()
    await nc.close()


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_ten_sigkill_trials_in_a_row(trial, nats_server, workers, tiny_file) -> None:
    """The done-when loop: `pytest -m slow -k ten_sigkill` runs 10 kill/take-over trials, each checking that no
    reading's effect is lost or applied twice. The kill lands at a different moment each trial."""
    model = tiny_file[2]

    async def scenario() -> None:
        fleet = Fleet(nats_server.url, devices=12, per_device=25, seed=trial)
        await fleet.connect()
        workers.start("a")
        workers.start("b")
        await fleet.wait_stream()
        await workers.wait_joined()
        await fleet.wait_owners({"a": 2, "b": 2})
        await fleet.publish(60 + 7 * trial, pause=0.001)
        workers.kill("a" if trial % 2 else "b")
        await fleet.publish(len(fleet.order) - fleet.sent, pause=0.001)
        await fleet.finish(model, workers.logs)

    asyncio.run(scenario())
    workers.stop_all()
    assert_checkpoints_hold_every_reading_once(nats_server.url, 12, 25)


def test_a_worker_with_another_partition_count_refuses_to_start(nats_server, workers, tiny_file) -> None:
    """Streams made for P=4 (by a first worker): a worker started with P=2 would hash devices elsewhere."""
    workers.start("a")
    asyncio.run(_wait_for_stream(nats_server.url))
    done = subprocess.run(
        [sys.executable, "-m", "streaming", "worker", "--nats", nats_server.url, "--model", tiny_file[0]]
        + ["--partitions", "2", "--group", "tiny"],
        env=tiny_file[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rnnzoo worker: error: stream RNNZOO_READINGS_P0 was made with"), last


def test_whole_group_killed_and_restarted(nats_server, workers, tiny_file) -> None:
    """Both workers SIGKILLed mid-stream, then started again: they resume from the checkpoints, replay what
    was not checkpointed, and every device's state still takes each reading exactly once."""
    model = tiny_file[2]

    async def scenario() -> None:
        fleet = Fleet(nats_server.url, devices=8, per_device=20, seed=5)
        await fleet.connect()
        workers.start("a")
        workers.start("b")
        await fleet.wait_stream()
        await workers.wait_joined()
        await fleet.wait_owners({"a": 2, "b": 2})
        await fleet.publish(90, pause=0.001)
        workers.kill("a")
        workers.kill("b")
        await fleet.publish(30)  # stored while no worker runs
        workers.start("a")
        workers.start("b")
        await fleet.publish(40, pause=0.001)
        await fleet.finish(model, workers.logs)

    asyncio.run(scenario())
    workers.stop_all()
    assert_checkpoints_hold_every_reading_once(nats_server.url, 8, 20)


def test_four_workers_eight_partitions_one_killed_mid_stream(nats_server_8, tiny_file, tmp_path) -> None:
    """4 workers share 8 partitions of 200 devices; one is SIGKILLed mid-stream and the other three split its
    two partitions (fair share 3). Every device's state still takes each reading exactly once."""
    model = tiny_file[2]
    group = Workers(nats_server_8.url, tiny_file[0], tiny_file[1], tmp_path, partitions=8)

    async def scenario() -> None:
        fleet = Fleet(nats_server_8.url, devices=200, per_device=12, seed=11, partitions=8)
        await fleet.connect()
        for name in "abcd":
            group.start(name)
        await fleet.wait_stream()
        await group.wait_joined()
        await fleet.wait_owners({name: 2 for name in "abcd"}, timeout=60)  # four starts on a loaded box
        await fleet.publish(800)
        group.kill("c")
        await fleet.publish(800)
        deadline = time.monotonic() + LEASE_TTL + 10
        while (owners := await fleet.owners()).get("c") or sum(owners.values()) != 8:
            assert time.monotonic() < deadline, f"c's partitions never taken over: {owners}"
            await asyncio.sleep(0.1)
        await fleet.publish(len(fleet.order) - fleet.sent)
        await fleet.finish(model, group.logs, timeout=60)

    try:
        asyncio.run(scenario())
        group.stop_all()
        assert_checkpoints_hold_every_reading_once(nats_server_8.url, 200, 12, partitions=8)
    finally:
        group.stop_all()


@pytest.mark.parametrize("point", ["checkpointed", "stepped"])
def test_a_worker_killed_inside_a_checkpoint_cycle(point, nats_server, workers, tiny_file) -> None:
    """The worker's test hook SIGKILLs it at an exact moment: "checkpointed" (the checkpoint is written, the
    stream not yet acknowledged: the successor must resume from that checkpoint, not from the last
    acknowledgement) or "stepped" (predictions handed out and state changed, nothing checkpointed: the successor
    replays). Either way every reading's effect is applied once."""
    model = tiny_file[2]

    async def scenario() -> None:
        fleet = Fleet(nats_server.url, devices=8, per_device=30, seed=7)
        await fleet.connect()
        workers.start("a", crash=f"{point}:3")
        workers.start("b")
        await fleet.wait_stream()
        await workers.wait_joined()
        await fleet.wait_owners({"a": 2, "b": 2})
        await fleet.publish(120, pause=0.003)
        assert workers.wait_exit("a", timeout=20) == -signal.SIGKILL, workers.logs()
        await fleet.wait_owners({"b": 4}, timeout=LEASE_TTL + 5)
        await fleet.publish(len(fleet.order) - fleet.sent, pause=0.001)
        await fleet.finish(model, workers.logs)

    asyncio.run(scenario())
    workers.stop_all()
    assert_checkpoints_hold_every_reading_once(nats_server.url, 8, 30)
