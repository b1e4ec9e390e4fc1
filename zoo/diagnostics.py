"""Gradient diagnostics: how far back through time the loss reaches, and what clipping does to training.

- `gradient_flow` measures ‖∂L/∂h_t‖ for every time step t of every recurrent layer: the gradient that
  backpropagation through time delivers to the hidden state at t (through the layer's own recurrence and all
  later layers), computed with the backend's autodiff (TensorFlow or JAX). The recurrent layers are unrolled
  step by step with a zero perturbation δ_t added to each output h_t, so ∂L/∂δ_t is exactly ∂L/∂h_t; the model's
  outputs are unchanged (δ = 0). A vanilla RNN's curve falls by orders of magnitude towards early steps (the
  vanishing gradient); LSTM and GRU keep it flat for longer — the reason they exist.
- `tracked_optimizer` + `GradientNormLog` record, during `fit`, the global gradient norm of every update before
  clipping (mean and max per epoch) and how often clipping fired; the training loop writes them to history.json.

Example:
    >>> flow = gradient_flow(model, x, y, head="step_classification")
    >>> flow.norms.shape            # [recurrent layers, time steps]
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.backend import keras
from zoo.losses import LOSSES
from zoo.step import cell_name

# Heads whose loss is a plain function of (targets, outputs) on a single-chain model.
SUPPORTED_HEADS = ("sequence_classification", "step_classification", "step_regression", "step_multilabel")


class DiagnosticError(ValueError):
    """The model or data cannot be diagnosed as asked; the message is one line for the user."""


@dataclass
class GradientFlow:
    """‖∂L/∂h_t‖ per recurrent layer and time step.

    Args:
        layers: the recurrent layers' names, in model order.
        cells: their cells (simple, lstm, gru).
        norms: ``[layers, T]``, the L2 norm over units of ∂L/∂h_t, averaged over the examples.
        loss: the loss at which the gradient was taken.
        backend: the Keras backend whose autodiff computed it.
    """

    layers: list[str]
    cells: list[str]
    norms: np.ndarray
    loss: float
    backend: str

    def decay_decades(self) -> list[float]:
        """Per layer, log10 of ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖: orders of magnitude the gradient gains (> 0, exploding)
        or loses (< 0, vanishing) on its way from the last step back to the first."""
        tiny = np.finfo(np.float64).tiny
        return [
            float(np.log10(max(row[0], tiny) / max(row[-1], tiny))) for row in self.norms.astype(np.float64)
        ]

    def to_json(self) -> dict:
        return {
            "backend": self.backend,
            "loss": self.loss,
            "layers": [
                {"name": n, "cell": c, "decay_decades": d, "grad_norm_per_step": row.tolist()}
                for n, c, d, row in zip(
                    self.layers, self.cells, self.decay_decades(), self.norms, strict=True
                )
            ],
        }

    def write(self, folder: Path, stem: str = "gradient_flow", title: str = "") -> list[Path]:
        """Write ``<stem>.json``, ``<stem>.csv`` (one row per step, one column per layer) and ``<stem>.png``."""
        folder.mkdir(parents=True, exist_ok=True)
        json_path, csv_path, png_path = (folder / f"{stem}.{ext}" for ext in ("json", "csv", "png"))
        json_path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", *self.layers])
            for t in range(self.norms.shape[1]):
                writer.writerow([t + 1, *(f"{v:.6g}" for v in self.norms[:, t])])
        plot_flows(
            {f"{n} ({c})": row for n, c, row in zip(self.layers, self.cells, self.norms, strict=True)},
            png_path,
            title,
        )
        return [json_path, csv_path, png_path]


def plot_flows(curves: dict[str, np.ndarray], path: Path, title: str) -> None:
    """One curve per entry: ‖∂L/∂h_t‖ against t on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, row in curves.items():
        ax.plot(np.arange(1, len(row) + 1), np.maximum(row, 1e-30), label=label)
    ax.set(xlabel="time step t", ylabel="‖∂L/∂h_t‖ (mean over examples)", title=title, yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- gradient flow through time -----------------------------------------------------------------------------


def _layers(model: Any) -> list[Any]:
    from zoo.step import NotStepable, layer_chain

    try:
        layers = layer_chain(model)
    except NotStepable as err:
        raise DiagnosticError(f"gradient flow needs a single chain of layers: {err}") from None
    for layer in layers:
        if isinstance(layer, keras.layers.Bidirectional) or getattr(layer, "go_backwards", False):
            raise DiagnosticError(
                f"layer {layer.name!r} reads the sequence backwards: gradient flow through time is measured on "
                "causal (forward) recurrent models; try a *-causal model or a fresh unidirectional one"
            )
        if isinstance(layer, keras.layers.Embedding):
            raise DiagnosticError(
                "token-embedding models are not supported (their padding mask is not unrolled)"
            )
    if not any(isinstance(layer, keras.layers.RNN) for layer in layers):
        raise DiagnosticError("the model has no recurrent layer")
    return layers


def _unrolled(layer: Any, seq: Any, delta: Any) -> Any:
    """``layer`` run one step at a time through its cell, with ``delta[:, t]`` added to each output h_t (which
    is also the h fed to step t + 1), so the gradient with respect to delta is ∂L/∂h_t."""
    ops = keras.ops
    cell = layer.cell
    sizes = cell.state_size if isinstance(cell.state_size, list | tuple) else [cell.state_size]
    batch = ops.shape(seq)[0]

    width = seq.shape[-1]
    bounds = np.cumsum([int(s) for s in sizes])[:-1].tolist()

    def step(carry: Any, joined: Any) -> tuple[Any, Any]:
        x_t, delta_t = joined[:, :width], joined[:, width:]
        state = ops.split(carry, bounds, axis=-1) if bounds else [carry]
        out, new_state = cell(x_t, list(state), training=False)
        new_state = list(new_state) if isinstance(new_state, list | tuple) else [new_state]
        h = out + delta_t
        # h is the first state of every Keras cell (LSTM: [h, c]); the states travel as one tensor.
        carry = ops.concatenate([h, *new_state[1:]], axis=-1)
        return carry, carry

    # A scan over time (time-major), not a Python loop: one compiled step body on JAX, one while loop on
    # TensorFlow. Carry, scanned input and output are single tensors of matching shapes: Keras' TensorFlow scan
    # mishandles nested ones and outputs shaped unlike the carry; h is the first `units` columns.
    init = ops.zeros((batch, sum(int(s) for s in sizes)), dtype=seq.dtype)
    joined = ops.concatenate([seq, ops.cast(delta, seq.dtype)], axis=-1)
    _, outputs = ops.scan(step, init, ops.swapaxes(joined, 0, 1))
    outputs = ops.swapaxes(outputs, 0, 1)[..., : int(cell.units)]
    return outputs if layer.return_sequences else outputs[:, -1]


def _loss(model: Any, x: Any, y: Any, head: str, deltas: list[Any], last_step: bool = True) -> Any:
    """The head's training loss with every recurrent layer unrolled and perturbed by its delta; with
    ``last_step`` (a per-step head) only the last step's loss, so ∂L/∂h_t shows how far back one prediction's
    gradient reaches (averaged over all steps, early states would collect every later step's loss)."""
    h = x
    it = iter(deltas)
    for layer in _layers(model):
        h = _unrolled(layer, h, next(it)) if isinstance(layer, keras.layers.RNN) else layer(h, training=False)
    if last_step and head != "sequence_classification":
        h, y = h[:, -1:], y[:, -1:]
    loss_fn = keras.losses.get(LOSSES[head][0]) if isinstance(LOSSES[head][0], str) else LOSSES[head][0]
    return keras.ops.mean(loss_fn(y, h))


def _value_and_grad(fn: Any, deltas: list[Any]) -> tuple[float, list[np.ndarray]]:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        ds = [tf.convert_to_tensor(d) for d in deltas]
        with tf.GradientTape() as tape:
            tape.watch(ds)
            loss = fn(ds)
        grads = tape.gradient(loss, ds)
    elif backend == "jax":
        import jax

        loss, grads = jax.value_and_grad(fn)([jax.numpy.asarray(d) for d in deltas])
    else:
        raise DiagnosticError(f"gradient flow runs on the tensorflow or jax backend, not {backend}")
    return float(loss), [np.asarray(g) for g in grads]


def _targets(model: Any, x: np.ndarray, y: np.ndarray, head: str) -> np.ndarray:
    """``y`` in the shape the head's loss takes: a per-sequence label is repeated at every step of a step
    head, and a per-step regression target gets its output axis."""
    if head not in SUPPORTED_HEADS:
        raise DiagnosticError(
            f"head {head!r} is not supported: choose a model with one of {', '.join(SUPPORTED_HEADS)}"
        )
    y = np.asarray(y)
    if head == "step_classification" and y.ndim == 1:
        y = np.repeat(y[:, None], x.shape[1], axis=1)
    if head == "step_regression" and y.ndim == 2:
        y = y[..., None]
    return y


def state_gradients(
    model: Any, x: np.ndarray, y: np.ndarray, head: str, last_step: bool = True
) -> tuple[float, list[np.ndarray]]:
    """(loss, [∂L/∂h for each recurrent layer, ``[N, T, units]``]) for inputs ``x`` ``[N, T, F]``."""
    x = np.asarray(x, dtype="float32")
    y = _targets(model, x, y, head)
    recurrent = [layer for layer in _layers(model) if isinstance(layer, keras.layers.RNN)]
    deltas = [np.zeros((x.shape[0], x.shape[1], int(layer.cell.units)), "float32") for layer in recurrent]
    return _value_and_grad(lambda ds: _loss(model, x, y, head, ds, last_step), deltas)


def gradient_flow(
    model: Any, x: np.ndarray, y: np.ndarray, head: str, last_step: bool = True
) -> GradientFlow:
    """‖∂L/∂h_t‖ for every time step of every recurrent layer of a causal single-chain ``model`` on a batch
    ``x`` ``[N, T, F]`` with targets ``y`` (per sequence or per step, as `zoo.test_data` gives them). The loss
    is the last step's (``last_step``, default) or, for a per-step head, the mean over all steps."""
    loss, grads = state_gradients(model, x, y, head, last_step)
    recurrent = [layer for layer in _layers(model) if isinstance(layer, keras.layers.RNN)]
    norms = np.stack([np.linalg.norm(g.astype(np.float64), axis=-1).mean(axis=0) for g in grads])
    return GradientFlow(
        [layer.name for layer in recurrent],
        [cell_name(layer) for layer in recurrent],
        norms,
        loss,
        keras.backend.backend(),
    )


# -- gradient norms during training -------------------------------------------------------------------------

_TRACKED: dict[type, type] = {}


def tracked_optimizer(name: str, learning_rate: float, clipnorm: float | None) -> keras.optimizers.Optimizer:
    """Keras optimizer ``name`` that also records, for every update, the global gradient norm before clipping
    and whether clipping changed the gradient (Keras' ``clipnorm`` clips each variable's gradient to that norm);
    `GradientNormLog` reads and resets the record each epoch. Works inside the jitted JAX and the TensorFlow
    train steps: the record lives in optimizer variables, which both backends carry as optimizer state."""
    base = type(keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}}))
    if base not in _TRACKED:
        _TRACKED[base] = type(f"GradientNormTracked{base.__name__}", (_GradientNormTracking, base), {})
    return _TRACKED[base](learning_rate=learning_rate, clipnorm=clipnorm or None)


class _GradientNormTracking:
    """Mixin placed before a Keras optimizer class (see `tracked_optimizer`)."""

    def build(self, variables: list) -> None:
        super().build(variables)  # type: ignore[misc]
        add = self.add_variable  # type: ignore[attr-defined]
        self.grad_norm_record = [
            add((), initializer="zeros", dtype="float32", name=n, aggregation="none")
            for n in ("grad_norm_sum", "grad_norm_max", "clip_fired", "updates")
        ]

    def _clip_gradients(self, grads: list) -> list:
        ops = keras.ops
        present = [ops.cast(g, "float32") for g in grads if g is not None]
        squares = [ops.sum(ops.square(g)) for g in present]
        norm = ops.sqrt(sum(squares[1:], squares[0]))
        fired = ops.zeros((), "float32")
        if self.clipnorm:  # type: ignore[attr-defined]
            largest = ops.max(ops.stack([ops.sqrt(s) for s in squares]))
            fired = ops.cast(largest > self.clipnorm, "float32")  # type: ignore[attr-defined]
        total, peak, clipped, updates = self.grad_norm_record
        total.assign(total + norm)
        peak.assign(ops.maximum(peak, norm))
        clipped.assign(clipped + fired)
        updates.assign(updates + 1.0)
        return super()._clip_gradients(grads)  # type: ignore[misc]


class GradientNormLog(keras.callbacks.Callback):
    """Adds ``grad_norm_mean``, ``grad_norm_max`` and ``clip_fraction`` (share of updates where clipping fired)
    to each epoch's logs, from a `tracked_optimizer`, so Keras' History (and history.json) keeps them."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = getattr(self.model.optimizer, "grad_norm_record", None)
        if record is None or logs is None:
            return
        total, peak, clipped, updates = (float(keras.ops.convert_to_numpy(v)) for v in record)
        if updates:
            logs.update(grad_norm_mean=total / updates, grad_norm_max=peak, clip_fraction=clipped / updates)
        for v in record:
            v.assign(keras.ops.zeros((), "float32"))
