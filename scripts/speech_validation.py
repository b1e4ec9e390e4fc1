"""The speech models on their validation persons, in conditions like the real-voice set's: how issue 16's models
were chosen (never on the real recordings).

    KERAS_BACKEND=jax python scripts/speech_validation.py                          # the shipped models
    RNNZOO_MODELS=/tmp/models KERAS_BACKEND=jax python scripts/speech_validation.py   # models trained elsewhere

For each validation person (`zoo.data.speech.PERSON_SPLIT["val"]`): 150 digit sequences (1-6 digits, each
speaker a random rendering of the person) joined with 0.3 s pauses and greedy-decoded by ``digits-ctc-bigru``,
and the person's 20 words classified by ``spoken-words-bigru``; wideband and telephone band, clean and in 20 / 10
dB white noise. Prints one line per condition (sequence error, word accuracy) and each person's means; the
keyword spotter's validation figure is on its card (``threshold_rule``). ``--errors`` also prints, over all six
conditions, which digits the wrong sequences held (share of the sequences holding each digit that came out
wrong) and the words most often taken for another: where to look, on validation data, when a model falls short.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
from dataclasses import dataclass, field

import numpy as np

import zoo
from zoo.backend import keras
from zoo.data import speech
from zoo.speech import ctc_decode
from zoo.tasks.speech import error_rates, placed_features

SEQUENCES = 150
PAUSE_SECONDS = 0.3
SNRS_DB = (None, 20.0, 10.0)


def _condition(wave: np.ndarray, band: str, snr_db: float | None, seed: int) -> np.ndarray:
    """``wave`` inside 0.3 s of silence each side, through the band, then white noise over all of it."""
    pad = np.zeros(int(0.3 * speech.SAMPLE_RATE), "float32")
    wave = np.concatenate([pad, wave, pad])
    if band == "telephone":
        wave = speech.telephone_band(wave)
    return speech.add_noise(wave, snr_db, np.random.default_rng([seed, int(snr_db or 0)]))


@functools.cache
def _validation_speakers() -> list[speech.HumanSpeaker]:
    """Every (engine voice, prosody) rendering of every validation person (the bank is read once)."""
    return speech.human_speakers(speech.human_bank(speech.WORDS + speech.FILLERS), "val")


@functools.cache
def _models() -> tuple[keras.Model, dict, keras.Model, dict]:
    """The digit and word models with their cards' preprocessing, loaded once for every person."""
    ctc_card, words_card = zoo.card("digits-ctc-bigru"), zoo.card("spoken-words-bigru")
    words_pre = {**words_card.preprocessing.details, "class_names": words_card.preprocessing.class_names}
    return (
        zoo.load("digits-ctc-bigru"),
        ctc_card.preprocessing.details,
        zoo.load("spoken-words-bigru"),
        words_pre,
    )


@dataclass
class Measurement:
    """One validation person's figures per condition, and what went wrong over all conditions."""

    conditions: dict[str, dict[str, float]]
    # digit -> share of the sequences holding it that were transcribed wrongly
    digits_in_wrong_sequences: dict[int, float] = field(default_factory=dict)
    # "said -> heard" -> how many of the person's word clips the word model took that way
    words_confused: collections.Counter[str] = field(default_factory=collections.Counter)


def measure(person: str) -> Measurement:
    """Sequence error and word accuracy of the models on ``person`` per band and noise level."""
    speakers = [s for s in _validation_speakers() if s.person == person]
    rng = np.random.default_rng(0)
    sequences, joined = [], []
    for _ in range(SEQUENCES):
        speaker = speakers[int(rng.integers(len(speakers)))]
        digits = [int(d) for d in rng.integers(0, 10, size=int(rng.integers(1, 7)))]
        sequences.append(digits)
        joined.append(
            speech.join_words([speaker.say(d) for d in digits], [PAUSE_SECONDS] * (len(digits) - 1))
        )
    singles = [(w, s.say(w)) for s in speakers for w in range(len(speech.WORDS))]
    ctc, ctc_pre, words, words_pre = _models()
    out = Measurement({})
    held, wrong = collections.Counter[int](), collections.Counter[int]()
    for band in ("wideband", "telephone"):
        for snr in SNRS_DB:
            x = placed_features([_condition(w, band, snr, i) for i, w in enumerate(joined)], ctc_pre)
            hyps = [[v - 1 for v in h] for h in ctc_decode(ctc.predict(x, verbose=0))]
            x = placed_features([_condition(w, band, snr, i) for i, (_, w) in enumerate(singles)], words_pre)
            said = np.asarray(words.predict(x, verbose=0)).argmax(-1)
            out.conditions[f"{band}/{'clean' if snr is None else f'{snr:g}dB'}"] = {
                "sequence_error": round(error_rates(hyps, sequences)["sequence_error_rate"], 3),
                "word_accuracy": round(float(np.mean(said == np.array([w for w, _ in singles]))), 3),
            }
            for hyp, ref in zip(hyps, sequences, strict=True):
                held.update(set(ref))
                wrong.update(set(ref) if hyp != ref else ())
            out.words_confused.update(
                f"{speech.WORDS[w]} -> {speech.WORDS[s]}"
                for (w, _), s in zip(singles, said, strict=True)
                if w != s
            )
    out.digits_in_wrong_sequences = {d: round(wrong[d] / held[d], 3) for d in sorted(held)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "persons",
        nargs="*",
        default=list(speech.PERSON_SPLIT["val"]),
        help="validation persons (default: all)",
    )
    parser.add_argument(
        "--errors", action="store_true", help="also print which digits and words went wrong (all conditions)"
    )
    args = parser.parse_args()
    unknown = set(args.persons) - set(speech.PERSON_SPLIT["val"])
    if unknown:
        parser.error(f"not a validation person: {', '.join(sorted(unknown))} (choose from "
                     f"{', '.join(speech.PERSON_SPLIT['val'])})")  # fmt: skip
    for person in args.persons:
        measured = measure(person)
        figures = measured.conditions
        for condition, row in figures.items():
            print(f"{person:6s} {condition:18s} sequence error {row['sequence_error']:.3f}  "
                  f"word accuracy {row['word_accuracy']:.3f}")  # fmt: skip
        means = {
            k: round(float(np.mean([r[k] for r in figures.values()])), 3)
            for k in next(iter(figures.values()))
        }
        print(json.dumps({person: {"mean": means, **figures}}), flush=True)
        if args.errors:
            print(f"{person:6s} share of sequences holding each digit that came out wrong: "
                  + "  ".join(f"{d}: {r:.2f}" for d, r in measured.digits_in_wrong_sequences.items()))  # fmt: skip
            print(f"{person:6s} words most often taken for another (clips, all conditions): "
                  + ", ".join(f"{k} x{n}" for k, n in measured.words_confused.most_common(8)))  # fmt: skip


if __name__ == "__main__":
    main()
