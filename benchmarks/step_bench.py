"""Step engine benchmark: microseconds per row of one `StepModel.step` over a wave of devices, in float64 (the
default arithmetic) and float32, with the floating-point operations of the model's matrix products per row and the
rate they amount to over the whole step (element-wise work included).

A wave is what a serving process steps at once: one reading of each of `--rows` devices (a JetStream partition of
the default benchmark holds 125). Inputs are random readings; the states are the model's own after 20 such steps,
so the gates see values like a device's. Each figure is the best of `--repeats` timings of `--calls` steps, with
one BLAS thread, as `rnnzoo serve` and `rnnzoo worker` run (`zoo.step.one_blas_thread`).

    python benchmarks/step_bench.py --json benchmarks/results/step_bench.json
    python benchmarks/step_bench.py --model activity-lstm-causal --rows 1024
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from results_file import cpu_model, write_json  # noqa: E402

DEFAULT_MODEL = "activity-gru-causal"


def matmul_flops(engine: object) -> int:
    """Floating-point operations of one row's matrix products (2 per multiply-add): each 2-D weight a layer has
    (its kernel, its recurrent kernel) multiplies one row once a step. Counted from the ops' dataclass fields,
    the layer's own weights; the stacked copies an op derives from them for speed are not counted again."""
    total = 0
    for op in engine.ops:  # type: ignore[attr-defined]
        for f in dataclasses.fields(op):
            value = getattr(op, f.name)
            if isinstance(value, np.ndarray) and value.ndim == 2:
                total += 2 * value.shape[0] * value.shape[1]
    return total


def time_step(engine: object, rows: int, calls: int, repeats: int) -> float:
    """Best microseconds per row of `engine.step` on `rows` rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, engine.n_features)).astype(np.float32)  # type: ignore[attr-defined]
    state = engine.initial_state(rows)  # type: ignore[attr-defined]
    for _ in range(20):
        _, state = engine.step(x, state)  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(calls):
            engine.step(x, state)  # type: ignore[attr-defined]
        best = min(best, (time.perf_counter() - began) / calls)
    return best / rows * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a causal zoo model (or a .keras file)")
    ap.add_argument("--rows", type=int, default=125, help="devices stepped at once (one wave)")
    ap.add_argument("--calls", type=int, default=400, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=5, help="timings; the best counts")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    from streaming.models import serve_model
    from zoo.step import one_blas_thread

    one_blas_thread()
    engine = serve_model(args.model, mode="step", isolate=True).engine
    flops = matmul_flops(engine)
    rows = []
    for dtype in ("float64", "float32"):
        us = time_step(engine.with_compute_dtype(dtype), args.rows, args.calls, args.repeats)
        rows.append(
            {
                "compute_dtype": dtype,
                "us_per_row": round(us, 3),
                "matmul_flops_per_row": flops,
                "matmul_gflops_over_whole_step": round(flops / us / 1e3, 1),
            }
        )
        print(
            f"{dtype}: {us:.2f} µs a row ({flops:,} matmul flops a row: {flops / us / 1e3:.1f} GFLOP/s over the step)"
        )
    result = {
        "model": args.model,
        "rows": args.rows,
        "calls": args.calls,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version()},
        "steps": rows,
        "float32_speedup": round(rows[0]["us_per_row"] / rows[1]["us_per_row"], 2),
        "command": "python benchmarks/step_bench.py " + " ".join(sys.argv[1:]),
    }
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
