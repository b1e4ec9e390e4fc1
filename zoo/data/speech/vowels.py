"""UEA JapaneseVowels: LPC cepstra of nine speakers saying /ae/, read from the files aeon ships."""

from __future__ import annotations

import numpy as np

from zoo.data._files import package_file

JAPANESE_VOWELS = {
    "name": "JapaneseVowels (UEA multivariate archive)",
    "origin": "aeon 1.6 package file aeon/datasets/data/JapaneseVowels/*.ts; Kudo, Toyama & Shimbo (1999), "
    "UCI / UEA archive",
    "what": "9 male speakers uttering the vowel /ae/; 12 LPC cepstrum coefficients per frame (10 kHz audio)",
    "task": "speaker identification",
    "lengths": "7 to 29 frames; padded at the end to 29 by repeating the last frame",
    "licence": "CC BY 4.0 (UCI Machine Learning Repository); the files ship in aeon's BSD-3-Clause package",
}
JAPANESE_VOWELS_LENGTH = 29


def japanese_vowels(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The archive's default split: X ``[N, 29, 12]`` float32 (edge-padded), y string labels ``"1"``…``"9"``.

    Repeating the last frame (rather than zero-padding) keeps padded steps inside the data's range, so the
    model's normalisation and the 1-NN baseline see no artificial values.
    """
    from aeon.datasets import load_from_ts_file

    path = package_file("aeon", "datasets", "data", "JapaneseVowels", f"JapaneseVowels_{split.upper()}.ts")
    series, y = load_from_ts_file(str(path))
    x = np.stack(
        [np.pad(s.T, ((0, JAPANESE_VOWELS_LENGTH - s.shape[1]), (0, 0)), mode="edge") for s in series]
    ).astype("float32")
    return x, np.asarray(y).astype(str)
