"""The one recurrent-stack builder: every model in the zoo is made here.

A model is a linear chain ``Input -> Normalization -> [recurrent layer] x layers -> Dropout -> head``. Keeping
it a chain of standard Keras layers is what lets `zoo.step` read the weights and step it one reading at a
time, and lets `.keras` files load with `safe_mode=True` on either backend.
"""

from __future__ import annotations

import numpy as np

from zoo.architecture import HEADS, Architecture
from zoo.backend import keras

__all__ = ["CELLS", "HEADS", "Architecture", "build_model", "build_seq2seq", "is_causal"]

CELLS = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def build_model(
    arch: Architecture,
    head: str,
    n_features: int,
    n_outputs: int,
    norm_mean: np.ndarray,
    norm_var: np.ndarray,
    sequence_length: int | None = None,
    name: str = "rnn",
) -> keras.Model:
    """Build a recurrent model with its input normalisation inside it.

    Args:
        arch: the recurrent stack.
        head: one of ``HEADS``. ``step_*`` heads emit one output per time step and are causal when
            ``arch.bidirectional`` is false; ``sequence_classification`` emits one output per sequence.
        n_features: values per time step, or the vocabulary size when ``arch.embedding`` > 0.
        n_outputs: classes (classification) or predicted values per step (regression).
        norm_mean, norm_var: per-feature statistics of the training inputs, frozen into a ``Normalization``.
        sequence_length: fixed length, or None to accept any length (needed for streaming).
        name: the Keras model name.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")
    if arch.embedding:
        # Token ids in, right-padded with 0; the mask keeps padding out of the recurrences (both directions).
        inputs = keras.Input(shape=(sequence_length,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(n_features, arch.embedding, mask_zero=True, name="embed")(inputs)
    else:
        inputs = keras.Input(shape=(sequence_length, n_features), name="readings")
        x = keras.layers.Normalization(
            axis=-1,
            mean=np.asarray(norm_mean, "float32"),
            variance=np.asarray(norm_var, "float32"),
            name="normalize",
        )(inputs)
    for i in range(arch.layers):
        last = i == arch.layers - 1
        rnn = CELLS[arch.cell](
            arch.units,
            return_sequences=not (last and head == "sequence_classification"),
            dropout=arch.dropout,
            recurrent_dropout=arch.recurrent_dropout,
            name=f"{arch.cell}_{i}",
        )
        x = keras.layers.Bidirectional(rnn, name=f"bi_{arch.cell}_{i}")(x) if arch.bidirectional else rnn(x)
    if arch.dropout:
        x = keras.layers.Dropout(arch.dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_outputs, activation=HEADS[head], name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def is_causal(model: keras.Model) -> bool:
    """True when every output step depends only on the inputs up to that step."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            return False
        if isinstance(layer, keras.layers.RNN) and not layer.return_sequences:
            return False
    return True


# A declared extension of the one builder, for the task whose model is not one recurrent chain.
def build_seq2seq(
    n_source: int,
    n_target: int,
    cell: str = "gru",
    units: int = 128,
    embedding: int = 128,
    bidirectional: bool = True,
    dropout: float = 0.0,
    name: str = "seq2seq",
) -> keras.Model:
    """Encoder (GRU, LSTM or SimpleRNN, optionally bidirectional) -> GRU decoder with Luong dot-product attention.

    Inputs ``source [N, S]`` and ``target_in [N, T]`` (ids, 0-padded, masked); output ``[N, T, n_target]``
    probabilities of the next target token. The decoder's width is the encoder's output width (2 x units when
    bidirectional), so its states can be scored directly against the encoder outputs."""

    cells = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM, "simple": keras.layers.SimpleRNN}
    if cell not in cells:
        raise ValueError(f"the encoder cell must be gru, lstm or simple (got {cell!r})")
    width = units * (2 if bidirectional else 1)
    src = keras.Input(shape=(None,), dtype="int32", name="source")
    tgt = keras.Input(shape=(None,), dtype="int32", name="target_in")
    x = keras.layers.Embedding(n_source, embedding, mask_zero=True, name="src_embed")(src)
    rnn = cells[cell](units, return_sequences=True, return_state=True, dropout=dropout, name=f"enc_{cell}")
    if bidirectional:
        outs = keras.layers.Bidirectional(rnn, name=f"enc_bi{cell}")(x)
        enc, states = outs[0], outs[1:]
        # LSTM returns (h, c) per direction; the decoder starts from the hidden states h only.
        states = [states[0], states[2]] if cell == "lstm" else states
        last = keras.layers.Concatenate(name="enc_last")(states)
    else:
        outs = rnn(x)
        enc, last = outs[0], outs[1]
    init = keras.layers.Dense(width, activation="tanh", name="dec_init")(last)
    y = keras.layers.Embedding(n_target, embedding, mask_zero=True, name="tgt_embed")(tgt)
    dec, _ = keras.layers.GRU(
        width, return_sequences=True, return_state=True, dropout=dropout, name="dec_gru"
    )(y, initial_state=init)
    context = keras.layers.Attention(name="attention")([dec, enc])  # Luong dot score, source padding masked
    h = keras.layers.Concatenate(name="dec_concat")([dec, context])
    h = keras.layers.Dense(width, activation="tanh", name="attn_out")(h)
    if dropout:
        h = keras.layers.Dropout(dropout, name="head_dropout")(h)
    out = keras.layers.Dense(n_target, activation="softmax", name="head")(h)
    return keras.Model([src, tgt], out, name=name)
