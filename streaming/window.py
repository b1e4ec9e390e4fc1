"""WindowModel: serve a non-causal model (bidirectional, sequence classifier) on each device's last W readings.

The per-device "state" is the window itself, flattened to `[B, W * F]` (oldest reading first), so the state
table, snapshots and batching treat step and window models alike. Until a device has W readings the model
runs on the readings it has (or, for models with a fixed input length, on the window padded on the left with
the device's first reading) and the prediction is marked partial.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

Array = np.ndarray


class WindowModel:
    """Run a Keras model on the last `window` readings of each device.

    Args:
        model: any Keras model taking `[batch, time, features]`.
        window: W, the number of most recent readings the model sees.
    """

    mode = "window"

    def __init__(self, model: Any, window: int):
        shape = model.inputs[0].shape
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(f"window mode needs a [batch, time, features] input; the model takes {shape}")
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.fixed_length = shape[1]
        if self.fixed_length is not None and window != self.fixed_length:
            raise ValueError(
                f"the model takes exactly {self.fixed_length} steps; set window = {self.fixed_length}"
            )
        self.model = model
        self.window = int(window)
        self.n_features = int(shape[-1])
        self.n_outputs = int(model.outputs[0].shape[-1])
        self.dtype = np.dtype(np.float32)
        self.state_size = self.window * self.n_features
        digest = hashlib.sha256(f"window:{window}".encode())
        for weight in model.weights:
            digest.update(np.asarray(weight).tobytes())
        self.fingerprint = digest.hexdigest()[:16]

    def initial_state(self, batch: int) -> Array:
        return np.zeros((batch, self.state_size), dtype=self.dtype)

    def _predict(self, windows: Array) -> Array:
        from zoo.backend import keras

        out = keras.ops.convert_to_numpy(self.model(windows, training=False))
        return out[:, -1] if out.ndim == 3 else out

    def advance(self, x: Array, state: Array, steps: Array) -> tuple[Array, Array]:
        """Append x [B, F] to each window; return the model's output on each window [B, K] and the windows."""
        x = np.asarray(x, dtype=self.dtype)
        f, w = self.n_features, self.window
        new_state = np.concatenate([state[:, f:], x], axis=1)
        seen = np.minimum(np.asarray(steps) + 1, w)
        outputs = np.empty((x.shape[0], self.n_outputs), dtype=np.float32)
        # Group rows by how much of their window is filled: each group is one batched model call.
        for n in np.unique(seen):
            rows = np.nonzero(seen == n)[0]
            windows = new_state[rows].reshape(len(rows), w, f)
            if n < w:
                if self.fixed_length is None:
                    windows = windows[:, w - n :]
                else:
                    first = windows[:, w - n : w - n + 1]
                    windows = np.concatenate([np.repeat(first, w - n, axis=1), windows[:, w - n :]], axis=1)
            outputs[rows] = self._predict(windows)
        return outputs, new_state
