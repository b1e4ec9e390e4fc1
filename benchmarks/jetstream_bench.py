"""JetStream mode benchmark: readings/s with 1 and 2 workers beside a bare JetStream relay, and recovery after SIGKILL.

One nats-server (JetStream, the partition mapping), started here on free ports. Throughput rows drain a backlog:
N readings from D devices are stored in the stream first, then the system under test (SUT) starts and the sink
counts its predictions; readings/s = N / (last prediction - first prediction). The backlog is stored once a
repeat and every SUT of the repeat drains it from the start with fresh consumers, leases and checkpoints, so the
rows a ratio compares run seconds apart. SUTs, same run, same server:

    relay       one process, no model: per partition fetch, JSON decode (the worker's own decoder), publish a
                prediction made by the worker's own encoder (of model-like probabilities, so as long as the
                worker's), flush and AckAll every second — read, publish and acknowledged exactly as the worker
                does, minus payload checks, model, state and checkpoints: the ceiling of consume → publish →
                ack in Python
    worker x1   `rnnzoo worker` (one process owning all partitions): parse, step, publish, checkpoint, ack
    worker x2   `rnnzoo worker --workers 2`: two processes, P/2 partitions each

CPU is the SUT processes' user+system seconds over the drain; RSS their peak resident set at the end.
The MQTT mode's figure is `benchmarks/stream_bench.py --suts relay,service` run right after, on this machine.

Recovery: two workers under an open-loop load of R readings/s; one is SIGKILLed; the time until every stalled
device gets predictions again (its longest gap between new predictions), and how many predictions were
published twice (replayed from the last checkpoint).

    python benchmarks/jetstream_bench.py --json benchmarks/results/jetstream_bench.json
    python benchmarks/jetstream_bench.py --in-process      # where the worker's time per reading goes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from results_file import cpu_model, write_json  # noqa: E402

from streaming.jetstream import Layout, LocalNatsServer  # noqa: E402

DEFAULT_MODEL = "activity-gru-causal"
PARTITIONS = 8
LEASE_TTL = 3.0


class Sink:
    """Counts predictions (distinct and duplicate) and remembers when each device's new ones arrived."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()
        self.duplicates = 0
        self.first = self.last = 0.0
        self.arrivals: dict[str, list[float]] = defaultdict(list)

    async def on_message(self, msg) -> None:
        now = time.monotonic()
        device = msg.subject.split(".")[1]
        key = (device, json.loads(msg.data)["seq"])
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.first = self.first or now
        self.last = now
        self.arrivals[device].append(now)


async def delete_streams(js, names: list[str]) -> None:
    """Delete each stream (a key-value bucket is the stream KV_<bucket>) that is there."""
    for name in names:
        try:
            await js.delete_stream(name)
        except Exception:  # noqa: BLE001 - not there
            pass


async def reset_stream(nc, layout: Layout) -> None:
    """A fresh stream and fresh buckets: every row starts from the same empty state."""
    js = nc.jetstream()
    streams = [layout.stream_name(p) for p in range(layout.partitions)]
    await delete_streams(js, [*streams, f"KV_{layout.lease_bucket}", layout.changelog_stream])
    from streaming.jetstream import ensure_stream

    await ensure_stream(js, layout)


async def reset_sut_state(nc, layout: Layout) -> int:
    """Every consumer of the partitions, the lease bucket and the checkpoints gone, the stored readings kept:
    the next SUT drains the same backlog from the start, as if nothing had read it. Returns how many are stored."""
    js = nc.jetstream()
    stored = 0
    for p in range(layout.partitions):
        name = layout.stream_name(p)
        for consumer in await js.consumers_info(name):
            await js.delete_consumer(name, consumer.name)
        stored += (await js.stream_info(name)).state.messages
    await delete_streams(js, [f"KV_{layout.lease_bucket}", layout.changelog_stream])
    return stored


async def publish_backlog(nc, layout: Layout, data: np.ndarray) -> int:
    """Store every reading (devices interleaved) in the stream; returns how many."""
    devices, steps = data.shape[0], data.shape[1]
    payloads = [[json.dumps(data[d, t].tolist()).encode() for t in range(steps)] for d in range(devices)]
    for t in range(steps):
        for d in range(devices):
            await nc.publish(f"sensors.dev{d}.imu", payloads[d][t])
        if t % 20 == 0:
            await nc.flush()
    await nc.flush()
    js = nc.jetstream()
    total = devices * steps
    deadline = time.monotonic() + 60
    while (
        sum([(await js.stream_info(layout.stream_name(p))).state.messages for p in range(PARTITIONS)]) < total
    ):
        assert time.monotonic() < deadline, "backlog never fully stored"
        await asyncio.sleep(0.1)
    return total


async def wait_ready(nc, layout: Layout, sut: str, timeout: float = 60.0) -> None:
    """Until the SUT consumes every partition: the relay's consumers exist, or the workers' leases are spread
    evenly (8 for one worker, 4 + 4 for two)."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        try:
            if sut == "relay":
                if all([await js.consumers_info(layout.stream_name(p)) for p in range(PARTITIONS)]):
                    return
                continue
            kv = await js.key_value(layout.lease_bucket)
            owners: dict[str, int] = defaultdict(int)
            for key in await kv.keys():
                if key.startswith("partition."):
                    owners[(await kv.get(key)).value.decode()] += 1
            want = [PARTITIONS] if sut == "worker x1" else [PARTITIONS // 2] * 2
            if sorted(owners.values()) == want:
                return
        except Exception:  # noqa: BLE001 - bucket or keys not there yet
            continue
    raise TimeoutError(f"{sut} never became ready")


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_cmd(url: str, model: str, workers: int, worker_id: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "streaming", "worker", "--nats", url, "--model", model]
    cmd += ["--partitions", str(PARTITIONS), "--group", "bench", "--lease-ttl", str(LEASE_TTL)]
    cmd += ["--log-level", "warning", "--workers", str(workers)]
    return cmd + (["--worker-id", worker_id] if worker_id else [])


def processes(proc: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(proc.pid)
    children = parent.children(recursive=True)
    return children or [parent]  # `--workers 2`: the parent only waits


async def throughput(
    url: str,
    layout: Layout,
    sut: str,
    data: np.ndarray,
    model: str,
    env: dict,
    n_outputs: int,
    class_names: list[str] | None = None,
    profile: str | None = None,
    server_pid: int | None = None,
    fresh_backlog: bool = True,
) -> dict:
    """One row: the SUT drains the backlog (stored first, so it drains as fast as it can). `fresh_backlog`
    False: the backlog the previous row drained, read again from the start (`reset_sut_state`)."""
    import nats

    nc = await nats.connect(url)
    if fresh_backlog:
        await reset_stream(nc, layout)
        total = await publish_backlog(nc, layout, data)
    else:
        total = await reset_sut_state(nc, layout)
    sink = Sink()
    await nc.subscribe("predictions.>", cb=sink.on_message)
    await nc.flush()
    if sut == "relay":
        cmd = [sys.executable, __file__, "--role", "relay", "--url", url]
        cmd += ["--n-outputs", str(n_outputs), "--class-names", json.dumps(class_names)]
    else:
        cmd = worker_cmd(url, model, 2 if sut == "worker x2" else 1)
    if profile and sut != "worker x2":  # SIGTERM ends both as a normal exit, so cProfile writes its data
        os.makedirs(profile, exist_ok=True)
        out = os.path.join(profile, sut.replace(" ", "_") + ".prof")
        cmd = [cmd[0], "-m", "cProfile", "-o", out, *cmd[1:]]
    proc = start(cmd, env)
    # Measured from the moment the SUT consumes every partition (workers: leases claimed and balanced), so
    # no row pays its start-up or a rebalance.
    await wait_ready(nc, layout, sut)
    ready_at, ready_n = time.monotonic(), len(sink.seen)
    procs = processes(proc)
    cpu_before = sum(sum(p.cpu_times()[:2]) for p in procs)
    # Beside the SUT: the server's and this process's (the prediction sink's) CPU, and the whole machine's busy
    # cores, so a row shows whether the drain was bound by the CPU (every core busy) or by waiting.
    others = {"server": psutil.Process(server_pid) if server_pid else None, "sink": psutil.Process()}
    others_before = {k: sum(p.cpu_times()[:2]) for k, p in others.items() if p is not None}
    machine_before = psutil.cpu_times()
    deadline = time.monotonic() + 600
    while len(sink.seen) < total and time.monotonic() < deadline and proc.poll() is None:
        await asyncio.sleep(0.05)
    cpu = sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running()) - cpu_before
    others_cpu = {k: sum(others[k].cpu_times()[:2]) - v for k, v in others_before.items()}
    machine_after = psutil.cpu_times()
    idle = (machine_after.idle + machine_after.iowait) - (machine_before.idle + machine_before.iowait)
    busy = sum(machine_after) - sum(machine_before) - idle
    rss = [p.memory_info().rss / 2**20 for p in procs if p.is_running()]
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    await nc.close()
    elapsed = sink.last - ready_at
    measured = len(sink.seen) - ready_n
    return {
        "sut": sut,
        "readings": total,
        "predicted": len(sink.seen),
        "measured_readings": measured,
        "readings_per_s": round(measured / elapsed) if elapsed > 0 and measured > 0 else None,
        "drain_s": round(elapsed, 2),
        "cpu_s": round(cpu, 1),
        "cpu_per_1k_readings_s": round(1000 * cpu / max(1, measured), 3),
        "cpu_share": round(cpu / elapsed, 2) if elapsed > 0 else None,
        **{f"{k}_cpu_share": round(v / elapsed, 2) if elapsed > 0 else None for k, v in others_cpu.items()},
        "machine_busy_cores": round(busy / elapsed, 2) if elapsed > 0 else None,
        "rss_mb_per_process": [round(r) for r in rss],
        "processes": len(procs),
    }


async def recovery(
    url: str,
    layout: Layout,
    model: str,
    env: dict,
    rate: float,
    devices: int,
    n_features: int,
    duration: float = 16.0,
) -> dict:
    import nats

    nc = await nats.connect(url)
    await reset_stream(nc, layout)
    sink = Sink()
    await nc.subscribe("predictions.>", cb=sink.on_message)
    procs = {w: start(worker_cmd(url, model, 1, w), env) for w in ("a", "b")}
    rng = np.random.default_rng(0)
    await asyncio.sleep(3.0)  # both joined and balanced
    published, began = 0, time.monotonic()
    killed_at = None
    kill_after = min(5.0, duration / 3)
    while (now := time.monotonic()) - began < duration:
        due = int((now - began) * rate)
        while published < due:
            values = rng.normal(size=n_features).round(4).tolist()
            await nc.publish(f"sensors.dev{published % devices}.imu", json.dumps(values).encode())
            published += 1
        if killed_at is None and now - began >= kill_after:
            procs["a"].send_signal(signal.SIGKILL)
            procs["a"].wait()
            killed_at = time.monotonic()
        await asyncio.sleep(0.005)
    await nc.flush()
    deadline = time.monotonic() + 30
    while len(sink.seen) < published and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    procs["b"].send_signal(signal.SIGTERM)
    procs["b"].wait(30)
    await nc.close()
    # A device of the killed worker goes quiet at the kill and speaks again once its partition has a new owner.
    gaps = []
    for times in sink.arrivals.values():
        after = [t for t in times if t > killed_at]
        before = [t for t in times if t <= killed_at]
        if after and before:
            gaps.append(after[0] - before[-1])
    stalled = [g for g in gaps if g > 1.0]
    return {
        "rate": rate,
        "devices": devices,
        "lease_ttl_s": LEASE_TTL,
        "published": published,
        "predicted": len(sink.seen),
        "lost": published - len(sink.seen),
        "replayed_predictions": sink.duplicates,
        "stalled_devices": len(stalled),
        "recovery_s": round(max(stalled), 2) if stalled else None,
    }


def role_relay(url: str, n_outputs: int, class_names: list[str] | None = None) -> None:
    """The bare relay: per partition a pull consumer read as the worker reads it (same fetch batch, stream
    position from the ack subject, JSON decode, prediction bytes from the worker's encoder, publish, flush and
    AckAll every checkpoint interval beside the fetching). No payload checks, model, state or checkpoint."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig

    from streaming.payloads import decode_utf8_json
    from streaming.worker import PredictionEncoder, WorkerSettings, stream_position

    layout = Layout(PARTITIONS)
    encoder = PredictionEncoder(n_outputs, class_names)  # the worker's schema: label and probabilities too
    # Outputs like a model's (probabilities with 8 significant decimals), so each prediction is as long as the
    # worker's and costs as much to format, publish and receive; constant ones (0.25) were shorter.
    probabilities = np.random.default_rng(0).dirichlet(np.ones(n_outputs), 4096).astype(np.float32)
    settings = WorkerSettings("", "")

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()

        async def one(p: int) -> None:
            config = ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=-1, ack_wait=30)
            await js.add_consumer(layout.stream_name(p), config, durable_name=f"relay-p{p}")
            sub = await js.pull_subscribe_bind(durable=f"relay-p{p}", stream=layout.stream_name(p))
            subjects: dict[str, str] = {}
            step, last, acked_at = 0, None, time.monotonic()
            acking: asyncio.Task | None = None

            async def flush_and_ack(msg) -> None:  # noqa: ANN001
                await nc.flush()
                await msg.ack()

            while True:
                try:
                    msgs = await sub.fetch(settings.max_batch, timeout=0.2)
                except (TimeoutError, NatsTimeout):
                    msgs = []
                if msgs:
                    seqs = []
                    for m in msgs:
                        decode_utf8_json(m.data)  # the worker's own JSON decoding (parse_many's first pass)
                        seqs.append(stream_position(m.reply)[0])
                    outputs = probabilities[: len(msgs)]
                    bodies = encoder.encode(seqs, list(range(step, step + len(msgs))), outputs)
                    step += len(msgs)
                    for m, body in zip(msgs, bodies, strict=True):
                        subject = subjects.get(m.subject)
                        if subject is None:
                            subject = subjects[m.subject] = f"predictions.{layout.device_of(m.subject)}.relay"
                        await nc.publish(subject, body)
                    last = msgs[-1]
                if last is not None and time.monotonic() - acked_at >= settings.checkpoint_interval_s:
                    # Beside the fetching, as the worker writes its checkpoints: one at a time, in order.
                    if acking is not None:
                        await acking
                    acking = asyncio.create_task(flush_and_ack(last))
                    last, acked_at = None, time.monotonic()

        await asyncio.gather(*(one(p) for p in range(PARTITIONS)))

    # SIGTERM ends it as a normal exit, so a profiler wrapped around it (python -m cProfile) writes its data.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    asyncio.run(main())


def in_process(model: str, batches: int = 30, size: int = 1024, devices: int = 125) -> dict:
    """Microseconds per reading of the work a partition's loop does above the NATS client, in this process on
    fetched-like messages (`size` readings from `devices` devices a batch, best of 9): the worker's answering
    (`streaming.answers.Answers.step`), the same with an engine that computes nothing (so the difference is
    the model step), and the relay's own per-batch work."""
    from streaming.answers import Answers
    from streaming.core import PredictionEncoder
    from streaming.models import serve_model
    from streaming.payloads import decode_utf8_json
    from streaming.worker import WorkerSettings, stream_position
    from zoo.step import one_blas_thread

    one_blas_thread()
    served = serve_model(model, mode="step", isolate=True)
    engine, layout, settings = served.engine, Layout(PARTITIONS), WorkerSettings("", "")
    rng = np.random.default_rng(0)

    class Msg:
        __slots__ = ("subject", "reply", "data")

        def __init__(self, subject: str, reply: str, data: bytes):
            self.subject, self.reply, self.data = subject, reply, data

    seq, data = 0, []
    for _ in range(batches):
        msgs = []
        for i in range(size):
            seq += 1
            stamp = 1_700_000_000_000_000_000 + seq * 1_000_000
            values = json.dumps(rng.normal(size=engine.n_features).round(4).tolist()).encode()
            msgs.append(
                Msg(f"part.0.sensors.dev{i % devices}.imu", f"$JS.ACK.S.C.1.{seq}.{seq}.{stamp}.0", values)
            )
        data.append(msgs)
    n = batches * size
    probabilities = rng.dirichlet(np.ones(engine.n_outputs), size).astype(np.float32)

    class Idle:  # the engine's interface, no arithmetic: what is left is everything but the model step
        n_outputs, n_features, state_size = engine.n_outputs, engine.n_features, engine.state_size
        dtype, fingerprint, mode = engine.dtype, engine.fingerprint, "step"

        def advance(self, x, state, steps):  # noqa: ANN001, ANN202
            return probabilities[: len(x)], state

    def worker(step_engine: object) -> float:
        answers = Answers(settings, served, layout)
        answers.engine = step_engine
        table = settings.policy.table(engine)
        began = time.perf_counter()
        for msgs in data:
            answers.step(table, msgs, [stream_position(m.reply) for m in msgs])
            answers.outbox = []
        return (time.perf_counter() - began) / n * 1e6

    encoder = PredictionEncoder(engine.n_outputs, served.class_names)

    def relay() -> float:
        subjects: dict[str, str] = {}
        began, step = time.perf_counter(), 0
        for msgs in data:
            seqs = []
            for m in msgs:
                decode_utf8_json(m.data)
                seqs.append(stream_position(m.reply)[0])
            encoder.encode(seqs, list(range(step, step + len(msgs))), probabilities[: len(msgs)])
            step += len(msgs)
            for m in msgs:
                if m.subject not in subjects:
                    subjects[m.subject] = f"predictions.{layout.device_of(m.subject)}.relay"
        return (time.perf_counter() - began) / n * 1e6

    rounds: dict[str, list[float]] = defaultdict(list)
    for _ in range(9):  # interleaved, so a change in the machine's load hits the three alike; best of each
        rounds["worker_us"].append(worker(engine))
        rounds["worker_no_model_step_us"].append(worker(Idle()))
        rounds["relay_us"].append(relay())
    best: dict = {k: round(min(v), 2) for k, v in rounds.items()}
    best["model_step_us"] = round(best["worker_us"] - best["worker_no_model_step_us"], 2)
    best["batch"] = {"readings": size, "devices": devices, "batches": batches}
    return best


def mqtt_service(model: str, devices: int, duration: float) -> dict | None:
    """The MQTT mode's relay and service rows from stream_bench.py, run now on this machine."""
    out = Path(tempfile.mkdtemp()) / "stream.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "stream_bench.py"), "--suts", "relay,service"]
    cmd += ["--duration", str(duration), "--devices", str(devices), "--million", "0", "--json", str(out)]
    cmd += ["--model", model]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--readings", type=int, default=20_000, help="backlog per throughput row")
    ap.add_argument("--rate", type=float, default=1000.0, help="readings/s of the recovery load")
    ap.add_argument("--mqtt-duration", type=float, default=10.0, help="0: skip the MQTT mode rows")
    ap.add_argument("--recovery-devices", type=int, help="devices of the recovery load (default: --devices)")
    ap.add_argument(
        "--recovery-s", type=float, default=16.0, help="seconds of the recovery load (kill at 5; 0: skip it)"
    )
    ap.add_argument("--suts", default="relay,worker x1,worker x2", help="throughput rows, comma-separated")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the rows this many times, interleaved (ratios: the median)",
    )
    ap.add_argument("--profile", help="write a cProfile of each row's SUT process here (<dir>/<sut>.prof)")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="only time, in this process, the worker's and the relay's work per reading above the NATS client",
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--n-outputs", type=int, default=6, help=argparse.SUPPRESS)
    ap.add_argument("--class-names", default="null", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "relay":
        role_relay(args.url, args.n_outputs, json.loads(args.class_names))
        return 0
    if args.in_process:
        print(json.dumps(in_process(args.model)))
        return 0

    from streaming.models import serve_model

    served = serve_model(args.model, mode="step", isolate=True)  # fills the step cache the workers read
    n_features = served.engine.n_features
    steps = max(1, args.readings // args.devices)
    data = np.random.default_rng(1).normal(size=(args.devices, steps, n_features)).round(4)
    layout = Layout(PARTITIONS, group="bench")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = LocalNatsServer(tempfile.mkdtemp(prefix="rnnzoo-bench-"), layout, mqtt=False)
    server.start()
    rows = []
    try:
        for repeat in range(
            args.repeats
        ):  # interleaved, so a change in the machine's load hits every SUT alike
            # One backlog a repeat, drained by every SUT in turn from its own fresh consumers and state: the rows
            # compared are seconds apart, not a backlog's publishing apart.
            for k, sut in enumerate(args.suts.split(",")):
                row = asyncio.run(
                    throughput(
                        server.url,
                        layout,
                        sut,
                        data,
                        args.model,
                        env,
                        served.engine.n_outputs,
                        served.class_names,
                        args.profile,
                        server.proc.pid if server.proc else None,
                        fresh_backlog=k == 0,
                    )
                )
                row["repeat"] = repeat
                print(json.dumps(row), flush=True)
                rows.append(row)
        rec = None
        if args.recovery_s > 0:
            rec = asyncio.run(
                recovery(
                    server.url,
                    layout,
                    args.model,
                    env,
                    args.rate,
                    args.recovery_devices or args.devices,
                    n_features,
                    args.recovery_s,
                )
            )
            print(json.dumps(rec), flush=True)
    finally:
        server.stop()
    mqtt = mqtt_service(args.model, args.devices, args.mqtt_duration) if args.mqtt_duration else None
    ratios: dict[str, list[float]] = defaultdict(list)  # each SUT against the relay of its own repeat
    for repeat in range(args.repeats):
        same = [r for r in rows if r["repeat"] == repeat]
        relay = next((r["readings_per_s"] for r in same if r["sut"] == "relay"), None) or 0
        for (
            r
        ) in same:  # a row that measured nothing (its backlog drained before it owned its share) is left out
            if r["sut"] != "relay" and relay and r["readings_per_s"]:
                ratios[r["sut"]].append(round(r["readings_per_s"] / relay, 2))
    result = {
        "model": args.model,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "nats_server": subprocess.run(
            [server.binary, "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "partitions": PARTITIONS,
        "devices": args.devices,
        "throughput": rows,
        "worker_vs_relay": {sut: float(np.median(r)) for sut, r in ratios.items()},
        "worker_vs_relay_each_repeat": dict(ratios),
        "recovery": rec,
        "mqtt_mode": mqtt,
        "command": "python benchmarks/jetstream_bench.py " + " ".join(sys.argv[1:]),
    }
    print_table(result)
    write_json(args.json, result)
    return 0


def print_table(result: dict) -> None:
    print(f"\n{'SUT':<12} {'readings/s':>11} {'CPU s/1k':>9} {'RSS MB':>12}")
    for r in result["throughput"]:
        print(
            f"{r['sut']:<12} {str(r['readings_per_s']):>11} {r['cpu_per_1k_readings_s']:>9} {str(r['rss_mb_per_process']):>12}"
        )
    for sut, ratio in result["worker_vs_relay"].items():
        each = result["worker_vs_relay_each_repeat"][sut]
        print(f"{sut} / relay: {ratio:.2f}" + (f" (median of {each})" if len(each) > 1 else ""))
    rec = result["recovery"]
    if rec is None:
        return
    print(
        f"\nrecovery after SIGKILL: {rec['recovery_s']} s (lease TTL {rec['lease_ttl_s']} s), "
        f"{rec['replayed_predictions']} predictions replayed, {rec['lost']} lost"
    )


if __name__ == "__main__":
    sys.exit(main())
