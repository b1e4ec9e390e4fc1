"""Smoke runs of every benchmark script (slow suite): each runs end to end on tiny sizes, exits 0 and writes its
JSON, so a benchmark cannot rot unnoticed (as stream_bench's naive baseline once did, on a renamed import). The
figures themselves come from the full runs named in each script's docstring. fit_bench has its own smoke test
(tests/test_fit_bench.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")

needs_mosquitto = pytest.mark.skipif(
    not (shutil.which(MOSQUITTO) or os.path.exists(MOSQUITTO)), reason="no mosquitto"
)


def _has_nats() -> bool:
    from streaming.jetstream import find_nats_server

    try:
        return bool(find_nats_server())
    except FileNotFoundError:
        return False


needs_nats = pytest.mark.skipif(not _has_nats(), reason="no nats-server")


def run_bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one benchmark as users do; any exception in it is a non-zero exit and fails the test with its tail."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.mark.slow
@needs_mosquitto
def test_stream_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "stream_bench.json"
    run_bench("stream_bench.py", "--duration", "1", "--devices", "20", "--suts", "relay,service,naive",
              "--million", "500", "--json", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    runs = {r["sut"]: r for r in result["runs"]}
    assert set(runs) == {"relay", "service", "naive"}
    assert all(r["readings_per_s"] > 0 for r in runs.values()), runs
    assert "service / relay" in result["ratios"] and "service / naive" in result["ratios"]
    assert result["million"]["devices"] == 500


@pytest.mark.slow
@needs_nats
def test_jetstream_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "jetstream_bench.json"
    run_bench("jetstream_bench.py", "--devices", "16", "--readings", "320", "--rate", "50", "--recovery-s", "6",
              "--mqtt-duration", "0", "--json", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert [r["sut"] for r in result["throughput"]] == ["relay", "worker x1", "worker x2"]
    # A tiny backlog may drain before a row's measurement starts: what must hold is that every reading is answered.
    assert all(r["predicted"] == r["readings"] for r in result["throughput"]), result["throughput"]
    assert result["recovery"]["lost"] == 0


@pytest.mark.slow
@needs_nats
def test_checkpoint_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "checkpoint_bench.json"
    run_bench("checkpoint_bench.py", "--devices", "500", "--changed", "5", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["recovery"]["devices"] == 500
    assert 0 < result["changed_checkpoint"]["bytes"] < result["first_checkpoint"]["bytes"]


@pytest.mark.slow
@needs_mosquitto
def test_restart_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "restart_bench.json"
    run_bench("restart_bench.py", "--runs", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["cold_median_s"] > 0 and result["warm_median_s"] > 0


@pytest.mark.slow
@needs_mosquitto
def test_soak_smoke(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run_bench("soak.py", "--duration", "7", "--devices", "5", "--rate", "2", "--hostile-rate", "20",
              "--flood", "200", "--ttl", "3", "--json", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert result["ok"] and result["real_missing"] == 0 and result["sent"]["flood"] == 200


@pytest.mark.slow
def test_gradient_flow_smoke(tmp_path: Path) -> None:
    run_bench("gradient_flow.py", "--lengths", "6", "--units", "4", "--epochs", "1", "--train", "64",
              "--out", str(tmp_path))  # fmt: skip
    result = json.loads((tmp_path / "gradient_flow.json").read_text())
    assert {"recall", "activity", "clipping"} <= set(result)
    assert len(list(tmp_path.glob("*.png"))) == 3


@pytest.mark.slow
def test_step_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "step_bench.json"
    run_bench("step_bench.py", "--rows", "8", "--calls", "3", "--repeats", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert [r["compute_dtype"] for r in result["steps"]] == ["float64", "float32"]
    assert all(r["us_per_row"] > 0 and r["matmul_flops_per_row"] > 0 for r in result["steps"])
