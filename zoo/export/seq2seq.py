"""Encoder-decoder (translation) graphs: the encoder, run once per batch of sentences, and one decoder step, run
once per target token — the two calls `zoo.translation.Translator` makes, as SavedModel, LiteRT and ONNX.

- ``encoder``: ``source`` int32 [B, S] (0-padded ids) -> ``encoder_outputs`` [B, S, E], ``decoder_state`` [B, U]
  (the decoder's initial state, ``dec_init`` of the last encoder states).
- ``decoder_step``: ``prev_token`` int32 [B], ``decoder_state`` [B, U], ``encoder_outputs`` [B, S, E],
  ``source`` int32 [B, S] (its padding masks the attention) -> ``log_probs`` [B, V] (``log(max(p, 1e-12))`` of
  the next-token distribution, what beam search sums) and ``decoder_state_out`` [B, U].

Both are Keras functions of the trained model's own layers, written by ``keras.export.ExportArchive``
(signature ``serve``, named inputs and outputs). LiteRT: builtin ops only, from a copy of the model with every
recurrent layer ``unroll=True`` and S fixed (the Translator's padded width, 40): no ``WHILE``, no Flex ops
(Keras's unrolled loop masks a backward layer's outputs with the mask in the wrong time order, so there the
padded steps' outputs are zeroed after the layer, as the loop does).
ONNX: ``tf2onnx`` (opset 17) from the SavedModels, any S.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zoo import loaders
from zoo.export.runtimes import GraphRuntime
from zoo.export.sequence import ONNX_OPSET, _set_unroll

GRAPHS = ("encoder", "decoder_step")
FILES = {
    "savedmodel": {"encoder": "encoder_savedmodel", "decoder_step": "decoder_step_savedmodel"},
    "litert": {"encoder": "encoder.tflite", "decoder_step": "decoder_step.tflite"},
    "onnx": {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"},
}
LOG_FLOOR = 1e-12


def is_encoder_decoder(model: Any) -> bool:
    """Whether ``model`` is a `zoo.builder.build_seq2seq` encoder-decoder."""
    names = {layer.name for layer in model.layers}
    return {"dec_init", "dec_gru", "attention", "head"} <= names


def _unrolled(model: Any, source_length: int) -> Any:
    """``model`` rebuilt with ``unroll=True`` recurrences, source length fixed, one target step, same weights."""
    import keras

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        _set_unroll(config)
        return layer.__class__.from_config(config)

    inputs = [keras.Input((source_length,), dtype="int32"), keras.Input((1,), dtype="int32")]
    copy = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    copy.set_weights(model.get_weights())
    for (
        layer
    ) in copy.layers:  # Keras's unrolled loop zeroes a backward layer's outputs with the mask unreversed
        if isinstance(layer, keras.layers.Bidirectional):
            layer.backward_layer.zero_output_for_mask = False  # padded steps: zeroed in `functions` instead
    return copy


def functions(model: Any) -> tuple[Any, Any]:
    """``(encoder, decoder_step)``: Keras functions of ``model``'s layers taking and returning dicts of tensors
    named as the exported graphs name them."""
    import keras

    from zoo.translation import PAD

    encoder = keras.Model(
        model.inputs[0], [model.get_layer("attention").input[1], model.get_layer("dec_init").output]
    )
    embed, gru, attention = (model.get_layer(n) for n in ("tgt_embed", "dec_gru", "attention"))
    concat, attn_out, head = (model.get_layer(n) for n in ("dec_concat", "attn_out", "head"))

    def encode(source: Any) -> dict[str, Any]:
        enc, state = encoder(source, training=False)
        valid = keras.ops.expand_dims(keras.ops.cast(keras.ops.not_equal(source, PAD), enc.dtype), -1)
        return {"encoder_outputs": enc * valid, "decoder_state": state}

    def step(prev_token: Any, decoder_state: Any, encoder_outputs: Any, source: Any) -> dict[str, Any]:
        y = embed(keras.ops.expand_dims(prev_token, 1))
        dec, new_state = gru(y, initial_state=decoder_state, training=False)
        mask = keras.ops.not_equal(source, PAD)
        context = attention([dec, encoder_outputs], mask=[None, mask])
        probs = head(attn_out(concat([dec, context])))[:, 0]
        log_probs = keras.ops.log(keras.ops.maximum(probs, LOG_FLOOR))
        return {"log_probs": log_probs, "decoder_state_out": new_state}

    return encode, step


def _save(model: Any, fn: Any, signature: list[Any], path: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=fn, input_signature=signature)
    archive.write_out(str(path), verbose=False)


def write_encoder_decoder(model: Any, fmt: str, folder: Path | str, source_length: int) -> dict[str, Path]:
    """Write ``model``'s encoder and decoder step in ``fmt`` into ``folder``; returns ``{graph: path}``.
    ``source_length``: the fixed S of the LiteRT graphs (the others take any S)."""
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {g: folder / FILES[fmt][g] for g in GRAPHS}
    length = source_length if fmt == "litert" else None
    source_model = _unrolled(model, source_length) if fmt == "litert" else model
    encode, step = functions(source_model)
    units = int(model.get_layer("dec_init").units)
    width = int(model.get_layer("attn_out").input.shape[-1]) - units
    spec = tf.TensorSpec
    signatures = {
        "encoder": [spec([None, length], tf.int32, name="source")],
        "decoder_step": [
            spec([None], tf.int32, name="prev_token"),
            spec([None, units], tf.float32, name="decoder_state"),
            spec([None, length, width], tf.float32, name="encoder_outputs"),
            spec([None, length], tf.int32, name="source"),
        ],
    }
    fns = {"encoder": encode, "decoder_step": step}
    with tempfile.TemporaryDirectory() as tmp:
        for graph in GRAPHS:
            path = paths[graph]
            if fmt == "savedmodel":
                _save(source_model, fns[graph], signatures[graph], path)
                continue
            saved = Path(tmp) / graph
            _save(source_model, fns[graph], signatures[graph], saved)
            if fmt == "litert":
                converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                path.write_bytes(converter.convert())
                continue
            cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--signature_def"]
            cmd += ["serve", "--output", str(path), "--opset", str(ONNX_OPSET)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not path.is_file():
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"tf2onnx failed on the {graph}: {tail}")
    return paths


def export_encoder_decoder(name: str, fmt: str, folder: Path | str) -> dict[str, Path]:
    """Shipped translation model ``name``'s encoder and decoder step in ``fmt``, into ``folder``."""
    from zoo.translation import MAX_SOURCE_TOKENS

    return write_encoder_decoder(loaders.load(name), fmt, folder, MAX_SOURCE_TOKENS)


def greedy(
    encoder: Any, step: Any, src: np.ndarray, max_len: int
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Greedy decoding driven by two exported graphs (as `zoo.translation.greedy`); returns the token ids per
    sentence and the log-probabilities of every step ([B, V] each)."""
    from zoo.translation import BOS, EOS, _until_eos

    src = np.asarray(src, np.int32)
    encoded = encoder(source=src)
    enc, state = encoded["encoder_outputs"], encoded["decoder_state"]
    n = len(src)
    prev = np.full(n, BOS, np.int32)
    tokens = np.zeros((n, 0), np.int32)
    done = np.zeros(n, bool)
    log_probs = []
    for _ in range(max_len):
        out = step(prev_token=prev, decoder_state=state, encoder_outputs=enc, source=src)
        state = out["decoder_state_out"]
        log_probs.append(out["log_probs"])
        nxt = out["log_probs"].argmax(-1).astype(np.int32)
        nxt[done] = EOS
        tokens = np.concatenate([tokens, nxt[:, None]], 1)
        done |= nxt == EOS
        prev = nxt
        if done.all():
            break
    return [_until_eos(row) for row in tokens], log_probs


__all__ = [
    "FILES",
    "GRAPHS",
    "GraphRuntime",
    "export_encoder_decoder",
    "functions",
    "greedy",
    "is_encoder_decoder",
    "write_encoder_decoder",
]
