"""JapaneseVowels: a real speech-derived benchmark, as a plain sequence-classification task."""

from __future__ import annotations

from zoo.data import speech
from zoo.tasks.classification import ClassificationTask

JAPANESE_VOWELS = ClassificationTask(
    loader=speech.japanese_vowels,
    dataset=speech.JAPANESE_VOWELS,
    published={"UEA archive reference (as listed in the project's data notes)": 0.992},
)
