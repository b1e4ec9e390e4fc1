"""What a recurrent stack is made of — the architecture choices and the output heads — as plain data.

Kept apart from `zoo.builder` (which turns them into Keras layers) so that the registry, the cards and the
CLI's `list` / `info` can be read without importing Keras or TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

Cell = Literal["simple", "lstm", "gru"]
CELL_NAMES: tuple[str, ...] = get_args(Cell)
# Head -> activation of the output layer. ``step_*`` heads answer at every time step.
HEADS = {
    "sequence_classification": "softmax",
    "step_classification": "softmax",
    "step_regression": "linear",
    "step_multilabel": "sigmoid",  # independent yes/no per output (e.g. which piano keys sound)
    # Per-step log-probabilities over labels + a blank (index 0), for CTC training and decoding.
    "ctc": "log_softmax",
}
# Every head a model can have: those above, and ``seq2seq``, the attention encoder-decoder of
# `zoo.builder.build_seq2seq` (a graph of its own, with no head from the table above).
MODEL_HEADS = frozenset(HEADS) | {"seq2seq"}


@dataclass(frozen=True)
class Architecture:
    """The choices that make a recurrent stack.

    Args:
        cell: ``"simple"``, ``"lstm"`` or ``"gru"``.
        units: width of every recurrent layer.
        layers: how many recurrent layers are stacked.
        bidirectional: read each sequence both ways (not streamable step by step).
        dropout: dropout on each recurrent layer's inputs and before the head.
        recurrent_dropout: dropout on the recurrent state (disables the fused cuDNN kernel).
        embedding: width of a learned token embedding in front of the stack; 0 (the default) means the
            inputs are real-valued readings. With an embedding the inputs are token ids (0 = padding, masked,
            which disables the fused cuDNN kernel on the GPU) and ``n_features`` is the vocabulary size.
    """

    cell: Cell = "gru"
    units: int = 64
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    embedding: int = 0

    def __post_init__(self) -> None:
        if self.cell not in CELL_NAMES:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELL_NAMES)}")
        if self.units < 1 or self.layers < 1:
            raise ValueError("units and layers must be at least 1")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.recurrent_dropout < 1.0):
            raise ValueError("dropout and recurrent_dropout must lie in [0, 1)")
        if self.embedding < 0:
            raise ValueError("embedding must be 0 (no embedding) or a positive width")

    def to_dict(self) -> dict:
        return asdict(self)
