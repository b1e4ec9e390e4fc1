"""Several models trained alike from different seeds, kept together as one Keras model.

Why: one training run is a draw. The recipe of ``digits-ctc-bigru`` trained from three seeds measures, on the
validation persons, mean sequence errors of 0.141, 0.224 and 0.208; the transcript the three agree on
(`zoo.speech.vote_transcripts`) scores 0.139 — as good as the best draw without having to be lucky.
The members' outputs are stacked on a new axis 1 (``[N, members, ...]``) and the consumer combines them
(`zoo.speech.ctc_decode` decodes each member and votes). Averaging the outputs inside the graph is what this
module deliberately does not do: CTC models trained apart fire their label spikes a frame or so apart, and
averaged frames go to the blank (two seeds averaged: validation sequence error 0.681 / 0.790 against 0.109-0.257
alone; `scripts/speech_validation.py --combine average`).
"""

from __future__ import annotations

from collections.abc import Sequence

from zoo.backend import keras

AXIS = 1  # where the members sit in the stacked output


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``model`` after its input, each fed by the one before: what `stack_members` can copy."""
    layers = model.layers[1:]
    previous = model.layers[0].output
    for layer in layers:
        if layer.input is not previous:
            raise ValueError(
                f"{model.name}: layer {layer.name} is not fed by the layer before it (not a chain)"
            )
        previous = layer.output
    return layers


def stack_members(members: Sequence[keras.Model], name: str) -> keras.Model:
    """One model reading what each member reads and answering every member's output, stacked on axis 1.

    The members must be chains of layers (as `zoo.builder.build_model` makes them) with the same input and
    output shapes. Their layers are copied, weights and all, under the prefix ``m<i>_`` into one flat graph of
    built-in Keras layers, so the file loads in ``safe_mode`` on any backend and exports like any other model.
    """
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    first = members[0]
    shapes = {(tuple(m.input_shape), tuple(m.output_shape)) for m in members}
    if len(shapes) > 1:
        raise ValueError(f"members differ in input or output shape: {sorted(shapes, key=str)}")
    out_shape = first.output_shape[1:]
    if sum(d is None for d in out_shape) > 1:
        raise ValueError(f"output shape {first.output_shape}: at most one unknown dimension can be stacked")
    inputs = keras.Input(shape=first.input_shape[1:], dtype=first.inputs[0].dtype, name=first.layers[0].name)
    outputs = []
    for i, member in enumerate(members):
        x = inputs
        for layer in _chain(member):
            copy = layer.__class__.from_config({**layer.get_config(), "name": f"m{i}_{layer.name}"})
            x = copy(x)
            copy.set_weights(layer.get_weights())
        # [N, ...] -> [N, 1, ...]; -1 stands for the one unknown dimension (e.g. time)
        outputs.append(
            keras.layers.Reshape((1, *(-1 if d is None else d for d in out_shape)), name=f"m{i}")(x)
        )
    stacked = keras.layers.Concatenate(axis=AXIS, name="members")(outputs)
    return keras.Model(inputs, stacked, name=name)
