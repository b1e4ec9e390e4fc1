"""The speech models on their validation persons, in conditions like the real-voice set's: how the speech models
are chosen (never on the real recordings).

    KERAS_BACKEND=jax python scripts/speech_validation.py                          # the shipped models
    RNNZOO_MODELS=/tmp/models KERAS_BACKEND=jax python scripts/speech_validation.py   # models trained elsewhere

For each validation person (`zoo.data.speech.PERSON_SPLIT["val"]`): 150 digit sequences (1-6 digits, each
speaker a random rendering of the person) joined with 0.3 s pauses and greedy-decoded by ``digits-ctc-bigru``,
and the person's 20 words classified by ``spoken-words-bigru``; wideband and telephone band, clean and in 20 / 10
dB white noise. Prints one line per condition (sequence error, word accuracy) and each person's means; the
keyword spotter's validation figure is on its card (``threshold_rule``). ``--errors`` also prints, over all six
conditions, which digits the wrong sequences held (share of the sequences holding each digit that came out
wrong) and the words most often taken for another: where to look, on validation data, when a model falls short.

``--ctc-members DIR DIR ...`` scores several CTC models trained alike (each DIR holds what ``rnnzoo train
digits-ctc-bigru --seed N --members 1 --out DIR`` wrote) as one: each alone, and combined by ``--combine vote`` (the
transcript the models agree on, `zoo.speech.vote_transcripts`) or ``average`` (their per-frame probabilities
averaged, then decoded): whether several seeds beat one.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import zoo
from zoo.backend import keras
from zoo.data import speech
from zoo.speech import ctc_decode, vote_transcripts
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


# Set by --ctc-members: folders of digit models trained alike, scored alone and combined (default: the one
# `zoo.load` finds).
CTC_MEMBERS: list[Path] = []


@functools.cache
def _models() -> tuple[list[keras.Model], dict, keras.Model, dict]:
    """The digit model(s) and the word model with their cards' preprocessing, loaded once for every person."""
    ctc_card, words_card = zoo.card("digits-ctc-bigru"), zoo.card("spoken-words-bigru")
    words_pre = {**words_card.preprocessing.details, "class_names": words_card.preprocessing.class_names}
    members = [
        keras.saving.load_model(d / "digits-ctc-bigru" / "model.keras", safe_mode=True, compile=False)
        for d in CTC_MEMBERS
    ]
    return (
        members or [zoo.load("digits-ctc-bigru")],
        ctc_card.preprocessing.details,
        zoo.load("spoken-words-bigru"),
        words_pre,
    )


def _transcripts(members: list[keras.Model], x: np.ndarray, combine: str) -> tuple[list, list[list]]:
    """(combined transcripts, each member's) of the feature clips ``x``, greedy-decoded, digits 0-9."""
    log_probs = [np.asarray(m.predict(x, verbose=0)) for m in members]
    alone = [ctc_decode(lp) for lp in log_probs]
    if len(members) == 1:
        combined = alone[0]
    elif combine == "vote":
        combined = vote_transcripts(alone)
    else:  # mean probability per frame and label, back to log-probabilities
        top = np.max(log_probs, axis=0)
        combined = ctc_decode(np.log(np.mean(np.exp(np.asarray(log_probs) - top), axis=0)) + top)
    as_digits = lambda hyps: [[v - 1 for v in h] for h in hyps]  # noqa: E731
    return as_digits(combined), [as_digits(h) for h in alone]


@dataclass
class Measurement:
    """One validation person's figures per condition, and what went wrong over all conditions."""

    conditions: dict[str, dict[str, float]]
    # digit -> share of the sequences holding it that were transcribed wrongly
    digits_in_wrong_sequences: dict[int, float] = field(default_factory=dict)
    # "said -> heard" -> how many of the person's word clips the word model took that way
    words_confused: collections.Counter[str] = field(default_factory=collections.Counter)
    # condition -> each --ctc-members model's sequence error alone (empty for one model)
    members: dict[str, list[float]] = field(default_factory=dict)


def measure(person: str, combine: str = "vote") -> Measurement:
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
            hyps, alone = _transcripts(ctc, x, combine)
            x = placed_features([_condition(w, band, snr, i) for i, (_, w) in enumerate(singles)], words_pre)
            said = np.asarray(words.predict(x, verbose=0)).argmax(-1)
            condition = f"{band}/{'clean' if snr is None else f'{snr:g}dB'}"
            out.conditions[condition] = {
                "sequence_error": round(error_rates(hyps, sequences)["sequence_error_rate"], 3),
                "word_accuracy": round(float(np.mean(said == np.array([w for w, _ in singles]))), 3),
            }
            if len(alone) > 1:  # each member alone, in --ctc-members order
                out.members[condition] = [
                    round(error_rates(h, sequences)["sequence_error_rate"], 3) for h in alone
                ]
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
    parser.add_argument(
        "--ctc-members",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="score these digit models (DIR/digits-ctc-bigru/model.keras, trained alike) alone and combined",
    )
    parser.add_argument(
        "--combine",
        choices=("vote", "average"),
        default="vote",
        help="how --ctc-members are combined: vote on transcripts (default) or average probabilities",
    )
    args = parser.parse_args()
    missing = [str(d) for d in args.ctc_members if not (d / "digits-ctc-bigru" / "model.keras").is_file()]
    if missing:
        parser.error(f"no digits-ctc-bigru/model.keras in {', '.join(missing)}")
    CTC_MEMBERS[:] = args.ctc_members
    unknown = set(args.persons) - set(speech.PERSON_SPLIT["val"])
    if unknown:
        parser.error(f"not a validation person: {', '.join(sorted(unknown))} (choose from "
                     f"{', '.join(speech.PERSON_SPLIT['val'])})")  # fmt: skip
    for person in args.persons:
        measured = measure(person, args.combine)
        figures = measured.conditions
        for condition, row in figures.items():
            print(f"{person:6s} {condition:18s} sequence error {row['sequence_error']:.3f}  "
                  f"word accuracy {row['word_accuracy']:.3f}")  # fmt: skip
        means = {
            k: round(float(np.mean([r[k] for r in figures.values()])), 3)
            for k in next(iter(figures.values()))
        }
        print(json.dumps({person: {"mean": means, **figures}}), flush=True)
        if measured.members:
            alone = np.mean(list(measured.members.values()), axis=0)
            print(f"{person:6s} mean sequence error: {args.combine} {means['sequence_error']:.3f}, each model "
                  "alone " + " ".join(f"{e:.3f}" for e in alone))  # fmt: skip
        if args.errors:
            print(f"{person:6s} share of sequences holding each digit that came out wrong: "
                  + "  ".join(f"{d}: {r:.2f}" for d, r in measured.digits_in_wrong_sequences.items()))  # fmt: skip
            print(f"{person:6s} words most often taken for another (clips, all conditions): "
                  + ", ".join(f"{k} x{n}" for k, n in measured.words_confused.most_common(8)))  # fmt: skip


if __name__ == "__main__":
    main()
