"""Time from `rnnzoo serve` starting to its first prediction, in one run on one private Mosquitto: a zoo model
(its folder ships the step engine), and the same model as a bare `.keras` file, cold (no step model cached) and
warm (a previous start left it in the cache).

The zoo model's engine is read with numpy from `saved_models/<name>/step.npz`; a cold start of the `.keras` file
pays a child process that imports TensorFlow to read it; a warm one finds the step model in
`$RNNZOO_CACHE/step`, keyed by the sha256 of the model and its card, and imports no TensorFlow.

    python benchmarks/restart_bench.py --runs 3 --json benchmarks/results/restart_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import write_json  # noqa: E402
from stream_bench import mqtt_client, start_mosquitto  # noqa: E402

MODEL = "activity-gru-causal"


def time_to_first_prediction(port: int, cache: str, model: str = MODEL) -> float:
    """Seconds from launching the service until a prediction for a probe reading arrives."""
    got = threading.Event()
    sub = mqtt_client()
    sub.on_connect = lambda c, u, f, r, p: c.subscribe("predictions/#", 1)
    sub.on_message = lambda c, u, m: got.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = mqtt_client()
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.3)
    env = dict(os.environ, RNNZOO_CACHE=cache)
    cmd = [sys.executable, "-m", "rnnzoo.cli", "serve", "--model", model, "--topic", "sensors/+/imu",
           "--broker", f"mqtt://127.0.0.1:{port}"]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reading = json.dumps({"values": [0.1, -0.2, 9.8, 0.01, 0.02, 0.03]})
    try:
        while not got.wait(0.02):  # a probe every 20 ms: the first one after the subscription is answered
            if proc.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"rnnzoo serve exited or never answered (rc={proc.poll()})")
            pub.publish("sensors/probe/imu", reading)
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(15)
        sub.loop_stop()
        pub.loop_stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="starts of each kind (default 3)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="rnnzoo-restart-")
    broker, port = start_mosquitto(workdir)
    from zoo import cards

    keras_file = str(cards.model_dir(MODEL) / cards.MODEL_FILE)  # by path: no model folder, no shipped engine
    shipped, cold, warm = [], [], []
    try:
        for i in range(args.runs):
            cache = f"{workdir}/cache{i}"
            shipped.append(time_to_first_prediction(port, cache))  # the zoo name: its folder's step.npz
            cold.append(time_to_first_prediction(port, cache, keras_file))  # empty cache: the child exports
            warm.append(time_to_first_prediction(port, cache, keras_file))  # the same cache: found
            shutil.rmtree(cache)
    finally:
        broker.terminate()
    result = {
        "command": "python benchmarks/restart_bench.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "model": MODEL,
        "shipped_s": [round(t, 2) for t in shipped],
        "shipped_median_s": round(statistics.median(shipped), 2),
        "cold_s": [round(t, 2) for t in cold],
        "warm_s": [round(t, 2) for t in warm],
        "cold_median_s": round(statistics.median(cold), 2),
        "warm_median_s": round(statistics.median(warm), 2),
        "speedup": round(statistics.median(cold) / statistics.median(warm), 1),
    }
    print(json.dumps(result, indent=1))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
