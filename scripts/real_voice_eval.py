"""Measure the shipped speech models on real recorded speech and print the figures as JSON.

    KERAS_BACKEND=jax python scripts/real_voice_eval.py                     # the three speech models
    KERAS_BACKEND=jax python scripts/real_voice_eval.py digits-ctc-bigru --write

The recordings are Debian's asterisk-core-sounds-en-wav (one woman, 8 kHz; `zoo.data.real_voice`): never
trained or tuned on. Training writes the same figures (each speech task's evaluate() calls the functions used
here); ``--write`` puts a fresh measurement into the card's ``test_metrics.real_voice`` (the model file, and so
its sha256, is untouched). The slow test tests/test_speech_real_voice.py re-measures them against the cards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import zoo
from zoo import cards
from zoo.speech import Detector
from zoo.tasks import speech as tasks

MODELS = ("spoken-words-bigru", "digits-ctc-bigru", "keyword-seven-gru")


def measure(name: str) -> dict:
    """The ``real_voice`` block of ``name``'s test metrics, measured now with its shipped model and card."""
    card = zoo.card(name)
    # The typed card keeps class_names beside details; the task functions read the preprocessing dict.
    pre = {**card.preprocessing.details, "class_names": card.preprocessing.class_names}
    model = zoo.load(name)
    if card.kind == "ctc":
        return tasks.real_voice_digits(model, pre)
    if card.kind == "keyword-spotting":
        return tasks.real_voice_keyword(model, pre, Detector.from_card(card))
    return tasks.real_voice_words(model, pre)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "names", nargs="*", default=list(MODELS), help=f"models (default: {' '.join(MODELS)})"
    )
    parser.add_argument("--write", action="store_true", help="write the figures into the cards")
    args = parser.parse_args()
    for name in args.names:
        figures = measure(name)
        print(json.dumps({name: figures}, indent=1), flush=True)
        if args.write:
            folder = cards.model_dir(name)
            card = cards.read_card(folder)
            metrics = {**card.test_metrics, "real_voice": figures}
            cards.write_card(folder, dataclasses.replace(card, test_metrics=metrics))


if __name__ == "__main__":
    main()
