"""Checkpoint cost on a real nats-server: one partition of 100,000 devices of a 128-float32 state
(activity-gru-causal), a first (snapshot) checkpoint, then one after 20 devices changed, then recovery.

    .venv/bin/python benchmarks/checkpoint_bench.py --json benchmarks/results/checkpoint_bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nats  # noqa: E402
import numpy as np  # noqa: E402
from results_file import write_json  # noqa: E402

from streaming.checkpoint import CheckpointStore  # noqa: E402
from streaming.jetstream import Layout, LocalNatsServer  # noqa: E402
from streaming.state import StateTable  # noqa: E402

STATE_FLOATS = 128  # activity-gru-causal


async def measure(url: str, devices: int, changed: int) -> dict:
    lay = Layout(1, group="m")
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    st = CheckpointStore(
        js, lay.changelog_stream, lay.changelog_subject, "fp", chunk_bytes=int(nc.max_payload * 0.6)
    )
    await st.ensure(lay.changelog_subjects)
    t = StateTable(STATE_FLOATS, max_devices=devices)
    ids = [f"device-{i:06d}" for i in range(devices)]
    slots = np.array([t.slot(d, 1.0) for d in ids])
    t.commit(slots, np.random.default_rng(0).normal(size=(devices, STATE_FLOATS)).astype(np.float32), 1.0)
    p = await st.load(0, StateTable(STATE_FLOATS, max_devices=devices))
    a = time.perf_counter()
    p = await st.save(0, t, 1, p)
    first = {"bytes": p.last_bytes, "seconds": round(time.perf_counter() - a, 2)}
    print("first full checkpoint bytes", first["bytes"], f"{first['seconds']}s", flush=True)
    step = max(1, devices // changed)
    few = np.array([t.slot(ids[i], 2.0) for i in range(0, devices, step)][:changed])
    t.commit(few, np.ones((len(few), STATE_FLOATS), np.float32), 2.0)
    a = time.perf_counter()
    p = await st.save(0, t, 2, p)
    delta = {"changed": len(few), "bytes": p.last_bytes, "seconds": round(time.perf_counter() - a, 3)}
    print(f"{len(few)} changed of {devices}: bytes", delta["bytes"], flush=True)
    a = time.perf_counter()
    t2 = StateTable(STATE_FLOATS, max_devices=devices)
    q = await st.load(0, t2)
    rec = {"devices": len(t2), "bytes": q.loaded_bytes, "seconds": round(time.perf_counter() - a, 2)}
    print("recovery", rec["devices"], "devices", rec["bytes"], f"bytes in {rec['seconds']}s", flush=True)
    await nc.close()
    return {"devices": devices, "first_checkpoint": first, "changed_checkpoint": delta, "recovery": rec}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000, help="devices held by the partition")
    ap.add_argument("--changed", type=int, default=20, help="devices changed before the second checkpoint")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    server = LocalNatsServer(tempfile.mkdtemp(prefix="rnnzoo-ckpt-"), Layout(1), mqtt=False)
    server.start()
    try:
        result = asyncio.run(measure(server.url, args.devices, args.changed))
    finally:
        server.stop()
    result |= {
        "state_floats_per_device": STATE_FLOATS,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "command": "python benchmarks/checkpoint_bench.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
