"""What `rnnzoo fit` costs: training throughput of the zoo's loop against a plain hand-written Keras
``model.fit``, seconds until the first epoch starts, and peak memory on a large Parquet file, in one run.

1. **Throughput** (readings per second, the training split's readings over an epoch's seconds). Each repetition
   runs `zoo.fit` end to end on a real table written as CSV, then a hand-written Keras GRU stack of the same
   architecture (Normalization -> GRU -> Dense softmax, same seed, Adam at the same rate and ``clipnorm``, same
   batch size, epochs, shuffle and validation split) on the very arrays `zoo.fit` handed to ``model.fit``, then
   the plain model with one zoo ingredient added at a time (per-step sample weights, the gradient-norm tracking
   optimizer, `GradientNormLog`, early stopping with best weights, the Ctrl-C guard and the epoch bar) so each
   ingredient's cost is measured, not guessed. Only the epochs are timed: every ``model.fit`` of the process
   (the zoo's included) gets a clock callback first and last in its list; patience equals the epoch budget so
   both loops run every epoch. The figure is the median over epochs 2.. (epoch 1 also traces the step
   functions: reported apart), the ratio the zoo's over the plain loop's in the same repetition.
2. **Start-up**: ``rnnzoo fit`` as a subprocess, time-stamped from its launch to the line saying which task it
   chose (table read), to its epoch bar's first appearance (the first epoch starts), to the end of epoch 1.
3. **Peak RSS** (``--rss``): ``rnnzoo fit`` on a Parquet file of ``--parquet-gb`` GB built from aeon's bundled
   BasicMotions (6-channel accelerometer and gyroscope recordings, 4 activities) played as long per-device
   recordings tagged per reading, each copy jittered by 1 % of a channel's spread so no two are equal; the
   process's peak resident memory from the kernel (``wait4``, in a small launcher process) and sampled with
   psutil every 50 ms. One row per path: the in-memory one (files up to 256 MB by default) and the
   block-by-block one (``--chunked``), after a floor row (one row group: what the libraries and model take).

    python benchmarks/fit_bench.py --reps 3 --epochs 20 --rss --parquet-gb 0.2 \\
        --json benchmarks/results/fit_bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from fit_data import italy_power, ucr  # noqa: E402
from results_file import write_json  # noqa: E402

TABLES = ("italy_power", "osuleaf")
# The plain loop plus one zoo ingredient at a time: what each costs.
VARIANTS = ("plain", "+sample_weight", "+tracked_optimizer", "+gradient_norm_log", "+early_stopping",
            "+interrupt_and_bar", "plain_with_all")  # fmt: skip


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, no GPU, Python {platform.python_version()}"


# -- the tables ---------------------------------------------------------------------------------------------


def osuleaf(path: Path, leaves: int | None = None) -> Path:
    """UCR OSULeaf: 442 leaf outlines as 427-point 1-D curves (6 species), one row per point, ``leaf`` the
    sequence id — longer sequences than ItalyPowerDemand, so an epoch is mostly recurrent arithmetic."""
    import pandas as pd

    x, y = ucr("OSULeaf")
    if leaves is not None:
        x, y = x[:leaves], y[:leaves]
    n, _, t = x.shape
    frame = pd.DataFrame({"leaf": np.repeat([f"leaf{i:03d}" for i in range(n)], t), "i": np.tile(np.arange(t), n),
                          "curve": x[:, 0].reshape(-1), "species": np.repeat(y.astype(int), t)})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_table(name: str, folder: Path, tiny: bool) -> tuple[Path, dict]:
    """The table as a CSV and the `zoo.fit` column arguments for it."""
    if name == "italy_power":
        path = italy_power(folder / "italy_power.csv", days=120 if tiny else None)
        return path, {"target": "half_year", "id": "day", "time_col": "hour"}
    if name == "osuleaf":
        path = osuleaf(folder / "osuleaf.csv", leaves=60 if tiny else None)
        return path, {"target": "species", "id": "leaf", "time_col": "i"}
    raise ValueError(f"unknown table {name!r}: choose from {', '.join(TABLES)}")


# -- timing every model.fit of the process ------------------------------------------------------------------


def epoch_clocks() -> tuple[Any, Any, list[float]]:
    """Two callbacks (first and last in a ``fit``'s list) and the list of epoch seconds they fill: from
    before any other callback's ``on_epoch_begin`` to after every other callback's ``on_epoch_end``."""
    from zoo.backend import keras

    seconds: list[float] = []
    mark: list[float] = [0.0]

    class Start(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            mark[0] = time.perf_counter()

    class End(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds.append(time.perf_counter() - mark[0])

    return Start(), End(), seconds


@contextlib.contextmanager
def clocked_fits() -> Iterator[list[dict]]:
    """While open, every ``keras.Model.fit`` (the zoo's loop's too) is timed per epoch; yields a list that
    receives, per call, its epoch seconds and the arrays it trained on."""
    from zoo.backend import keras

    calls: list[dict] = []
    original = keras.Model.fit

    def fit(self: Any, *args: Any, callbacks: list | None = None, **kwargs: Any) -> Any:
        start, end, seconds = epoch_clocks()
        calls.append({"seconds": seconds, "kwargs": kwargs, "callbacks": [type(c).__name__ for c in callbacks or []],
                      "optimizer": type(self.optimizer).__name__})  # fmt: skip
        return original(self, *args, callbacks=[start, *(callbacks or []), end], **kwargs)

    keras.Model.fit = fit
    try:
        yield calls
    finally:
        keras.Model.fit = original


def steady(seconds: list[float]) -> float:
    """An epoch's seconds once the step functions are traced: the median over epochs 2.."""
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


# -- the two loops ------------------------------------------------------------------------------------------


def zoo_run(path: Path, columns: dict, epochs: int, batch: int, units: int, out: Path) -> dict:
    """`zoo.fit` end to end (baselines and export included); the epochs of its one ``model.fit`` timed."""
    import zoo

    # verbose=1 as `rnnzoo fit` runs it: the epoch bar (its output discarded) is part of the zoo's loop
    with clocked_fits() as calls, open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        result = zoo.fit(path, **columns, epochs=epochs, patience=epochs, batch_size=batch, units=units,
                         out=out, force=True, verbose=1, say=lambda s: None)  # fmt: skip
    if len(calls) != 1:
        raise RuntimeError(f"zoo.fit called model.fit {len(calls)} times (expected one)")
    call = calls[0]
    if len(call["seconds"]) != epochs:
        raise RuntimeError(f"zoo.fit ran {len(call['seconds'])} epochs, not {epochs}: early stopping fired")
    kw = call["kwargs"]
    arrays = {"x": kw["x"], "y": kw["y"], "w": kw["sample_weight"], "val": kw["validation_data"],
              "n_classes": len(result.card.class_names), "lr": result.card.recipe.learning_rate,
              "clipnorm": result.card.recipe.clipnorm, "units": result.card.architecture.units,
              "layers": result.card.architecture.layers}  # fmt: skip
    return {"seconds": call["seconds"], "callbacks": call["callbacks"], "optimizer": call["optimizer"],
            "class_weight": kw.get("class_weight"), "arrays": arrays}  # fmt: skip


def plain_model(arrays: dict, tracked: bool) -> Any:
    """The hand-written equivalent: Normalization (the training inputs' mean and variance) -> GRU stack ->
    Dense softmax at every step, compiled as a Keras user would (tracked: the zoo's optimizer instead)."""
    from zoo.backend import keras
    from zoo.diagnostics import tracked_optimizer

    x = arrays["x"]
    flat = x.reshape(-1, x.shape[-1]).astype("float64")
    inputs = keras.Input((None, x.shape[-1]))
    h = keras.layers.Normalization(mean=flat.mean(0), variance=np.maximum(flat.var(0), 1e-12))(inputs)
    for _ in range(arrays["layers"]):
        h = keras.layers.GRU(arrays["units"], return_sequences=True)(h)
    model = keras.Model(inputs, keras.layers.Dense(arrays["n_classes"], activation="softmax")(h))
    lr, clip = arrays["lr"], arrays["clipnorm"]
    optimizer = tracked_optimizer("adam", lr, clip) if tracked else keras.optimizers.Adam(lr, clipnorm=clip)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def plain_run(arrays: dict, variant: str, epochs: int, batch: int, seed: int = 0) -> list[float]:
    """A plain ``model.fit`` on the zoo's arrays, with the zoo ingredients ``variant`` names; epoch seconds."""
    from zoo.backend import keras
    from zoo.diagnostics import GradientNormLog
    from zoo.training import EpochBar, StopOnInterrupt

    every = variant == "plain_with_all"
    weights = every or variant == "+sample_weight"
    tracked = every or variant in ("+tracked_optimizer", "+gradient_norm_log")
    keras.utils.set_random_seed(seed)
    model = plain_model(arrays, tracked)
    x_val, y_val, w_val = arrays["val"]
    start, end, seconds = epoch_clocks()
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # the epoch bar's output
        callbacks: list = []
        if every or variant == "+gradient_norm_log":
            callbacks.append(GradientNormLog())
        if every or variant == "+early_stopping":
            callbacks.append(keras.callbacks.EarlyStopping(patience=epochs, restore_best_weights=True))
        if every or variant == "+interrupt_and_bar":
            callbacks += [StopOnInterrupt(), EpochBar(epochs, "plain")]
        model.fit(arrays["x"], arrays["y"], sample_weight=arrays["w"] if weights else None,
                  validation_data=(x_val, y_val, w_val) if weights else (x_val, y_val), batch_size=batch,
                  epochs=epochs, shuffle=True, callbacks=[start, *callbacks, end], verbose=0)  # fmt: skip
    return seconds


def throughput(table: str, reps: int, epochs: int, batch: int, units: int, variants: tuple[str, ...],
               workdir: Path, tiny: bool, log: Callable[[str], None]) -> dict:  # fmt: skip
    """Interleaved repetitions (zoo, then each plain variant) on one table."""
    path, columns = write_table(table, workdir / "tables", tiny)
    runs: dict[str, list[dict]] = {"zoo.fit": []} | {v: [] for v in variants}
    facts: dict = {}
    for rep in range(reps):
        z = zoo_run(path, columns, epochs, batch, units, workdir / f"zoo-{table}-{rep}")
        arrays = z.pop("arrays")
        readings = int(arrays["x"].shape[0] * arrays["x"].shape[1])
        facts = {"training_sequences": int(arrays["x"].shape[0]), "steps": int(arrays["x"].shape[1]),
                 "features": int(arrays["x"].shape[2]), "classes": arrays["n_classes"],
                 "readings_per_epoch": readings, "zoo_callbacks": z["callbacks"], "zoo_optimizer": z["optimizer"],
                 "zoo_class_weight": z["class_weight"],
                 "zoo_sample_weights_all_one": bool(np.all(arrays["w"] == 1.0))}  # fmt: skip
        runs["zoo.fit"].append(_row(z["seconds"], readings))
        log(f"  {table} rep {rep + 1}: zoo.fit {runs['zoo.fit'][-1]['readings_per_s']:,.0f} readings/s")
        for v in variants:
            runs[v].append(_row(plain_run(arrays, v, epochs, batch), readings))
            log(f"  {table} rep {rep + 1}: {v} {runs[v][-1]['readings_per_s']:,.0f} readings/s")
    plain = [r["epoch_s"] for r in runs["plain"]]
    summary = {}
    for name, rows in runs.items():
        per_rep = [r["epoch_s"] / p for r, p in zip(rows, plain, strict=True)]
        summary[name] = {
            "readings_per_s_median": round(statistics.median(r["readings_per_s"] for r in rows)),
            "epoch_s_median": round(statistics.median(r["epoch_s"] for r in rows), 4),
            "first_epoch_s_median": round(statistics.median(r["first_epoch_s"] for r in rows), 3),
            "time_vs_plain_per_rep": [round(q, 3) for q in per_rep],
            "time_vs_plain_median": round(statistics.median(per_rep), 3),
            "runs": rows,
        }
    return {"table": table, "file": path.name, **facts, "results": summary}


def _row(seconds: list[float], readings: int) -> dict:
    epoch = steady(seconds)
    return {"epoch_s": round(epoch, 4), "first_epoch_s": round(seconds[0], 3),
            "readings_per_s": round(readings / epoch), "epoch_seconds": [round(s, 4) for s in seconds]}  # fmt: skip


# -- start-up -----------------------------------------------------------------------------------------------


def rnnzoo() -> list[str]:
    exe = Path(sys.executable).with_name("rnnzoo")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "rnnzoo.cli"]


class Stamped:
    """A subprocess whose stdout and stderr are read as they come, each new text time-stamped."""

    def __init__(self, cmd: list[str], env: dict | None = None) -> None:
        self.text: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.readers = [threading.Thread(target=self._read, args=(s,), daemon=True)
                        for s in (self.proc.stdout, self.proc.stderr)]  # fmt: skip
        for r in self.readers:
            r.start()

    def _read(self, stream: Any) -> None:
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            self.text.append((time.monotonic() - self.started, chunk.decode("utf-8", "replace")))

    def first(self, pattern: str) -> float | None:
        """Seconds after launch when the output so far first matched ``pattern``."""
        seen = ""
        for t, chunk in list(self.text):
            seen += chunk
            if re.search(pattern, seen):
                return round(t, 3)
        return None

    def output(self) -> str:
        return "".join(c for _, c in self.text)


def startup(reps: int, epochs: int, workdir: Path, tiny: bool) -> dict:
    """``rnnzoo fit`` on ItalyPowerDemand: seconds from launch to the table read (the chosen-task line), to the
    epoch bar (the first epoch starts) and to the end of epoch 1."""
    path, _ = write_table("italy_power", workdir / "tables", tiny)
    rows = []
    for rep in range(reps):
        out = workdir / f"startup-{rep}"
        cmd = [*rnnzoo(), "fit", str(path), "--target", "half_year", "--id", "day", "--time", "hour",
               "--epochs", str(epochs), "--out", str(out), "--force"]  # fmt: skip
        run = Stamped(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        rc = run.proc.wait()
        for r in run.readers:
            r.join()
        if rc != 0:
            raise RuntimeError(f"rnnzoo fit failed (rc {rc}):\n{run.output()[-2000:]}")
        name = re.escape(out.name)
        rows.append({"table_read_s": run.first(r"rnnzoo fit: task"), "first_epoch_starts_s": run.first(rf"{name}:\s+0%"),
                     "first_epoch_done_s": run.first(rf"{name}:.*\b1/{epochs}\b"),
                     "exit_s": round(time.monotonic() - run.started, 3)})  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
    keys = ("table_read_s", "first_epoch_starts_s", "first_epoch_done_s", "exit_s")
    return {"command": " ".join(["rnnzoo", *cmd[len(rnnzoo()):]]).replace(str(workdir), "$TMP"),
            "runs": rows, **{f"{k[:-2]}_median_s": round(statistics.median(r[k] for r in rows), 2) for k in keys}}  # fmt: skip


# -- peak memory on a large Parquet file --------------------------------------------------------------------

GESTURES_PER_DEVICE = 40  # one device's recording: 40 BasicMotions gestures of 100 readings, 400 s at 10 Hz


def big_parquet(path: Path, gigabytes: float, seed: int = 0, block: int = 100) -> dict:
    """A Parquet file of about ``gigabytes`` GB: devices recording BasicMotions gestures one after another
    (``device``, ``t`` in s, 6 channels, ``activity`` per reading), written in row groups of ``block`` devices,
    copies jittered; at least one row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = ucr("BasicMotions")  # [80, 6, 100]
    x = x.transpose(0, 2, 1)
    spread = x.reshape(-1, 6).std(0)
    channels = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    rng = np.random.default_rng(seed)
    target, devices, writer = gigabytes * 1e9, 0, None
    per_device = GESTURES_PER_DEVICE * 100
    try:
        while True:
            order = rng.integers(0, len(x), (block, GESTURES_PER_DEVICE))
            vals = x[order].reshape(block * per_device, 6)
            vals = vals + rng.normal(0, 0.01, vals.shape) * spread
            ids = np.repeat(np.array([f"dev{devices + i:06d}" for i in range(block)]), per_device)
            cols = {
                "device": pa.array(ids).dictionary_encode(),
                "t": np.tile(np.arange(per_device) / 10.0, block),
            }
            cols |= {c: vals[:, j] for j, c in enumerate(channels)}
            cols["activity"] = pa.array(np.repeat(y[order].reshape(-1), 100)).dictionary_encode()
            table = pa.table(cols)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            devices += block
            if path.stat().st_size + block * per_device * 56 >= target:  # ~56 bytes per row once written
                break
    finally:
        if writer is not None:
            writer.close()
    return {"file_bytes": path.stat().st_size, "rows": devices * per_device, "devices": devices}


# A small process that starts ``cmd`` and writes its child's rusage: Linux keeps, in a child's peak RSS, the
# memory of the process it was forked from until exec, so the benchmark (TensorFlow loaded) cannot fork the
# measured command itself without lending it its own size.
LAUNCHER = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}, f)
"""


def peak_rss(cmd: list[str], workdir: Path, bar: str | None = None) -> dict:
    """Run ``cmd``; its peak resident memory from the kernel (``wait4`` in a small launcher) and from psutil
    samples every 50 ms (the command and any process it starts). ``bar``: the epoch bar's label, to split the
    samples into phases: before training (reading, splitting, windows), training, after (evaluation, baselines,
    export)."""
    import psutil

    usage = workdir / "rusage.json"
    exe = cmd[0] if os.path.isabs(cmd[0]) else shutil.which(cmd[0])
    run = Stamped([sys.executable, "-c", LAUNCHER, str(usage), exe, *cmd[1:]])
    launcher, samples = psutil.Process(run.proc.pid), []
    while run.proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            rss = sum(c.memory_info().rss for c in launcher.children(recursive=True))
            samples.append((time.monotonic() - run.started, rss))
        time.sleep(0.05)
    for r in run.readers:
        r.join()
    child = json.loads(usage.read_text()) if usage.is_file() else {"rc": run.proc.returncode, "maxrss_kb": 0}
    usage.unlink(missing_ok=True)
    if child["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {child['rc']}):\n{run.output()[-2000:]}")
    row = {"peak_rss_mb": round(child["maxrss_kb"] / 1024), "peak_rss_psutil_mb": round(max(r for _, r in samples) / 2**20),
           "wall_s": round(time.monotonic() - run.started, 1)}  # fmt: skip
    if bar is not None:
        begins, ends = run.first(rf"{re.escape(bar)}:\s+0%"), run.first(rf"{re.escape(bar)}:.*\b1/1\b")
        if begins is not None and ends is not None:
            phases = {
                "before_training": (0, begins),
                "training": (begins, ends),
                "after_training": (ends, 1e9),
            }
            row["psutil_peak_mb_by_phase"] = {
                k: round(max((r for t, r in samples if a <= t < b), default=0) / 2**20) for k, (a, b) in phases.items()
            }  # fmt: skip
            row["training_s"] = round(ends - begins, 1)
    return row


TAG_ARGS = [
    "--target",
    "activity",
    "--id",
    "device",
    "--time",
    "t",
    "--task",
    "tag",
    "--units",
    "16",
    "--epochs",
    "1",
]


def _shown(cmd: list[str], workdir: Path) -> str:
    return " ".join(["rnnzoo", *cmd[len(rnnzoo()) :]]).replace(str(workdir), "$TMP")


def rss(gigabytes: float, workdir: Path, paths: tuple[str, ...], steps: int, block: int = 100) -> dict:
    """Peak RSS of ``rnnzoo fit`` (tag, one epoch) on a BasicMotions Parquet file, per reading path."""
    rows = []
    floor = workdir / "basic_motions_floor.parquet"  # one row group: what the libraries and model cost alone
    small = big_parquet(floor, 0.0, block=block)
    out = workdir / "rss-floor"
    cmd = [*rnnzoo(), "fit", str(floor), *TAG_ARGS, "--out", str(out), "--force"]
    rows.append({"path": f"floor ({small['file_bytes'] / 1e6:.0f} MB, {small['rows']:,} rows)",
                 "command": _shown(cmd, workdir)} | peak_rss(cmd, workdir, out.name))  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    floor.unlink()
    path = workdir / "basic_motions_devices.parquet"
    built = big_parquet(path, gigabytes, block=block)
    for how in paths:
        out = workdir / f"rss-{how}"
        cmd = [*rnnzoo(), "fit", str(path), *TAG_ARGS, "--out", str(out), "--force"]
        if how == "chunked":
            cmd += ["--chunked", "--steps-per-epoch", str(steps)]
        rows.append({"path": how, "command": _shown(cmd, workdir)} | peak_rss(cmd, workdir, out.name))
        shutil.rmtree(out, ignore_errors=True)
    path.unlink()
    return {"file_mb": round(built["file_bytes"] / 1e6), "rows": built["rows"], "devices": built["devices"],
            "in_memory_below_mb": 256 * 2**20 / 1e6, "runs": rows}  # fmt: skip


# -- the table ----------------------------------------------------------------------------------------------


def report(result: dict) -> str:
    lines = []
    for t in result["throughput"]:
        lines.append(f"\n{t['table']} ({t['training_sequences']} training sequences x {t['steps']} steps, "
                     f"{t['readings_per_epoch']:,} readings per epoch)")  # fmt: skip
        lines.append(f"{'loop':<22}{'readings/s':>12}{'epoch s':>10}{'epoch 1 s':>11}{'time vs plain':>15}")
        for name, r in t["results"].items():
            lines.append(f"{name:<22}{r['readings_per_s_median']:>12,}{r['epoch_s_median']:>10.3f}"
                         f"{r['first_epoch_s_median']:>11.2f}{r['time_vs_plain_median']:>14.3f}x")  # fmt: skip
    if "startup" in result:
        s = result["startup"]
        lines.append(f"\nstart-up: table read {s['table_read_median_s']} s, first epoch starts "
                     f"{s['first_epoch_starts_median_s']} s, epoch 1 done {s['first_epoch_done_median_s']} s, "
                     f"exit {s['exit_median_s']} s (median of {len(s['runs'])})")  # fmt: skip
    if "rss" in result:
        r = result["rss"]
        lines.append(f"\npeak RSS on a {r['file_mb']} MB Parquet file ({r['rows']:,} rows):")
        for row in r["runs"]:
            lines.append(f"  {row['path']:<32} {row['peak_rss_mb']:>6} MB (psutil samples {row['peak_rss_psutil_mb']} MB)"
                         f", {row['wall_s']} s")  # fmt: skip
            if "psutil_peak_mb_by_phase" in row:
                lines.append("    psutil peak by phase: " + ", ".join(f"{k.replace('_', ' ')} {v} MB"
                                                                   for k, v in row["psutil_peak_mb_by_phase"].items()))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated, of {', '.join(TABLES)}")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every loop (default 3)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="plain-loop variants (plain is always run): " + ", ".join(VARIANTS))  # fmt: skip
    ap.add_argument("--diagnose", default="italy_power",
                    help="the table every variant runs on; the others run plain and plain_with_all only")  # fmt: skip
    ap.add_argument("--startup-reps", type=int, default=3, help="rnnzoo fit launches timed (0: skip)")
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS on a large Parquet file")
    ap.add_argument("--parquet-gb", type=float, default=0.2, help="its size in GB (default 0.2)")
    ap.add_argument("--rss-paths", default="in-memory,chunked", help="in-memory and/or chunked")
    ap.add_argument("--steps-per-epoch", type=int, default=200, help="--chunked row: batches in its epoch")
    ap.add_argument("--tiny", action="store_true", help="small tables (the smoke test)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    variants = tuple(dict.fromkeys(["plain", *[v for v in args.variants.split(",") if v]]))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}")
    workdir = Path(tempfile.mkdtemp(prefix="rnnzoo-fit-bench-"))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    result: dict = {
        "command": "python benchmarks/fit_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "recipe": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "units": args.units,
            "cell": "gru",
            "layers": 1,
            "patience": args.epochs,
        },  # fmt: skip
    }
    try:
        result["throughput"] = [
            throughput(t, args.reps, args.epochs, args.batch_size, args.units,
                       variants if t == args.diagnose else ("plain", "plain_with_all"), workdir, args.tiny, log)
            for t in args.tables.split(",") if t
        ]  # fmt: skip
        if args.startup_reps:
            log("start-up ...")
            result["startup"] = startup(args.startup_reps, 2 if args.tiny else 5, workdir, args.tiny)
        if args.rss:
            log(f"peak RSS on a {args.parquet_gb} GB Parquet file ...")
            paths = tuple(p for p in args.rss_paths.split(",") if p)
            result["rss"] = rss(
                args.parquet_gb, workdir, paths, args.steps_per_epoch, block=10 if args.tiny else 100
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(report(result))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
