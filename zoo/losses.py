"""The loss (and the metric Keras reports) of each output head: the one table training and diagnostics share."""

from __future__ import annotations

from zoo.backend import keras


def summed_binary_crossentropy(y_true, y_pred):  # noqa: ANN001 (Keras loss signature)
    """Binary cross-entropy summed over outputs (e.g. the 88 keys), averaged over steps: the polyphonic-music
    benchmark's negative log-likelihood per frame."""
    y_pred = keras.ops.clip(y_pred, 1e-7, 1 - 1e-7)
    nll = -(y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred))
    return keras.ops.sum(nll, axis=-1)


# Head -> (loss, metric). Losses average over every time step where the head answers per step.
LOSSES = {
    "sequence_classification": ("sparse_categorical_crossentropy", "accuracy"),
    "step_classification": ("sparse_categorical_crossentropy", "accuracy"),
    "step_regression": ("mse", "mae"),
    "step_multilabel": (summed_binary_crossentropy, "binary_accuracy"),
    # CTC over the whole output sequence; labels [N, L] are 1-based and 0-padded (0 is the blank).
    # No per-batch metric: error rates need decoding, which the task does after training.
    "ctc": (keras.losses.ctc, None),
    # Encoder-decoder: next target token at every decoder step (teacher forcing); padding masked.
    "seq2seq": ("sparse_categorical_crossentropy", "accuracy"),
}
