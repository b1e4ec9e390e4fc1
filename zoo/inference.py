"""A loaded model with the parts inference needs, held side by side instead of hung on the Keras object.

`zoo.load(name)` returns the plain Keras model; `zoo.predictor(name)` returns a `Predictor`: that model, its
card, the tokenizer it was trained with (text models) and its numpy step engine (causal models; built on first
use, since reading the weights costs a few milliseconds). Generation, classification and keyword spotting
run on a Predictor, so a second call reuses its step engine without any cache keyed by object identity.

Example:
    >>> p = zoo.predictor("kjv-char-lstm")
    >>> generate_text(p.stepper, p.tokenizer, "And ", length=100, seed=1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

    from zoo.cards import Card
    from zoo.step import StepModel


@dataclass
class Predictor:
    """One shipped model ready for inference.

    Args:
        name: the zoo name.
        model: the Keras model (sha256-verified, loaded with ``safe_mode``).
        card: its model card.
        tokenizer: the vocabulary it was trained with (`zoo.text.CharVocab` / `WordTokenizer`), or None.
    """

    name: str
    model: keras.Model
    card: Card
    tokenizer: Any = None
    _stepper: StepModel | None = field(default=None, repr=False)

    @property
    def stepper(self) -> StepModel:
        """The model as an exact numpy step engine (`zoo.step.StepModel`), built once."""
        if self._stepper is None:
            from zoo.step import StepModel

            self._stepper = StepModel.from_keras(self.model)
        return self._stepper
