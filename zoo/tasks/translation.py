"""Translation: English -> French software messages (gettext catalogs), attention encoder-decoder over words.

The de-duplicated pairs (one French target per English source) with at most 32 tokens on each side
(``MAX_TRAIN_SOURCE``, ``MAX_TARGET``; longer pairs dropped, counted on the card) are shuffled with seed 0: 1,500 test, 1,000 validation, the rest training. Vocabularies come from the training pairs only (tokens seen
twice or more) and ship beside the model. Training uses teacher forcing (the reference target shifted right);
test translations are decoded by the model alone, greedy and beam search, and scored with sacrebleu (BLEU, chrF)
against the human references, next to the source-copy baseline (the English sentence left untranslated).
"""

from __future__ import annotations

import numpy as np

from zoo.backend import keras
from zoo.builder import build_seq2seq
from zoo.data import translation as data
from zoo.tasks.base import Prepared, Task
from zoo.translation import (
    BOS,
    EOS,
    MAX_SOURCE_TOKENS,
    UNK,
    Translator,
    Vocab,
    split,
    vocab_dict,
)

VOCAB_FILE = "translation_vocab.json"
MAX_TARGET = 32
MAX_TRAIN_SOURCE = 32
N_TEST, N_VAL = 1500, 1000
_SPLIT: dict[int, dict] = {}


def _pad(rows: list[list[int]], length: int | None = None) -> np.ndarray:
    out = np.zeros((len(rows), length or max(map(len, rows))), "int32")
    for r, ids in zip(out, rows, strict=True):
        r[: len(ids)] = ids
    return out


def scores(hyps: list[str], refs: list[str]) -> dict:
    import sacrebleu

    return {
        "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2),
        "exact_match": round(float(np.mean([h == r for h, r in zip(hyps, refs, strict=True)])), 4),
    }


class LengthBuckets(keras.utils.PyDataset):
    """Teacher-forcing batches ``([source, target_in], target_out)`` of pairs of similar length: each pair is
    padded to its bucket (the longer side rounded up to a multiple of 8), so few steps are padding. Batches are
    re-drawn every epoch from a seeded generator (deterministic)."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], batch_size: int, seed: int):
        super().__init__()
        self.src, self.tgt, self.batch_size = src, tgt, batch_size
        self.rng = np.random.default_rng(seed)
        lengths = [max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True)]
        self.bucket = np.array([-(-n // 8) * 8 for n in lengths])
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        batches = []
        for b in np.unique(self.bucket):
            idx = self.rng.permutation(np.flatnonzero(self.bucket == b))
            batches += [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        self.batches = [batches[i] for i in self.rng.permutation(len(batches))]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple:
        idx = self.batches[i]
        n = int(self.bucket[idx[0]])
        src = _pad([self.src[j] for j in idx], n)
        t_in = _pad([[BOS, *self.tgt[j]] for j in idx], n)
        t_out = _pad([[*self.tgt[j], EOS] for j in idx], n)
        return (src, t_in), t_out


class TranslationTask(Task):
    kind = "translation"
    heads = ("seq2seq",)
    streamable = False
    eval_beams = (1, 4)
    default_batch_size = 64  # when prepare() is not given the recipe's

    def _split(self) -> dict:
        if 0 in _SPLIT:
            return _SPLIT[0]
        raw = data.pairs()
        rows = [
            (en, fr, cat)
            for en, fr, cat in raw["pairs"]
            if len(split(en)) <= MAX_TRAIN_SOURCE and len(split(fr)) <= MAX_TARGET
        ]
        order = np.random.default_rng(0).permutation(len(rows))
        test = [rows[i] for i in order[:N_TEST]]
        val = [rows[i] for i in order[N_TEST : N_TEST + N_VAL]]
        train = [rows[i] for i in order[N_TEST + N_VAL :]]
        src_vocab = Vocab.fit([r[0] for r in train])
        tgt_vocab = Vocab.fit([r[1] for r in train])
        _SPLIT[0] = {
            "train": train,
            "val": val,
            "test": test,
            "source": src_vocab,
            "target": tgt_vocab,
            "catalogs": raw["catalogs"],
            "dropped_long": len(raw["pairs"]) - len(rows),
        }
        return _SPLIT[0]

    def _arrays(self, rows: list, s: dict) -> tuple[list[np.ndarray], np.ndarray]:
        src = _pad([s["source"].encode(en)[:MAX_SOURCE_TOKENS] for en, _, _ in rows], MAX_SOURCE_TOKENS)
        tgt = [s["target"].encode(fr) for _, fr, _ in rows]
        t_in = _pad([[BOS, *t] for t in tgt], MAX_TARGET + 1)
        t_out = _pad([[*t, EOS] for t in tgt], MAX_TARGET + 1)
        return [src, t_in], t_out

    def batches(self, rows: list, s: dict, batch_size: int, seed: int) -> LengthBuckets:
        src = [s["source"].encode(en) for en, _, _ in rows]
        tgt = [s["target"].encode(fr) for _, fr, _ in rows]
        return LengthBuckets(src, tgt, batch_size, seed)

    def build_model(self, spec, prepared: Prepared) -> keras.Model:  # noqa: ANN001 (ModelSpec)
        a = spec.arch
        return build_seq2seq(
            prepared.vocab_size,
            prepared.n_outputs,
            cell=a.cell,
            units=a.units,
            embedding=a.embedding or 128,
            bidirectional=a.bidirectional,
            dropout=a.dropout,
            name=spec.name.replace("-", "_"),
        )

    def test_data(self) -> tuple[list[str], list[str]]:
        s = self._split()
        return [r[0] for r in s["test"]], [r[1] for r in s["test"]]

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        s = self._split()
        x_tr, y_tr = self._arrays(s["train"], s)
        unk = float(np.mean(x_tr[0][x_tr[0] > 0] == UNK)), float(np.mean(y_tr[y_tr > 0] == UNK))
        per_package: dict[str, dict] = {}
        for cat, info in s["catalogs"].items():
            p = per_package.setdefault(
                info["package"], {"version": info["version"], "catalogs": [], "pairs": 0}
            )
            p["catalogs"].append(cat)
            p["pairs"] += info["pairs"]
        batch_size = batch_size or self.default_batch_size  # `--batch-size` reaches the bucketed batches
        return Prepared(
            x_train=self.batches(s["train"], s, batch_size, seed),
            y_train=None,
            x_val=self.batches(s["val"], s, batch_size, seed),
            y_val=None,
            n_outputs=len(s["target"]),
            norm_mean=np.zeros(0),
            norm_var=np.ones(0),
            vocab_size=len(s["source"]),
            dataset={**data.DATASET, "packages": per_package},
            split={
                "how": "pairs shuffled with seed 0 (numpy default_rng), first 1,500 test, next 1,000 validation, "
                "the rest training; one French target per English source, so no source sentence is in two splits",
                "train": len(s["train"]),
                "validation": len(s["val"]),
                "test": len(s["test"]),
                "dropped_too_long": s["dropped_long"],
            },
            preprocessing={
                "vocabulary_file": VOCAB_FILE,
                "tokenizer": "words (\\w+), printf/brace placeholders (%s, %1$d, {0}) and single punctuation marks, "
                "case kept; punctuation/placeholders carry a joiner where they touched a neighbour, so output is "
                "detokenized exactly; GTK mnemonic underscores removed",
                "source_vocab_size": len(s["source"]),
                "target_vocab_size": len(s["target"]),
                "vocab_rule": "training-split tokens seen at least twice, at most 6,000 per language",
                "unknown_token_rate_train": {"source": round(unk[0], 4), "target": round(unk[1], 4)},
                "max_source_tokens": MAX_SOURCE_TOKENS,
                "max_target_tokens": MAX_TARGET,
                "sequence_length": MAX_SOURCE_TOKENS,
                "training": "teacher forcing: the decoder reads the reference shifted right (<s> first); loss "
                "and accuracy over real target tokens only (padding masked)",
            },
            assets={VOCAB_FILE: vocab_dict(s["source"], s["target"], MAX_TARGET)},
        )

    def evaluate(self, model: keras.Model, prepared: Prepared | None, head: str, beams: tuple = ()) -> dict:
        s = self._split()
        translator = Translator(model, s["source"], s["target"], MAX_TARGET)
        sources, refs = self.test_data()
        src = translator.encode_sources(sources, check=False)
        out: dict = {"decoding": {}}
        for b in beams or self.eval_beams:
            hyps = [translator.target.decode(ids) for ids in translator.decode_ids(src, beam=b)]
            out["decoding"][f"beam_{b}" if b > 1 else "greedy"] = scores(hyps, refs)
        main = (
            out["decoding"]["greedy"] if "greedy" in out["decoding"] else next(iter(out["decoding"].values()))
        )
        out = {**main, **out}
        out["scoring"] = (
            "sacrebleu 13a BLEU and chrF on the detokenized model output vs the human French message, "
            "case-sensitive; the top-level bleu/chrf/exact_match are greedy decoding"
        )
        # Teacher-forced next-token accuracy on the test split (cheap; no decoding).
        x, y = self._arrays(s["test"], s)
        pred = np.asarray(model.predict(x, batch_size=256, verbose=0)).argmax(-1)
        out["teacher_forced_token_accuracy"] = round(float((pred == y)[y > 0].mean()), 4)
        return out

    def step_input(self, preprocessing: dict) -> str:
        return (
            "encoder: one English word id per step; decoder: one French word id (the previous word) per step"
        )

    def baselines(self, prepared: Prepared | None) -> dict:
        sources, refs = self.test_data()
        return {"source_copy": {**scores(sources, refs), "how": "the English sentence output unchanged"}}

    def compare(self, metrics: dict, baselines: dict) -> dict:
        ref = baselines["source_copy"]
        gap = round(metrics["bleu"] - ref["bleu"], 2)
        return {
            "reference": "source_copy",
            "bleu_difference": gap,
            "chrf_difference": round(metrics["chrf"] - ref["chrf"], 2),
            "verdict": f"greedy BLEU {metrics['bleu']:.1f} vs {ref['bleu']:.1f} for copying the English source "
            f"({abs(gap):.1f} points {'above' if gap >= 0 else 'below'}); in-domain software messages only",
        }


EN_FR = TranslationTask()
