"""Measure an exported step graph with its own runtime: parity with Keras on whole sequences, per-step latency.

Parity streams every sequence one step at a time through the runtime (all sequences side by side as one
batch, state fed back) and takes the largest |difference| from the Keras model run on the whole sequences.
Latency is the median wall time of one step call at a given batch size, on one thread, state fed back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from zoo import evaluation
from zoo.export.runtimes import StepRuntime

MIN_PARITY_STEPS = 10_000
MAX_BATCH = 512  # rows per runtime call when streaming many sequences


def stream(runtime: StepRuntime, sequences: np.ndarray) -> np.ndarray:
    """Run ``sequences [N, T, F]`` through ``runtime`` one step at a time from zero state → ``[N, T, K]``."""
    sequences = np.asarray(sequences, np.float32)
    out = []
    for lo in range(0, len(sequences), MAX_BATCH):
        chunk = sequences[lo : lo + MAX_BATCH]
        states = runtime.initial_state(len(chunk))
        ys = []
        for t in range(chunk.shape[1]):
            y, states = runtime(np.ascontiguousarray(chunk[:, t]), states)
            ys.append(y)
        out.append(np.stack(ys, axis=1))
    return np.concatenate(out, axis=0)


@dataclass(frozen=True)
class ParityData:
    """Sequences to stream, Keras's outputs on them, and which steps count (None: all)."""

    x: np.ndarray
    reference: np.ndarray
    valid: np.ndarray | None
    description: str

    @property
    def steps(self) -> int:
        return int(self.valid.sum()) if self.valid is not None else int(np.prod(self.x.shape[:2]))


def parity(runtime: StepRuntime, data: ParityData) -> float:
    """Largest |runtime streamed - Keras on the whole sequence| over the counted steps of ``data``."""
    diff = np.abs(stream(runtime, data.x) - data.reference)
    return float((diff if data.valid is None else diff[data.valid]).max())


def parity_data(name: str, model: object, min_steps: int = MIN_PARITY_STEPS) -> ParityData:
    """The test split of shipped model ``name`` (its real steps), topped up with validation then training
    sequences when the test split holds fewer than ``min_steps`` steps; Keras's outputs on all of it."""
    from zoo.registry import get_spec
    from zoo.tasks import TASKS

    spec = get_spec(name)
    task = TASKS[spec.task]
    x = np.asarray(evaluation.test_data(name)[0], np.float32)
    valid = task.valid_steps()
    valid = np.ones(x.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    test_steps = int(valid.sum())
    description = f"test split: {test_steps:,} steps ({x.shape[0]} sequences)"
    if test_steps < min_steps:
        prepared = task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
        extra = [
            np.asarray(a, np.float32)
            for a in (prepared.x_val, prepared.x_train)
            if isinstance(a, np.ndarray) and a.ndim == 3 and a.shape[2] == x.shape[2]
        ]
        pool = np.concatenate(extra) if extra else np.zeros((0, *x.shape[1:]), np.float32)
        need = -(-(min_steps - test_steps) // max(pool.shape[1], 1)) if len(pool) else 0
        top = pool[:need]
        if len(top):
            description += (
                f" + {int(np.prod(top.shape[:2])):,} validation/training steps ({len(top)} sequences)"
            )
            parts = [(x, valid), (top, np.ones(top.shape[:2], bool))]
            width = max(p.shape[1] for p, _ in parts)
            x = np.concatenate([_pad(p, width) for p, _ in parts])
            valid = np.concatenate([_pad(v, width) for _, v in parts])
    if int(valid.sum()) < min_steps:
        # A small dataset (BasicMotions has 8,000 steps in all): its sequences, played back to back as one
        # continuous stream, make the rest — the state then runs far past the trained length, as on a device.
        real = np.concatenate([x[i, valid[i]] for i in range(len(x))])
        need = min_steps - int(valid.sum())
        chained = np.tile(real, (-(-need // len(real)), 1))[:need]
        description += f" + {need:,} steps of those sequences back to back as one continuous stream"
        width = max(x.shape[1], need)
        x = np.concatenate([_pad(x, width), _pad(chained[None], width)])
        valid = np.concatenate([_pad(valid, width), _pad(np.ones((1, need), bool), width)])
    reference = np.asarray(model.predict(x, verbose=0, batch_size=256), np.float32)  # type: ignore[attr-defined]
    return ParityData(x, reference, None if valid.all() else valid, description)


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    """``a`` padded with zeros (False for masks) along the time axis to ``width`` steps."""
    pad = [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad)


def latency_us(runtime: StepRuntime, batch: int, calls: int = 300, seed: int = 0) -> float:
    """Median wall time (µs) of one step call for ``batch`` rows, state fed back, after a warm-up."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(16, batch, runtime.n_features)).astype(np.float32)
    states = runtime.initial_state(batch)
    for i in range(20):
        _, states = runtime(xs[i % 16], states)
    times = []
    for i in range(calls):
        start = time.perf_counter()
        _, states = runtime(xs[i % 16], states)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)
