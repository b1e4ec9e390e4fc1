"""A worker partition holds 100,000 devices of the activity model (slow suite): every device's first reading is
answered, the partition checkpoints (a changelog: no max-payload ceiling) and a new worker resumes all 100,000
states from it — the next reading of a sample of devices is their step 1, equal to the offline model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streaming.jetstream import Layout, LocalNatsServer, find_nats_server

ROOT = Path(__file__).resolve().parent.parent
MODEL = "activity-gru-causal"
DEVICES = 100_000

try:
    find_nats_server()
except FileNotFoundError:
    pytest.skip("no nats-server binary", allow_module_level=True)


def worker(url: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streaming", "worker", "--nats", url, "--model", MODEL, "--partitions", "1",
           "--group", "scale", "--worker-id", "w", "--max-devices", str(DEVICES), "--checkpoint-interval", "2",
           "--log-level", "info"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(cmd, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


async def drive(url: str, tmp: Path, x: np.ndarray, log: Path) -> dict:
    import nats

    from streaming.checkpoint import read_partition

    nc = await nats.connect(url)
    seen: dict[str, list[dict]] = {}

    async def on_prediction(msg) -> None:  # noqa: ANN001
        seen.setdefault(msg.subject.split(".")[1], []).append(json.loads(msg.data))

    await nc.subscribe("predictions.>", cb=on_prediction)
    proc = worker(url, log)
    js = nc.jetstream()
    deadline = time.monotonic() + 180
    while True:
        try:
            await js.stream_info("RNNZOO_READINGS_P0")
            break
        except Exception:  # noqa: BLE001 - the worker has not made it yet
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.2)
    first = [json.dumps(row.tolist()).encode() for row in x[:, 0]]
    for i in range(DEVICES):
        await nc.publish(f"sensors.d{i}.imu", first[i])
        if i % 2000 == 0:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + 600
    while len(seen) < DEVICES:
        assert time.monotonic() < deadline and proc.poll() is None, (len(seen), log.read_text()[-3000:])
        await asyncio.sleep(0.5)
    proc.terminate()  # SIGTERM: checkpoint, release, exit 0
    assert proc.wait(120) == 0, log.read_text()[-3000:]
    table, _ = await read_partition(js, Layout(1, group="scale"), 0)
    held = len(table)
    sample = list(range(0, DEVICES, DEVICES // 20))
    proc = worker(url, log)
    for i in sample:
        await js.publish(f"sensors.d{i}.imu", json.dumps(x[i, 1].tolist()).encode())
    deadline = time.monotonic() + 300
    while any(len(seen[f"d{i}"]) < 2 for i in sample):
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
        await asyncio.sleep(0.2)
    proc.terminate()
    proc.wait(120)
    await nc.close()
    return {"held": held, "seen": seen, "sample": sample}


@pytest.mark.slow
def test_a_partition_holds_100000_devices_and_resumes_them_all(tmp_path: Path) -> None:
    import zoo

    server = LocalNatsServer(str(tmp_path / "nats"), Layout(1, group="scale"), mqtt=False)
    server.start()
    x = np.random.default_rng(0).normal(size=(DEVICES, 2, 6)).round(3)
    try:
        result = asyncio.run(drive(server.url, tmp_path, x, tmp_path / "worker.log"))
    finally:
        server.stop()
    assert result["held"] == DEVICES
    model = zoo.load(MODEL)
    sample = result["sample"]
    expected = np.asarray(model(x[sample].astype(np.float32), training=False))
    for k, i in enumerate(sample):
        got = sorted(result["seen"][f"d{i}"], key=lambda p: p["seq"])
        assert [p["step"] for p in got] == [0, 1], got
        np.testing.assert_allclose([p["outputs"] for p in got], expected[k], atol=1e-5)
