"""Text helpers: tokenizers saved beside a model, step-by-step generation, and text classification.

Tokenizers are plain data (a JSON asset in the model folder, its sha256 on the card), so a loaded model keeps the
exact vocabulary it was trained with. Generation runs the language model one character at a time with explicit
recurrent state through `zoo.step.StepModel` (numpy, exact to Keras): a generated character is fed back as
the next reading.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from zoo.step import StepModel

MAX_PROMPT_CHARS = 20_000
MAX_GENERATE_CHARS = 100_000


class CharVocab:
    """A fixed character alphabet: character <-> id, and one-hot rows for the model's input."""

    kind = "chars"

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("a character vocabulary needs distinct single characters")
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str) -> CharVocab:
        """Every character of ``text``, in code-point order."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text``'s characters; a character outside the alphabet is a ValueError naming it."""
        try:
            return np.fromiter((self.index[c] for c in text), dtype="int32", count=len(text))
        except KeyError:
            unknown = sorted({c for c in text if c not in self.index})
            shown = ", ".join(repr(c) for c in unknown[:8]) + (" …" if len(unknown) > 8 else "")
            raise ValueError(
                f"{len(unknown)} character(s) outside the model's alphabet: {shown} "
                f"(it knows {len(self)}: {''.join(c for c in self.chars if c != chr(10))!r} and newline)"
            ) from None

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def one_hot(self, ids: np.ndarray) -> np.ndarray:
        """``ids [...]`` -> float32 ``[..., V]``: the language model's input readings."""
        return np.eye(len(self), dtype="float32")[np.asarray(ids)]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


# URLs and @mentions carry no sentiment of their own but are everywhere in tweets: one token each keeps the
# vocabulary for words. Hashtags split into '#' + word so "#fail" shares the embedding of "fail".
_URL = re.compile(r"https?://\S+|www\.\S+")
_USER = re.compile(r"@\w+")
# A run of symbols stays one token, so emoticons (":(", ":-)") and "!!!" keep their meaning.
_TOKEN = re.compile(r"<url>|<user>|[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9#]+|#")


def fit_vocabulary(token_lists: Iterable[Sequence[str]], min_count: int, max_size: int) -> list[str]:
    """Tokens seen at least ``min_count`` times, most frequent first (ties A–Z), at most ``max_size``: the one
    vocabulary rule of the word tokenizer (sentiment) and of the translation vocabularies."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    return kept[:max_size]


def pad_ids(
    encoded: Sequence[Sequence[int]],
    texts: Sequence[str],
    max_length: int,
    noun: str,
    trained_on: str,
    width: int | None = None,
    check: bool = True,
) -> np.ndarray:
    """Right-padded ids ``[N, width]`` (default: the longest); with ``check`` an empty or over-long text raises
    one sentence naming it (``noun`` 1-based), instead of being silently cut."""
    if check:
        for i, (text, ids) in enumerate(zip(texts, encoded, strict=True), 1):
            if not ids:
                raise ValueError(f"{noun} {i} ({text!r}) is empty: give at least one word")
            if len(ids) > max_length:
                raise ValueError(
                    f"{noun} {i} has {len(ids)} tokens; the model reads at most {max_length} "
                    f"(it was trained on {trained_on}): split it"
                )
    width = width or max(1, max((len(ids) for ids in encoded), default=1))
    out = np.zeros((len(encoded), width), dtype="int32")
    for row, ids in zip(out, encoded, strict=True):
        ids = ids[:width]
        row[: len(ids)] = ids
    return out


class WordTokenizer:
    """Lower-cased word tokens with a frequency-cut vocabulary; id 0 pads, id 1 is any unknown word.

    Args:
        tokens: the vocabulary, ids 2… in order (``<pad>`` and ``<unk>`` come first and are not listed).
        max_length: longest token sequence accepted (longer texts are refused, not silently cut).
    """

    kind = "words"
    PAD, UNK = 0, 1

    def __init__(self, tokens: Sequence[str], max_length: int = 100):
        self.tokens = ["<pad>", "<unk>", *tokens]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.max_length = int(max_length)

    @staticmethod
    def split(text: str) -> list[str]:
        """Text -> tokens: lower case, URLs -> ``<url>``, @mentions -> ``<user>``, words, symbol runs."""
        text = _USER.sub(" <user> ", _URL.sub(" <url> ", html.unescape(text).lower()))
        return _TOKEN.findall(text)

    @classmethod
    def fit(
        cls, texts: Sequence[str], min_count: int = 2, max_size: int = 20_000, max_length: int = 100
    ) -> WordTokenizer:
        """Keep tokens seen at least ``min_count`` times in ``texts`` (most frequent first, ties A–Z)."""
        return cls(
            fit_vocabulary((cls.split(t) for t in texts), min_count, max_size - 2), max_length=max_length
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(t, self.UNK) for t in self.split(text)]

    def encode_batch(self, texts: Sequence[str], check: bool = True) -> np.ndarray:
        """Right-padded ids ``[N, L]`` (L = longest text); with ``check``, empty or over-long texts raise."""
        encoded = [self.encode(t) for t in texts]
        return pad_ids(encoded, texts, self.max_length, "text", "tweets", check=check)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_length": self.max_length, "tokens": self.tokens[2:]}


def _is_punctuation(ch: str) -> bool:
    """BERT's punctuation: every ASCII non-letter, non-digit symbol, and Unicode category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def bert_words(text: str) -> list[str]:
    """BERT's uncased basic tokenization (as ``BertNormalizer`` + ``BertPreTokenizer`` of all-MiniLM-L6-v2):
    control characters dropped, whitespace unified, CJK ideographs split apart, lower case, accents stripped
    (NFD, combining marks removed), then split on whitespace and around every punctuation character."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            chars.append(" ")
        elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
            continue
        elif _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    text = unicodedata.normalize("NFD", "".join(chars).lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    words: list[str] = []
    for chunk in text.split():
        start = 0
        for i, ch in enumerate(chunk):
            if _is_punctuation(ch):
                if i > start:
                    words.append(chunk[start:i])
                words.append(ch)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


class WordPieceTokenizer:
    """BERT word pieces (greedy longest match first, continuations prefixed ``##``) over a fixed vocabulary.

    Pure Python, equal to the ``tokenizers`` library's BERT pipeline on the same vocabulary (no
    ``[CLS]`` / ``[SEP]``: the recurrent model reads the text's pieces only). Before it, tweet markup is
    rewritten: HTML entities decoded, URLs replaced by ``link`` and @mentions by ``user`` (each a string of
    the vocabulary, or None to keep the original text).

    Args:
        pieces: the vocabulary in id order; ``pieces[0]`` pads (``[PAD]``) and ``unk`` must be in it.
        max_length: longest piece sequence accepted (longer texts are refused, not silently cut).
        unk: the piece of a word the vocabulary cannot spell.
        url, user: replacements of URLs and @mentions.
    """

    kind = "wordpiece"
    PAD = 0
    MAX_WORD_CHARS = 100  # a longer "word" is one unknown piece (as BERT's tokenizer does)

    def __init__(
        self,
        pieces: Sequence[str],
        max_length: int = 128,
        unk: str = "[UNK]",
        url: str | None = "link",
        user: str | None = "user",
    ):
        self.tokens = list(pieces)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if unk not in self.index:
            raise ValueError(f"the unknown piece {unk!r} is not in the vocabulary")
        self.unk, self.UNK = unk, self.index[unk]
        self.url, self.user = url, user
        self.max_length = int(max_length)
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def words(self, text: str) -> list[str]:
        """Text -> BERT basic tokens, after the tweet markup is rewritten."""
        text = html.unescape(text)
        if self.url is not None:
            text = _URL.sub(f" {self.url} ", text)
        if self.user is not None:
            text = _USER.sub(f" {self.user} ", text)
        return bert_words(text)

    def word_ids(self, word: str) -> list[int]:
        """One basic token -> its piece ids (one unknown id if the vocabulary cannot spell all of it)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids: list[int] = []
        start = 0 if len(word) <= self.MAX_WORD_CHARS else len(word) + 1  # too long: one unknown piece
        while start < len(word):
            end, found = len(word), None
            while start < end:
                found = self.index.get(word[start:end] if start == 0 else "##" + word[start:end])
                if found is not None:
                    break
                end -= 1
            if found is None:
                break
            ids.append(found)
            start = end
        if start != len(word):
            ids = [self.UNK]
        self._cache[word] = ids
        return ids

    def split(self, text: str) -> list[str]:
        """Text -> its word pieces (strings)."""
        return [self.tokens[i] for i in self.encode(text)]

    def encode(self, text: str) -> list[int]:
        return [i for word in self.words(text) for i in self.word_ids(word)]

    def encode_batch(self, texts: Sequence[str], check: bool = True) -> np.ndarray:
        """Right-padded ids ``[N, L]`` (L = longest text); with ``check``, empty or over-long texts raise."""
        encoded = [self.encode(t) for t in texts]
        return pad_ids(encoded, texts, self.max_length, "text", "tweets", check=check)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "max_length": self.max_length,
            "unk": self.unk,
            "url": self.url,
            "user": self.user,
            "pieces": self.tokens,
        }


Tokenizer = CharVocab | WordTokenizer | WordPieceTokenizer


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """Rebuild a tokenizer from its JSON asset."""
    if data.get("kind") == "chars":
        return CharVocab(data["chars"])
    if data.get("kind") == "words":
        return WordTokenizer(data["tokens"], max_length=data["max_length"])
    if data.get("kind") == "wordpiece":
        return WordPieceTokenizer(
            data["pieces"], max_length=data["max_length"], unk=data["unk"], url=data["url"], user=data["user"]
        )
    raise ValueError(f"unknown tokenizer kind {data.get('kind')!r}")


# The file a text model's tokenizer ships in, beside model.keras (its sha256 on the card).
TOKENIZER_FILE = "vocab.json"


def load_tokenizer(path: Path) -> Tokenizer:
    return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------------------------
# Generation


def next_char_distribution(probs: np.ndarray, temperature: float, top_k: int) -> np.ndarray:
    """Re-shape the model's next-character probabilities: sharpen/flatten by ``temperature`` and keep the
    ``top_k`` most likely (0 keeps all). Temperature 0 puts all mass on the most likely character (greedy)."""
    p = np.asarray(probs, dtype="float64")
    if temperature <= 0:
        out = np.zeros_like(p)
        out[int(p.argmax())] = 1.0
        return out
    logits = np.log(np.maximum(p, 1e-300)) / temperature
    if 0 < top_k < len(p):
        cut = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cut, logits, -np.inf)
    logits -= logits.max()
    out = np.exp(logits)
    return out / out.sum()


def validate_generation(vocab: CharVocab, prompt: str, length: int, temperature: float, top_k: int) -> None:
    """Refuse bad requests with one clear sentence (ValueError) before any work is done."""
    if not prompt:
        raise ValueError(
            "the prompt is empty: give at least one character to start from, e.g. --prompt 'And '"
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,} are read")
    if not 1 <= length <= MAX_GENERATE_CHARS:
        raise ValueError(f"length must be between 1 and {MAX_GENERATE_CHARS:,} characters (got {length})")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (got {temperature}); 0 means greedy")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (got {top_k}); 0 keeps every character")
    vocab.encode(prompt)  # characters outside the alphabet raise here


def generate_text(
    stepper: StepModel,
    vocab: CharVocab,
    prompt: str,
    length: int = 300,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    return_probs: bool = False,
) -> str | tuple[str, np.ndarray]:
    """Continue ``prompt`` by ``length`` characters, one step at a time with explicit recurrent state
    (``stepper``: the model's `zoo.step.StepModel`, e.g. ``zoo.predictor(name).stepper``).

    The prompt is read first (one step per character, from zero state); each sampled character is then fed
    back as the next input. The same ``seed`` gives the same text. With ``return_probs`` the model's
    next-character probabilities at every step (``[len(prompt) + length - 1, V]``) come back too, for checks
    against the Keras model run on the whole sequence.
    """
    validate_generation(vocab, prompt, length, temperature, top_k)
    rng = np.random.default_rng(seed)
    eye = np.eye(len(vocab), dtype="float32")
    state = stepper.initial_state(1)
    probs_seen: list[np.ndarray] = []
    for i in vocab.encode(prompt):
        y, state = stepper.step(eye[i][None], state)
        probs_seen.append(y[0])
    out: list[int] = []
    for n in range(length):
        p = next_char_distribution(probs_seen[-1], temperature, top_k)
        c = int(rng.choice(len(p), p=p)) if temperature > 0 else int(p.argmax())
        out.append(c)
        if n < length - 1:  # the last character needs no further step
            y, state = stepper.step(eye[c][None], state)
            probs_seen.append(y[0])
    text = vocab.decode(out)
    return (text, np.stack(probs_seen)) if return_probs else text


# ------------------------------------------------------------------------------------------------------------
# Classification


def classify(
    model: object,
    tokenizer: WordTokenizer | WordPieceTokenizer,
    class_names: Sequence[str],
    texts: Sequence[str],
) -> list[dict]:
    """Label each text: ``[{"text", "label", "probabilities": {class: p}}]``; bad texts raise ValueError."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise ValueError("no text given: pass at least one text to classify")
    ids = tokenizer.encode_batch(list(texts))
    probs = np.asarray(model.predict(ids, verbose=0), dtype="float64")
    return [
        {
            "text": text,
            "label": class_names[int(p.argmax())],
            "probabilities": {c: round(float(q), 4) for c, q in zip(class_names, p, strict=True)},
        }
        for text, p in zip(texts, probs, strict=True)
    ]
