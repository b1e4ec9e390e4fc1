"""The engine: `StepModel` advances a batch of devices one reading each, in numpy, through the ops
(`zoo.step.ops`) read from a Keras model (`zoo.step.convert`) or from a step file (`zoo.step.fileformat`).
Stepping needs numpy only."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.step.activations import Array
from zoo.step.convert import ops_from_keras
from zoo.step.fileformat import StepFile, read_step_file, write_step_file
from zoo.step.ops import _Op

STEP_ROWS = 128  # rows one numpy pass of StepModel.step takes at most (see there)


def one_blas_thread() -> None:
    """Limit this process's BLAS to one thread, for a long-running stepper (the MQTT service, a JetStream
    worker). A step's matmuls are small ([a few hundred rows, 64] @ [64, 192]), and a second BLAS thread
    fighting the broker and the network for the cores made them far slower in measurement: a 512-row step 7x
    in the MQTT service, a 125-row GRU step of activity-gru-causal 30x (22 ms instead of 0.7) on a loaded
    2-core machine."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


class Stepper:
    """What every step engine shares (the numpy `StepModel`, an exported graph's `zoo.export.StepEngine`):
    ``advance`` and ``run`` built on the engine's own ``initial_state`` and ``step``."""

    mode = "step"
    dtype: np.dtype

    def initial_state(self, batch: int) -> Array:
        raise NotImplementedError

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def advance(self, x: Array, state: Array, steps: Array) -> tuple[Array, Array]:
        """The engine-facing call shared with WindowModel; a step engine does not need the step counts."""
        return self.step(x, state)

    def run(self, sequences: Array) -> Array:
        """Step whole sequences [B, T, F] from zero state → [B, T, K]; the offline reference in tests."""
        sequences = np.asarray(sequences, dtype=self.dtype)
        state = self.initial_state(sequences.shape[0])
        outs = []
        for t in range(sequences.shape[1]):
            y, state = self.step(sequences[:, t], state)
            outs.append(y)
        return np.stack(outs, axis=1)


class StepModel(Stepper):
    """A causal recurrent model advanced one reading at a time, for a batch of devices, in numpy.

    Args:
        ops: the per-layer step functions, in order (built by `from_keras`).
        n_features: F, the width of one reading.
        n_outputs: K, the width of one output row.
        dtype: the dtype of inputs, outputs and state (float32, as Keras keeps them).
        compute_dtype: the dtype of the arithmetic inside one step. float64 (the default) rounds each step's
            result to float32 once, as exact arithmetic would. float32 arithmetic is ~2x faster per batch
            (activity-gru-causal, 125 rows: 1.3 µs a row against 2.5, `benchmarks/step_bench.py`) but, on
            models whose recurrence amplifies rounding, drifts past 1e-5 from Keras within tens of steps.
        fingerprint: a hash of the weights, so a state snapshot is never restored into another model.
    """

    def __init__(
        self,
        ops: Sequence[_Op],
        n_features: int,
        n_outputs: int,
        fingerprint: str,
        dtype: Any = np.float32,
        compute_dtype: Any = np.float64,
    ):
        self.ops = list(ops)
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.dtype = np.dtype(dtype)
        self.compute_dtype = np.dtype(compute_dtype)
        self.fingerprint = fingerprint
        self.state_size = sum(op.state_size for op in self.ops)
        # Precomputed state slices, so step() does no bookkeeping per call.
        self._slices: list[slice | None] = []
        offset = 0
        for op in self.ops:
            if op.state_size:
                self._slices.append(slice(offset, offset + op.state_size))
                offset += op.state_size
            else:
                self._slices.append(None)

    @classmethod
    def from_keras(cls, model: Any, compute_dtype: Any = np.float64) -> StepModel:
        """Read the weights of a causal Keras model; raise NotStepable (with the reason) if it is not causal."""
        ops, n_features, n_outputs, fingerprint = ops_from_keras(model, compute_dtype)
        return cls(ops, n_features, n_outputs, fingerprint, compute_dtype=compute_dtype)

    def save(self, path: str | os.PathLike) -> None:
        """Write the step model to an .npz (weights + a JSON description), loadable without Keras or TF."""
        step = StepFile(
            self.ops,
            self.n_features,
            self.n_outputs,
            self.fingerprint,
            self.dtype.name,
            self.compute_dtype.name,
        )
        write_step_file(path, step)

    @classmethod
    def load(cls, path: str | os.PathLike) -> StepModel:
        """Read a file written by `save`."""
        f = read_step_file(path)
        return cls(
            f.ops, f.n_features, f.n_outputs, f.fingerprint, dtype=f.dtype, compute_dtype=f.compute_dtype
        )

    def with_compute_dtype(self, compute_dtype: Any) -> StepModel:
        """The same model computing in ``compute_dtype``, every op's arrays cast to it. Casting a float64 engine
        to float32 gives the very arrays `from_keras(..., compute_dtype=float32)` reads: the weights are
        float32 values, and the constants derived from them (normalisation's std, batch normalisation's fold)
        are computed in float64 and rounded once either way."""
        dtype = np.dtype(compute_dtype)
        if dtype == self.compute_dtype:
            return self
        ops = []
        for op in self.ops:
            arrays = {
                f.name: value.astype(dtype)
                for f in dataclasses.fields(op)
                if isinstance(value := getattr(op, f.name), np.ndarray)
            }
            ops.append(dataclasses.replace(op, **arrays))
        return StepModel(
            ops, self.n_features, self.n_outputs, self.fingerprint, dtype=self.dtype, compute_dtype=dtype
        )

    def initial_state(self, batch: int) -> Array:
        """The state of a device that has seen nothing: zeros, as Keras starts its recurrences."""
        return np.zeros((batch, self.state_size), dtype=self.dtype)

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        """Advance every row one reading: x [B, F], state [B, S] → (outputs [B, K], new state [B, S])."""
        if len(x) > STEP_ROWS:
            # In slices: glibc hands a freed block over ~128 KB straight back to the OS, and a step's float64
            # temporaries ([rows, 3 × units]) pass that size from ~100 rows, so a bigger step paid page faults
            # for each of them on every call (a 1024-row step of activity-gru-causal: 4.7 µs a row; in 128-row
            # slices 3.3). Every op works row by row, so slicing changes no row's arithmetic.
            parts = [
                self._step_rows(x[i : i + STEP_ROWS], state[i : i + STEP_ROWS])
                for i in range(0, len(x), STEP_ROWS)
            ]
            return np.concatenate([y for y, _ in parts]), np.concatenate([s for _, s in parts])
        return self._step_rows(x, state)

    def _step_rows(self, x: Array, state: Array) -> tuple[Array, Array]:
        x = np.asarray(x, dtype=self.compute_dtype)
        state = np.asarray(state, dtype=self.compute_dtype)
        new_state = np.empty(state.shape, dtype=self.dtype)
        for op, sl in zip(self.ops, self._slices, strict=True):
            if sl is None:
                x, _ = op(x, None)
            else:
                x, layer_state = op(x, state[:, sl])
                new_state[:, sl] = layer_state
                # The next layer must see this layer's output as Keras holds it: rounded to float32.
                x = x.astype(self.dtype).astype(self.compute_dtype)
        return x.astype(self.dtype), new_state
