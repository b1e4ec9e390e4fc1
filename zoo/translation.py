"""Sequence-to-sequence translation: word tokenizer with joiners, the attention encoder-decoder, greedy and beam
decoding.

Tokens are words (``\\w+`` runs), format placeholders (``%s``, ``%1$d``, ``{0}``) and single punctuation marks.
A punctuation or placeholder token carries a joiner ``￭`` on the side where it touched its neighbour without a
space, so detokenizing (join with spaces, drop the spaces next to joiners) gives the text back exactly (up to
runs of white space).

The model (one Keras graph, standard layers only, saved as ``.keras`` and loaded with ``safe_mode``) reads the
source ids and the target ids shifted right (teacher forcing) and emits the next target token at every step.
Decoding reuses its layers: an encoder model runs once per sentence, then a one-step decoder model advances the
GRU state token by token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from zoo import loaders
from zoo.text import fit_vocabulary, pad_ids

if TYPE_CHECKING:
    from zoo.backend import keras

JOINER = "\uffed"  # ￭
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
MAX_SOURCE_TOKENS = 40
_PLACEHOLDER = (
    r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64)?[diouxXeEfFgGaAcspn%]"
)
_TOKEN = re.compile(rf"{_PLACEHOLDER}|\{{\w*\}}|\w+|[^\w\s]")


def split(text: str) -> list[str]:
    """Text -> tokens with joiners on the punctuation and placeholders that touch a neighbour."""
    matches = list(_TOKEN.finditer(text))
    out = []
    for i, m in enumerate(matches):
        tok = m.group()
        if not re.fullmatch(r"\w+", tok):
            if i > 0 and matches[i - 1].end() == m.start():
                tok = JOINER + tok
            if i + 1 < len(matches) and matches[i + 1].start() == m.end():
                tok = tok + JOINER
        out.append(tok)
    return out


def join(tokens: Sequence[str]) -> str:
    """Tokens -> text (the inverse of ``split``)."""
    text = " ".join(tokens)
    return (
        text.replace(f"{JOINER} {JOINER}", "")
        .replace(f" {JOINER}", "")
        .replace(f"{JOINER} ", "")
        .replace(JOINER, "")
    )


class Vocab:
    """One language's tokens; ids 0-3 are padding, unknown, start and end of sentence."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = [*SPECIALS, *tokens]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, texts: Sequence[str], min_count: int = 2, max_size: int = 6000) -> Vocab:
        return cls(fit_vocabulary((split(t) for t in texts), min_count, max_size - len(SPECIALS)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(t, UNK) for t in split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        words = []
        for i in ids:
            if int(i) == EOS:
                break
            if int(i) >= len(SPECIALS) or int(i) == UNK:
                words.append(self.tokens[int(i)])
        return join(words)


class Translator:
    """A trained model with its two vocabularies: encode, decode (greedy or beam), detokenize."""

    def __init__(self, model: keras.Model, source: Vocab, target: Vocab, max_target: int):
        self.model, self.source, self.target, self.max_target = model, source, target, max_target
        self._encoder, self._step = decoding_models(model)

    @classmethod
    def from_dict(cls, model: keras.Model, data: dict) -> Translator:
        return cls(model, Vocab(data["source"]), Vocab(data["target"]), int(data["max_target_tokens"]))

    def to_dict(self) -> dict:
        return vocab_dict(self.source, self.target, self.max_target)

    def encode_sources(self, sentences: Sequence[str], check: bool = True) -> np.ndarray:
        encoded = [self.source.encode(s) for s in sentences]
        # One padded width for every batch: one compiled graph.
        return pad_ids(
            encoded,
            sentences,
            MAX_SOURCE_TOKENS,
            "sentence",
            "short software messages",
            MAX_SOURCE_TOKENS,
            check,
        )

    def translate(self, sentences: Sequence[str], beam: int = 1, batch_size: int = 256) -> list[str]:
        if beam < 1:
            raise ValueError(f"beam width must be at least 1 (got {beam})")
        src = self.encode_sources(sentences)
        return [self.target.decode(ids) for ids in self.decode_ids(src, beam, batch_size)]

    def decode_ids(self, src: np.ndarray, beam: int = 1, batch_size: int = 256) -> list[list[int]]:
        out: list[list[int]] = []
        for lo in range(0, len(src), batch_size):
            chunk = src[lo : lo + batch_size]
            enc, state = (np.asarray(a) for a in self._encoder(chunk, training=False))
            if beam == 1:
                out += greedy(self._step, chunk, enc, state, self.max_target)
            else:
                out += beam_search(self._step, chunk, enc, state, self.max_target, beam)
        return out


def vocab_dict(source: Vocab, target: Vocab, max_target: int) -> dict:
    return {
        "kind": "translation",
        "max_source_tokens": MAX_SOURCE_TOKENS,
        "max_target_tokens": max_target,
        "source": source.tokens[len(SPECIALS) :],
        "target": target.tokens[len(SPECIALS) :],
    }


# ------------------------------------------------------------------------------------------------------------
# Model


def decoding_models(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """From a trained seq2seq model: ``encoder(source) -> (enc_outputs, init_state)`` and
    ``step([prev_token, state, enc_outputs, source]) -> (probabilities, new_state)``, sharing its weights."""
    from zoo.backend import keras

    width = model.get_layer("dec_init").units
    enc_width = model.get_layer("attn_out").input.shape[-1] - width
    encoder = keras.Model(
        model.inputs[0], [model.get_layer("attention").input[1], model.get_layer("dec_init").output]
    )
    prev = keras.Input(shape=(1,), dtype="int32")
    state = keras.Input(shape=(width,))
    enc = keras.Input(shape=(None, enc_width))
    src = keras.Input(shape=(None,), dtype="int32")
    y = model.get_layer("tgt_embed")(prev)
    dec, new_state = model.get_layer("dec_gru")(y, initial_state=state)
    context = model.get_layer("attention")([dec, enc], mask=[None, keras.ops.not_equal(src, PAD)])
    h = model.get_layer("attn_out")(model.get_layer("dec_concat")([dec, context]))
    probs = model.get_layer("head")(h)
    step = keras.Model([prev, state, enc, src], [probs[:, 0], new_state])
    return encoder, step


def greedy(step: keras.Model, src: np.ndarray, enc: np.ndarray, state: np.ndarray, max_len: int) -> list:
    """The most likely token at every step, until every sentence has ended (or ``max_len`` tokens)."""
    n = len(src)
    prev = np.full((n, 1), BOS, "int32")
    tokens = np.zeros((n, 0), "int32")
    done = np.zeros(n, bool)
    for _ in range(max_len):
        probs, state = (np.asarray(a) for a in step([prev, state, enc, src], training=False))
        nxt = probs.argmax(-1).astype("int32")
        nxt[done] = EOS
        tokens = np.concatenate([tokens, nxt[:, None]], 1)
        done |= nxt == EOS
        prev = nxt[:, None]
        if done.all():
            break
    return [_until_eos(row) for row in tokens]


def beam_search(
    step: keras.Model, src: np.ndarray, enc: np.ndarray, state: np.ndarray, max_len: int, width: int
) -> list:
    """Beam search, ``width`` hypotheses per sentence, all sentences in one batch. Hypotheses grow by summed
    log-probability; the final pick divides each finished hypothesis' score by its length (with </s>)."""
    n, k = len(src), width
    enc, src, state = (np.repeat(a, k, axis=0) for a in (enc, src, state))
    scores = np.full((n, k), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    tokens = np.zeros((n, k, 0), "int32")
    done = np.zeros((n, k), bool)
    prev = np.full((n * k, 1), BOS, "int32")
    rows = np.arange(n)[:, None]
    for _ in range(max_len):
        probs, state = (np.asarray(a) for a in step([prev, state, enc, src], training=False))
        logp = np.log(np.maximum(probs, 1e-12)).reshape(n, k, -1)
        v = logp.shape[-1]
        logp[done] = -np.inf
        logp[done, EOS] = 0.0  # a finished hypothesis only extends by </s>, at no cost
        cand = (scores[:, :, None] + logp).reshape(n, k * v)
        top = np.argsort(-cand, axis=1, kind="stable")[:, :k]
        beam, tok = top // v, (top % v).astype("int32")
        scores = np.take_along_axis(cand, top, 1)
        tokens = np.concatenate([tokens[rows, beam], tok[:, :, None]], 2)
        done = done[rows, beam] | (tok == EOS)
        state = state.reshape(n, k, -1)[rows, beam].reshape(n * k, -1)
        prev = tok.reshape(n * k, 1)
        if done.all():
            break
    lengths = np.array([[len(_until_eos(t)) + 1 for t in beams] for beams in tokens])
    best = np.argmax(np.where(np.isfinite(scores), scores / lengths, -np.inf), axis=1)
    return [_until_eos(tokens[i, best[i]]) for i in range(n)]


def _until_eos(ids: np.ndarray) -> list[int]:
    out = []
    for i in ids:
        if int(i) == EOS:
            break
        out.append(int(i))
    return out


# ------------------------------------------------------------------------------------------------------------
# Public entry points (`zoo.translate`)


def load_translator(name: str) -> Translator:
    """A shipped translation model with the vocabularies it was trained with (both sha256-checked)."""
    import json

    from zoo import cards
    from zoo.registry import Capability, require

    require(name, Capability.TRANSLATE)
    info = loaders.card(name)
    model = loaders.load(name)
    folder = cards.model_dir(name)
    path = cards.verify_assets(folder, info)[info.preprocessing.details["vocabulary_file"]]
    return Translator.from_dict(model, json.loads(path.read_text(encoding="utf-8")))


def translate(name: str, sentences: str | Sequence[str], beam: int = 1) -> list[str]:
    """Translate English sentences with a translation model (e.g. ``translate-en-fr-gru``): greedy decoding by
    default, beam search with ``beam`` > 1. Empty or over-long sentences raise ValueError with one sentence."""
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences:
        raise ValueError("no sentence to translate")
    if int(beam) < 1:
        raise ValueError(f"beam width must be at least 1 (got {beam})")
    return load_translator(name).translate(list(sentences), beam=int(beam))
