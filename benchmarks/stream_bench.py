"""Streaming benchmark: sustained readings/s, latency, CPU and RSS through a real Mosquitto.

Four processes per run, as in production: a publisher (N devices), Mosquitto, the system under test (SUT)
and a sink that receives the predictions. SUTs, each measured in the same run on the same broker:

    relay          bare paho relay, no model: json.loads, publish a prediction-sized message (the ceiling)
    service        `python -m streaming serve` with one prediction message per reading
    relay-batch    bare relay publishing one message per 100 readings
    service-batch  `python -m streaming serve --output batch` (one message per micro-batch)
    naive          a Keras stateful model called per message, swapping each device's state in and out

Phase 1 (throughput): the publisher keeps at most WINDOW readings in flight (sent - received), so the SUT runs
flat out without an unbounded backlog; readings/s is measured after a warm-up. Phase 2 (latency): open loop at
half that rate; latency is a reading's publish time (`t` in its payload, echoed in the prediction) to the
prediction's arrival. Then a 1,000,000-device state table is built and its RSS measured.

    python benchmarks/stream_bench.py --duration 20 --json runs/stream_bench.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from streaming.ports import free_port, wait_port  # noqa: E402

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
DEFAULT_MODEL = "activity-gru-causal"
WINDOW = 4000  # readings in flight during the throughput phase
READY_TOPIC = "bench/ready"


def start_mosquitto(workdir: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = Path(workdir) / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return proc, port


def mqtt_client():
    import paho.mqtt.client as mqtt

    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)


# -- load generator and sink (separate processes) ----------------------------------------------------------------


def publisher(
    port: int, devices: int, values: np.ndarray, sent, received, control, rate, stop_at, window: int
) -> None:
    """control.value: 0 = closed loop (keep <= window in flight), 1 = open loop at rate.value readings/s."""
    import paho.mqtt.client as mqtt

    client = mqtt_client()
    client.connect("127.0.0.1", port)
    topics = [f"sensors/dev{i:05d}/imu" for i in range(devices)]
    rows = [row.tolist() for row in values]
    n_rows, i, t_start, n_open = len(rows), 0, time.monotonic(), 0
    last_misc = 0.0
    while time.time() < stop_at.value:
        now = time.monotonic()
        if now - last_misc > 1.0:
            client.loop_misc()
            last_misc = now
        if client.want_write():
            client.loop_write()
        if control.value == 0:
            if sent.value - received.value >= window:
                client.loop(0.0005)  # also drains any socket backlog
                continue
        else:
            due = int((now - t_start) * rate.value)
            if n_open >= due:
                time.sleep(min(0.001, (n_open + 1 - due) / max(rate.value, 1)))
                continue
            n_open += 1
        payload = json.dumps({"values": rows[i % n_rows], "t": time.time()})
        rc = client.publish(topics[i % devices], payload).rc
        if rc == mqtt.MQTT_ERR_SUCCESS:
            sent.value += 1
        i += 1
        if control.value == 1 and n_open == 1:
            t_start = now
    client.disconnect()


def sink(port: int, topic: str, batched: bool, received, lat_from, stop_at, out_q) -> None:
    """Count readings answered; keep latencies of readings published after lat_from."""
    client = mqtt_client()
    latencies: list[float] = []

    def on_message(c, u, msg) -> None:
        now = time.time()
        data = json.loads(msg.payload)
        records = data["predictions"] if batched else (data,)
        received.value += len(records)
        start = lat_from.value
        if start:
            for r in records:
                if r["t"] >= start:
                    latencies.append(now - r["t"])

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    while time.time() < stop_at.value + 3:
        time.sleep(0.1)
    client.loop_stop()
    out_q.put(latencies)


# -- reference SUTs (run as `--role relay|naive` subprocesses) ----------------------------------------------------


def prediction_template(n_outputs: int, class_names: list[str] | None) -> dict:
    outputs = [0.12345678] * n_outputs
    msg: dict = {"step": 0, "outputs": outputs}
    if class_names:
        msg["label"] = class_names[0]
        msg["probabilities"] = dict(zip(class_names, outputs, strict=False))
    return msg


def role_relay(port: int, batch: int, n_outputs: int, class_names: list[str] | None) -> None:
    """The bare relay: the MQTT path with no model, using paho's own network loop."""
    client = mqtt_client()
    template = prediction_template(n_outputs, class_names)
    pending: list[dict] = []
    last_flush = [time.monotonic()]

    def flush() -> None:
        client.publish("predictions/_batch/relay", json.dumps({"model": "relay", "predictions": pending}))
        pending.clear()
        last_flush[0] = time.monotonic()

    def on_message(c, u, msg) -> None:
        data = json.loads(msg.payload)
        out = dict(template, t=data.get("t"))
        if batch <= 1:
            c.publish(f"predictions/{msg.topic.split('/')[1]}/relay", json.dumps(out))
            return
        out["device"] = msg.topic.split("/")[1]
        pending.append(out)
        if len(pending) >= batch:
            flush()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: (
        c.subscribe("sensors/+/imu"),
        c.publish(READY_TOPIC, "relay", qos=1, retain=True),
    )
    client.connect("127.0.0.1", port)
    signal.signal(signal.SIGTERM, lambda *a: client.disconnect())
    # loop_forever would never flush a partial batch; loop() in a loop is paho's loop_forever body.
    while True:
        if client.loop(0.01) != 0 and client.socket() is None:
            break
        if pending and time.monotonic() - last_flush[0] > 0.005:
            flush()


def stateful_copy(model):
    """The same network rebuilt with stateful=True and batch size 1: the usual way to serve Keras per reading."""
    import keras

    from zoo.step import layer_chain

    x = inputs = keras.Input(batch_shape=(1, 1, model.inputs[0].shape[-1]))
    for layer in layer_chain(model):
        config = layer.get_config()
        if type(layer).__name__ in ("SimpleRNN", "LSTM", "GRU"):
            config["stateful"] = True
        x = type(layer).from_config(config)(x)
    copy = keras.Model(inputs, x)
    copy.set_weights(model.get_weights())
    return copy


def role_naive(port: int, model_spec: str) -> None:
    """Naive baseline: one Keras stateful model called per message, each device's state swapped in and out."""
    from streaming.models import load_keras
    from zoo.step import StepModel

    model, card, name = load_keras(model_spec)
    StepModel.from_keras(model)  # refuse non-causal models here too
    net = stateful_copy(model)
    recurrent = [layer for layer in net.layers if type(layer).__name__ in ("SimpleRNN", "LSTM", "GRU")]
    names = card.class_names if card else None
    states: dict[str, list[np.ndarray]] = {}
    steps: dict[str, int] = {}
    zero = [[np.zeros(v.shape, "float32") for v in layer.states] for layer in recurrent]
    client = mqtt_client()

    def on_message(c, u, msg) -> None:
        device = msg.topic.split("/")[1]
        data = json.loads(msg.payload)
        saved = states.get(device, zero)
        for layer, values in zip(recurrent, saved, strict=True):
            for var, value in zip(layer.states, values, strict=True):
                var.assign(value)
        y = np.asarray(net(np.asarray(data["values"], "float32")[None, None], training=False))[0, -1]
        states[device] = [[np.asarray(v) for v in layer.states] for layer in recurrent]
        step = steps.get(device, 0)
        steps[device] = step + 1
        out = {"step": step, "outputs": y.tolist(), "t": data.get("t")}
        if names:
            out["label"] = names[int(y.argmax())]
            out["probabilities"] = dict(zip(names, out["outputs"], strict=False))
        c.publish(f"predictions/{device}/naive", json.dumps(out))

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: (
        c.subscribe("sensors/+/imu"),
        c.publish(READY_TOPIC, "naive", qos=1, retain=True),
    )
    client.connect("127.0.0.1", port)
    signal.signal(signal.SIGTERM, lambda *a: client.disconnect())
    client.loop_forever()


# -- orchestration ----------------------------------------------------------------------------------------------


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Block until the SUT announces itself (service: status online; references: bench/ready)."""
    import threading

    got = threading.Event()
    client = mqtt_client()
    client.on_connect = lambda c, u, f, r, p: c.subscribe([("rnnzoo/status", 1), (READY_TOPIC, 1)])

    def on_message(c, u, msg) -> None:
        if msg.topic == READY_TOPIC or json.loads(msg.payload).get("state") == "online":
            got.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not got.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            client.loop_stop()
            raise RuntimeError(f"system under test exited or never became ready (rc={proc.poll()})")
    client.loop_stop()
    client.disconnect()
    time.sleep(1.0)  # SUBACK and first connections settle


def clear_retained(port: int) -> None:
    client = mqtt_client()
    client.connect("127.0.0.1", port)
    for topic in ("rnnzoo/status", READY_TOPIC):
        client.publish(topic, b"", qos=1, retain=True)
    client.loop(0.2)
    client.disconnect()


def measure(
    kind: str,
    port: int,
    model_spec: str,
    values: np.ndarray,
    devices: int,
    duration: float,
    n_outputs: int,
    class_names: list[str] | None,
    serve_args: str = "",
) -> dict:
    import psutil

    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    broker = f"mqtt://127.0.0.1:{port}"
    me = [sys.executable, str(Path(__file__).resolve())]
    batched = kind.endswith("batch")
    if kind.startswith("service"):
        cmd = [
            sys.executable,
            "-m",
            "streaming",
            "serve",
            "--model",
            model_spec,
            "--topic",
            "sensors/+/imu",
            "--broker",
            broker,
            "--max-batch",
            "512",
            "--max-delay-ms",
            "5",
            "--ttl",
            "3600",
            "--output",
            "batch" if batched else "reading",
            "--log-level",
            "warning",
            *shlex.split(serve_args),
        ]
    elif kind.startswith("relay"):
        cmd = me + [
            "--role",
            "relay",
            "--port",
            str(port),
            "--batch",
            "100" if batched else "1",
            "--n-outputs",
            str(n_outputs),
            "--class-names",
            json.dumps(class_names),
        ]
    else:
        cmd = me + ["--role", "naive", "--port", str(port), "--model", model_spec]
    clear_retained(port)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(port, proc)
        ps = psutil.Process(proc.pid)
        ctx = mp.get_context("spawn")
        sent, received = ctx.RawValue("q", 0), ctx.RawValue("q", 0)
        control, rate, lat_from = ctx.RawValue("i", 0), ctx.RawValue("d", 0.0), ctx.RawValue("d", 0.0)
        stop_at = ctx.RawValue("d", time.time() + 3600)
        out_q = ctx.Queue()
        topic = "predictions/_batch/+" if batched else "predictions/+/+"
        sink_p = ctx.Process(target=sink, args=(port, topic, batched, received, lat_from, stop_at, out_q))
        sink_p.start()
        time.sleep(1.0)
        # The naive baseline answers ~200/s: a 4,000-reading window would be a 20 s backlog.
        window = 20 if kind == "naive" else WINDOW
        pub_p = ctx.Process(
            target=publisher, args=(port, devices, values, sent, received, control, rate, stop_at, window)
        )
        pub_p.start()
        # Phase 1: closed loop, flat out. Skip a warm-up, then count.
        warmup = min(3.0, duration / 4)
        time.sleep(warmup)
        t0, r0, c0 = time.monotonic(), received.value, ps.cpu_times()
        rss = ps.memory_info().rss
        while time.monotonic() - t0 < duration:
            time.sleep(0.5)
            rss = max(rss, ps.memory_info().rss)
        t1, r1, c1 = time.monotonic(), received.value, ps.cpu_times()
        sustained = (r1 - r0) / (t1 - t0)
        cpu = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0) * 100
        # Phase 2: open loop at half the sustained rate; latencies of readings sent after a settling second.
        rate.value = sustained / 2
        control.value = 1
        drain_until = time.monotonic() + 15
        while sent.value - received.value > window // 10 and time.monotonic() < drain_until:
            time.sleep(0.1)  # let the closed-loop backlog clear so it does not count as latency
        lat_phase = max(4.0, duration / 2)
        time.sleep(1.0)
        lat_from.value = time.time()
        received_before, lat_t0 = received.value, time.monotonic()
        time.sleep(lat_phase)
        achieved = (received.value - received_before) / (time.monotonic() - lat_t0)
        stop_at.value = time.time()
        pub_p.join(10)
        latencies = sorted(out_q.get(timeout=30))
        sink_p.join(10)
        rss = max(rss, ps.memory_info().rss)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    pct = (
        (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000)
        if latencies
        else (lambda q: float("nan"))
    )
    return {
        "sut": kind,
        "readings_per_s": round(sustained, 1),
        "cpu_percent": round(cpu, 1),
        "rss_mb": round(rss / 2**20, 1),
        "latency_rate": round(achieved, 1),
        "p50_ms": round(pct(0.5), 2),
        "p99_ms": round(pct(0.99), 2),
        "latency_samples": len(latencies),
    }


def million_devices(model_spec: str, n: int) -> dict:
    """RSS of a process holding n device states of the model (plus the ids), each stepped once."""
    import psutil

    from streaming.models import serve_model
    from streaming.state import StateTable

    served = serve_model(model_spec, isolate=True)  # as `serve` does: no TensorFlow in this process
    base = psutil.Process().memory_info().rss
    engine = served.engine
    table = StateTable(engine.state_size, max_devices=n, ttl_s=3600)
    now = time.time()
    t = time.perf_counter()
    batch = 4096
    x = np.zeros((batch, engine.n_features), np.float32)
    for start in range(0, n, batch):
        ids = [f"device-{i:07d}" for i in range(start, min(n, start + batch))]
        slots = np.array([table.slot(d, now) for d in ids])
        y, new = engine.advance(x[: len(ids)], table.state[slots], table.steps[slots])
        table.commit(slots, new, now)
    elapsed = time.perf_counter() - t
    rss = psutil.Process().memory_info().rss
    return {
        "devices": len(table),
        "state_floats_per_device": engine.state_size,
        "rss_mb": round(rss / 2**20, 1),
        "rss_above_model_mb": round((rss - base) / 2**20, 1),
        "seconds_to_add_and_step_all": round(elapsed, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of the throughput phase per SUT")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--suts", default="relay,service,relay-batch,service-batch,naive")
    ap.add_argument("--million", type=int, default=1_000_000, help="devices for the RSS check (0: skip)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--serve-args", default="", help="more flags for the service SUTs, e.g. '--metrics-port 9107'"
    )
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--n-outputs", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--class-names", default="null", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "relay":
        role_relay(args.port, args.batch, args.n_outputs, json.loads(args.class_names))
        return 0
    if args.role == "naive":
        role_naive(args.port, args.model)
        return 0
    if args.role == "million":
        print(json.dumps(million_devices(args.model, args.million)))
        return 0
    if not shutil.which(MOSQUITTO) and not os.path.exists(MOSQUITTO):
        print(f"stream_bench: error: no mosquitto at {MOSQUITTO}", file=sys.stderr)
        return 1

    from streaming.models import serve_model
    from streaming.simulate import load_dataset

    served = serve_model(args.model)
    data = load_dataset(args.model, None, served.engine.n_features)
    values = data.X.reshape(-1, data.X.shape[-1])[:5000]
    workdir = tempfile.mkdtemp(prefix="stream-bench-")
    broker, port = start_mosquitto(workdir)
    results: dict = {
        "serve_args": args.serve_args,
        "model": served.name,
        "mode": served.mode,
        "devices": args.devices,
        "duration_s": args.duration,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "runs": [],
    }
    try:
        for kind in args.suts.split(","):
            duration = min(args.duration, 8.0) if kind == "naive" else args.duration
            print(f"measuring {kind} for {duration:g}s ...", flush=True)
            r = measure(
                kind,
                port,
                args.model,
                values,
                args.devices,
                duration,
                served.engine.n_outputs,
                served.class_names,
                args.serve_args,
            )
            print(f"  {r}", flush=True)
            results["runs"].append(r)
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
    if args.million:
        out = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "million",
                "--million",
                str(args.million),
                "--model",
                args.model,
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            cwd=ROOT,
        )
        results["million"] = (
            json.loads(out.stdout.strip().splitlines()[-1])
            if out.returncode == 0
            else {"error": out.stderr[-500:]}
        )
    runs = {r["sut"]: r for r in results["runs"]}
    ratios = {}
    for svc, relay in (("service", "relay"), ("service-batch", "relay-batch")):
        if svc in runs and relay in runs:
            ratios[f"{svc} / {relay}"] = round(runs[svc]["readings_per_s"] / runs[relay]["readings_per_s"], 3)
        if svc in runs and "naive" in runs:
            ratios[f"{svc} / naive"] = round(runs[svc]["readings_per_s"] / runs["naive"]["readings_per_s"], 1)
    results["ratios"] = ratios
    print_table(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict) -> None:
    print(
        f"\nmodel {results['model']} ({results['mode']} mode), {results['devices']} devices, "
        f"{results['machine']}, Python {results['python']}"
    )
    print("| SUT | readings/s | CPU % | RSS MB | latency at | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results["runs"]:
        print(
            f"| {r['sut']} | {r['readings_per_s']:,.0f} | {r['cpu_percent']:.0f} | {r['rss_mb']:.0f} | "
            f"{r['latency_rate']:,.0f}/s | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    for name, value in results["ratios"].items():
        print(f"{name}: {value}")
    if "million" in results:
        print(f"1,000,000-device state table: {results['million']}")


if __name__ == "__main__":
    sys.exit(main())
