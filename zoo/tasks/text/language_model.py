"""The character language model's task (the King James Bible): the next character at every step.

The text is cut into 20,000-character blocks; every 20th block (offset 10) is test, every 20th (offset 15)
validation, the rest training, so the held-out text is spread over the whole book rather than being its last
chapters. Training reads fixed windows of ``window`` characters and predicts the next character at every step
(truncated back-propagation through time); test bits per character are measured on each whole test block read
from zero state, as generation reads text. The baselines: unigram and interpolated Kneser–Ney n-gram models.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zoo.backend import keras
from zoo.data import text as text_data
from zoo.tasks.base import Prepared, Task
from zoo.text import TOKENIZER_FILE, CharVocab

# ------------------------------------------------------------------------------------------------------------
# Character n-gram baseline


class KneserNey:
    """Interpolated Kneser–Ney character n-gram model (one absolute discount per order, D = n1 / (n1 + 2 n2)).

    The highest order uses raw counts, lower orders continuation counts (how many different characters
    precede a context), the lowest order interpolates with the uniform distribution over the alphabet.
    """

    def __init__(self, text: str, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        counts: list[Counter] = [Counter() for _ in range(order + 1)]  # counts[k]: k-gram -> count
        counts[order] = Counter(text[i : i + order] for i in range(len(text) - order + 1))
        for k in range(order - 1, 0, -1):  # continuation counts from the types one order up
            counts[k] = Counter(gram[1:] for gram in counts[k + 1])
        self.counts = counts
        self.totals: list[dict] = [{} for _ in range(order + 1)]
        self.types: list[dict] = [{} for _ in range(order + 1)]
        self.discounts = [0.0] * (order + 1)
        for k in range(1, order + 1):
            totals: dict = defaultdict(int)
            types: dict = defaultdict(int)
            for gram, c in counts[k].items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.totals[k], self.types[k] = dict(totals), dict(types)
            freq = Counter(counts[k].values())
            n1, n2 = freq.get(1, 0), freq.get(2, 0)
            self.discounts[k] = n1 / (n1 + 2 * n2) if n1 + 2 * n2 else 0.5

    def prob(self, context: str, char: str) -> float:
        """P(char | the last order-1 characters of context)."""
        p = 1.0 / self.vocab_size
        context = context[-(self.order - 1) :] if self.order > 1 else ""
        for k in range(1, self.order + 1):
            if k - 1 > len(context):
                break
            h = context[len(context) - (k - 1) :] if k > 1 else ""
            total = self.totals[k].get(h)
            if not total:
                break  # an unseen context: keep the lower-order estimate
            d = self.discounts[k]
            c = self.counts[k].get(h + char, 0)
            p = max(c - d, 0.0) / total + d * self.types[k][h] / total * p
        return p

    def bits(self, block: str) -> float:
        """Total bits to encode ``block[1:]``, each character given the preceding ones of the block."""
        return -sum(
            math.log2(self.prob(block[max(0, i - self.order + 1) : i], block[i]))
            for i in range(1, len(block))
        )


# ------------------------------------------------------------------------------------------------------------
# Character language model


@dataclass(frozen=True)
class CharLMTask(Task):
    """Next-character prediction at every step (loss over every time step of fixed windows).

    Args:
        loader: returns the whole text.
        dataset: card description of the corpus.
        block: the text is split into blocks of this many characters for the train/validation/test split.
        window: training window length (truncated back-propagation through time).
        ngram_order: order of the Kneser–Ney baseline.
    """

    loader: Callable[[], str]
    dataset: dict
    block: int = 20_000
    window: int = 100
    ngram_order: int = 5
    kind: str = "generation"
    heads: tuple[str, ...] = ("step_classification",)

    def _split(self) -> tuple[str, list[str], list[str], list[str], CharVocab]:
        text = self.loader()
        n_blocks = len(text) // self.block
        blocks = [text[i * self.block : (i + 1) * self.block] for i in range(n_blocks)]
        test = [b for i, b in enumerate(blocks) if i % 20 == 10]
        val = [b for i, b in enumerate(blocks) if i % 20 == 15]
        train = [b for i, b in enumerate(blocks) if i % 20 not in (10, 15)] + [text[n_blocks * self.block :]]
        # The alphabet is the whole text's (62 characters): the script of the book is known in advance, and
        # a character first seen in the held-out part must still be encodable for the test to be complete.
        return text, train, val, test, CharVocab.fit(text)

    def _windows(self, vocab: CharVocab, blocks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Non-overlapping windows within each block: inputs one-hot ``[N, W, V]``, targets ids ``[N, W]``."""
        w = self.window
        xs, ys = [], []
        for b in blocks:
            ids = vocab.encode(b)
            n = (len(ids) - 1) // w
            xs.append(ids[: n * w].reshape(n, w))
            ys.append(ids[1 : n * w + 1].reshape(n, w))
        x, y = np.concatenate(xs), np.concatenate(ys)
        return vocab.one_hot(x), y

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Each test block as one sequence from zero state: inputs one-hot ``[B, L-1, V]``, next-character
        ids ``[B, L-1]``."""
        _, _, _, test, vocab = self._split()
        ids = np.stack([vocab.encode(b) for b in test])
        return vocab.one_hot(ids[:, :-1]), ids[:, 1:]

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        text, train, val, test, vocab = self._split()
        x_tr, y_tr = self._windows(vocab, train)
        x_va, y_va = self._windows(vocab, val)
        v = len(vocab)
        return Prepared(
            x_train=x_tr,
            y_train=y_tr,
            x_val=x_va,
            y_val=y_va,
            n_outputs=v,
            norm_mean=np.zeros(v, "float32"),
            norm_var=np.ones(v, "float32"),
            dataset={**self.dataset, "characters": len(text)},
            split={
                "how": f"blocks of {self.block:,} characters; block i is test when i % 20 == 10, validation "
                "when i % 20 == 15, training otherwise (plus the final partial block)",
                "train_characters": sum(map(len, train)),
                "validation_characters": sum(map(len, val)),
                "test_characters": sum(map(len, test)),
                "train_windows": len(x_tr),
                "validation_windows": len(x_va),
                "test_blocks": len(test),
            },
            preprocessing={
                "tokenizer_file": TOKENIZER_FILE,
                "tokenizer": "characters (one-hot input, one id per character)",
                "vocab_size": v,
                "n_features": v,
                "window": self.window,
                "training": f"non-overlapping windows of {self.window} characters inside each block; the loss "
                "is the cross-entropy of the next character at every step",
                "normalization": "identity (mean 0, variance 1): inputs are one-hot",
                "test": "each test block read from zero state as one sequence (as generation reads text)",
            },
            assets={TOKENIZER_FILE: vocab.to_dict()},
        )

    def evaluate(self, model: keras.Model, prepared: Prepared | None, head: str) -> dict:
        x, y = self.test_data()
        probs = np.asarray(model.predict(x, batch_size=len(x), verbose=0), dtype="float64")
        p_true = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
        bpc = float(-np.log2(np.maximum(p_true, 1e-12)).mean())
        return {
            "bits_per_character": round(bpc, 4),
            "perplexity": round(2.0**bpc, 4),
            "accuracy": round(float((probs.argmax(-1) == y).mean()), 4),
            "test_characters_predicted": int(y.size),
        }

    def compare(self, metrics: dict, baselines: dict) -> dict:
        """The model against the n-gram baseline, from the card's own numbers (lower bits are better)."""
        ref = f"kneser_ney_{self.ngram_order}gram"
        gap = round(metrics["bits_per_character"] - baselines[ref]["bits_per_character"], 4)
        verdict = (
            f"beats the {self.ngram_order}-gram by {-gap:.3f} bits per character"
            if gap < 0
            else f"does not beat the {self.ngram_order}-gram: {gap:.3f} bits per character worse"
        )
        return {"reference": ref, "bits_per_character_difference": gap, "verdict": verdict}

    def step_input(self, preprocessing: dict) -> str:
        return f"one character (one-hot over the {preprocessing['vocab_size']}-character vocabulary)"

    def baselines(self, prepared: Prepared | None) -> dict:
        _, train, _, test, vocab = self._split()
        v = len(vocab)
        n_pred = sum(len(b) - 1 for b in test)
        counts = Counter("".join(train))
        total = sum(counts.values())
        # Unigram with add-one smoothing over the alphabet.
        uni = -sum(math.log2((counts.get(c, 0) + 1) / (total + v)) for b in test for c in b[1:]) / n_pred
        # Blocks joined with a separator absent from the text, so no n-gram spans two blocks.
        kn = KneserNey("\x00".join(train), self.ngram_order, v)
        kn_bpc = sum(kn.bits(b) for b in test) / n_pred
        return {
            "unigram": {"bits_per_character": round(uni, 4), "perplexity": round(2**uni, 4)},
            f"kneser_ney_{self.ngram_order}gram": {
                "bits_per_character": round(kn_bpc, 4),
                "perplexity": round(2**kn_bpc, 4),
                "how": "interpolated Kneser–Ney, one discount per order (n1 / (n1 + 2 n2)), trained on the "
                "training blocks",
            },
        }


KJV_CHARS = CharLMTask(loader=text_data.kjv_text, dataset=text_data.KJV)
