"""Soak: `rnnzoo serve` under valid and hostile traffic for minutes — it must not crash, must answer every
valid reading exactly once, and its memory must stay flat (and come back after a mass eviction).

Processes: a private Mosquitto, the service exactly as users start it (`rnnzoo serve`, a zoo model, QoS 1, a
snapshot file), and this script, which publishes and counts every answer. Traffic:

    real      DEVICES devices (default 1,000) at RATE readings/s each; every reading must get one prediction
    hostile   the attacker's payloads (400-digit numbers, NaN tricks, [1e300, -1e300], duplicated SenML names,
              non-JSON, deep nesting, giant and reserved device ids, stale timestamps): one error each
    flood     FLOOD made-up device ids with valid readings, at twice the admission cap (each gets
              a prediction or a 'new device rate limit' error), then left idle so the TTL evicts them all

    python benchmarks/soak.py --duration 600 --json benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import clear_retained, mqtt_client, start_mosquitto, wait_ready  # noqa: E402

MODEL = "activity-gru-causal"
HUGE = int("9" * 400)


def hostile_payloads() -> list[tuple[str, bytes]]:
    """(device suffix, payload): each one malformed in a way someone tried."""
    senml_dup = [{"bn": "d:", "n": "acc_x", "v": 1}] * 6
    return [
        ("t-overflow", json.dumps({"values": [1, 2, 3, 4, 5, 6], "t": HUGE}).encode()),
        ("v-overflow", json.dumps({"values": [HUGE, 2, 3, 4, 5, 6]}).encode()),
        ("bt-overflow", json.dumps([{"bn": "d:", "bt": HUGE, "n": "x", "v": 1}]).encode()),
        ("sum-trick", json.dumps({"values": [1e300, -1e300, 0, 0, 0, 0]}).encode()),
        ("nan", b'{"values": [NaN, 0, 0, 0, 0, 0]}'),
        ("inf", b"[Infinity, 0, 0, 0, 0, 0]"),
        ("senml-dup", json.dumps(senml_dup).encode()),
        ("not-json", b"\xff\xfe\x00garbage"),
        ("deep", b"[" * 50_000),
        ("too-few", b"[1, 2]"),
        ("strings", json.dumps({"values": ["1", 2, 3, 4, 5, 6]}).encode()),
    ]


class Counts:
    """Answers seen by the soak's subscriber, by kind (counts only: memory stays flat here too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.real = Counter()  # device -> predictions
        self.hostile_errors = 0
        self.hostile_predictions = 0
        self.flood = Counter()  # "prediction" / error reason
        self.stale = 0
        self.stale_predictions = 0
        self.reasons = Counter()
        self.bad_json = 0

    def on_message(self, client, userdata, msg) -> None:
        try:
            body = json.loads(msg.payload, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError:
            with self.lock:
                self.bad_json += 1
            return
        kind, device = msg.topic.split("/")[0], msg.topic.split("/")[1]
        with self.lock:
            if kind == "predictions":
                if device.startswith("r"):
                    self.real[device] += 1
                elif device.startswith("flood"):
                    self.flood["prediction"] += 1
                elif device.startswith("stale"):
                    self.stale_predictions += 1  # the first of the two same-t readings is valid
                else:
                    self.hostile_predictions += 1
            else:
                self.reasons[body.get("reason")] += 1
                if device.startswith("flood"):
                    self.flood[body.get("reason")] += 1
                elif device.startswith("stale"):
                    self.stale += 1
                else:
                    self.hostile_errors += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    ap.add_argument("--devices", type=int, default=1000, help="real devices (default 1,000)")
    ap.add_argument("--rate", type=float, default=2.0, help="readings/s per real device (default 2)")
    ap.add_argument("--hostile-rate", type=float, default=200.0, help="hostile messages/s (default 200)")
    ap.add_argument(
        "--flood", type=int, default=100_000, help="made-up device ids in the flood (default 100,000)"
    )
    ap.add_argument("--ttl", type=float, default=60.0, help="service --ttl: the flood is evicted after this")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="rnnzoo-soak-")
    broker, port = start_mosquitto(workdir)
    clear_retained(port)
    cmd = [
        sys.executable, "-m", "rnnzoo.cli", "serve", "--model", MODEL, "--topic", "sensors/+/imu",
        "--broker", f"mqtt://127.0.0.1:{port}", "--qos", "1", "--snapshot", f"{workdir}/snap.npz",
        "--ttl", str(args.ttl), "--max-devices", "200000", "--max-new-devices-per-s", "2000",
    ]  # fmt: skip
    log = open(f"{workdir}/serve.log", "wb")
    service = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    wait_ready(port, service, timeout=120)
    ready_s = time.monotonic() - started
    proc = psutil.Process(service.pid)

    counts = Counts()
    sub = mqtt_client()
    sub.on_connect = lambda c, u, f, r, p: c.subscribe([("predictions/#", 1), ("errors/#", 1)])
    sub.on_message = counts.on_message
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = mqtt_client()
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(1.0)

    hostile = hostile_payloads()
    sent = Counter()
    rss: list[tuple[float, float]] = []
    reading = json.dumps({"values": [0.1, -0.2, 9.8, 0.01, 0.02, 0.03]})
    t0 = time.monotonic()
    tick, flood_next, n_real_ticks = 0.05, 0, 0
    per_tick_real = args.devices * args.rate * tick
    per_tick_hostile = args.hostile_rate * tick
    # Twice the admission cap, starting once the real devices are known: about half the flood is refused.
    flood_start, flood_per_tick = 5.0, 4000 * tick
    real_due = hostile_due = 0.0
    next_rss = 0.0
    while (now := time.monotonic() - t0) < args.duration:
        if service.poll() is not None:
            break
        real_due += per_tick_real
        while real_due >= 1:
            device = f"r{n_real_ticks % args.devices}"
            pub.publish(f"sensors/{device}/imu", reading, qos=1)
            sent["real"] += 1
            n_real_ticks += 1
            real_due -= 1
        hostile_due += per_tick_hostile
        while hostile_due >= 1:
            i = sent["hostile"] + sent["stale"]
            if i % 10 == 9:  # a stale timestamp: the same t twice on one device
                device = f"stale{i}"
                body = json.dumps({"values": [0, 0, 0, 0, 0, 0], "t": 1000.0})
                pub.publish(f"sensors/{device}/imu", body, qos=1)
                pub.publish(f"sensors/{device}/imu", body, qos=1)
                sent["stale"] += 1
            elif i % 10 == 8:  # a giant device id
                pub.publish(f"sensors/evil{'x' * 20_000}/imu", reading, qos=1)
                sent["hostile"] += 1
            else:
                suffix, body = hostile[i % len(hostile)]
                pub.publish(f"sensors/evil-{suffix}/imu", body, qos=1)
                sent["hostile"] += 1
            hostile_due -= 1
        if now >= flood_start and flood_next < args.flood:
            for _ in range(int(flood_per_tick)):
                if flood_next >= args.flood:
                    break
                pub.publish(f"sensors/flood{flood_next}/imu", reading, qos=1)
                flood_next += 1
                sent["flood"] += 1
        if now >= next_rss:
            rss.append((round(now, 1), proc.memory_info().rss / 2**20))
            next_rss = now + 5.0
        time.sleep(max(0.0, tick - (time.monotonic() - t0 - now)))
    alive = service.poll() is None
    elapsed = time.monotonic() - t0

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive:
        with counts.lock:
            answered = sum(counts.real.values())
        if answered >= sent["real"]:
            break
        time.sleep(0.5)
    time.sleep(2.0)
    if alive:
        rss.append((round(time.monotonic() - t0, 1), proc.memory_info().rss / 2**20))
        cpu = proc.cpu_times()
        service.terminate()
        rc = service.wait(30)
    else:
        cpu, rc = None, service.returncode
    sub.loop_stop()
    pub.loop_stop()
    broker.terminate()

    with counts.lock:
        real_missing = sum(
            max(0, (sent["real"] // args.devices + (i < sent["real"] % args.devices)) - counts.real[f"r{i}"])
            for i in range(args.devices)
        )
        real_doubled = sum(
            max(0, counts.real[f"r{i}"] - (sent["real"] // args.devices + (i < sent["real"] % args.devices)))
            for i in range(args.devices)
        )
        flood_answered = sum(counts.flood.values())
        result = {
            "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
            "service_command": "rnnzoo serve " + " ".join(cmd[4:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"),
            "duration_s": round(elapsed, 1),
            "service_start_to_online_s": round(ready_s, 1),
            "service_alive_throughout": alive,
            "service_exit_code_after_sigterm": rc,
            "sent": dict(sent),
            "real_predictions": sum(counts.real.values()),
            "real_missing": real_missing,
            "real_answered_twice": real_doubled,
            "hostile_errors": counts.hostile_errors,
            "hostile_predictions": counts.hostile_predictions,
            "stale_predictions": counts.stale_predictions,
            "stale_errors": counts.stale,
            "flood_answered": flood_answered,
            "flood_answers": dict(counts.flood),
            "error_reasons": dict(counts.reasons),
            "invalid_json_published": counts.bad_json,
            "rss_mb": {
                "after_start": round(rss[0][1], 1),
                "peak": round(max(r for _, r in rss), 1),
                "end": round(rss[-1][1], 1),
                "samples": [[t, round(r, 1)] for t, r in rss],
            },
            "service_cpu_s": round(cpu.user + cpu.system, 1) if cpu else None,
        }
    ok = (
        alive
        and rc == 0
        and real_missing == 0
        and real_doubled == 0
        and counts.hostile_errors == sent["hostile"]
        and counts.hostile_predictions == 0
        # each stale pair: a prediction and a 'stale timestamp' error — or, for a device that was new during the
        # flood, two 'new device rate limit' errors; either way two answers
        and counts.stale + counts.stale_predictions == 2 * sent["stale"]
        and flood_answered == sent["flood"]
        and counts.bad_json == 0
    )
    result["ok"] = ok
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    summary = {k: v for k, v in result.items() if k != "rss_mb"} | {
        "rss_mb": {k: v for k, v in result["rss_mb"].items() if k != "samples"}
    }
    print(json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
