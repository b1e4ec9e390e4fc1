"""`rnnzoo worker --ui`: the JetStream worker serves the same live page, fed by its hook and its counters."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from test_jetstream import PARTITIONS, Fleet, nats_server, tiny_file  # noqa: F401 - fixtures
from test_live import read_events, rows_seen, wait_log


@pytest.mark.slow
def test_rnnzoo_worker_ui_lists_the_devices_it_steps(nats_server, tiny_file, tmp_path) -> None:  # noqa: F811
    path, env, _ = tiny_file
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streaming", "worker", "--nats", nats_server.url, "--model", path]
            + ["--partitions", str(PARTITIONS), "--group", "tiny", "--ui", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_log(log, r"live page on (http://127\.0\.0\.1:\d+/)").group(1)
        fleet = Fleet(nats_server.url, devices=3, per_device=4)

        async def publish() -> None:
            await fleet.connect()
            await fleet.wait_stream()
            await fleet.publish(12)
            await fleet.nc.close()

        asyncio.run(publish())

        def done(events) -> bool:
            rows = rows_seen(events)
            fleets = [e for name, e in events if name == "fleet"]
            return (
                len(rows) == 3
                and all(r[2] == 3 for r in rows.values())
                and bool(fleets)
                and fleets[-1]["readings"] == 12
            )

        events = read_events(url + "events", done, 30)
        fleet_figures = [e for name, e in events if name == "fleet"][-1]
        assert fleet_figures["transport"] == "jetstream" and fleet_figures["devices"] == 3
        assert set(rows_seen(events)) == set(fleet.devices)
    finally:
        proc.terminate()
        proc.wait(20)
