"""Keyword-free audio: run-on speech, word strings and noise on which a keyword spotter's false alarms are counted."""

from __future__ import annotations

import numpy as np

from zoo.audio import (
    FrontEnd,
)
from zoo.data.speech.augment import (
    NOISE_COLOURS,
    SPEED_RANGE,
    add_noise,
    change_speed,
    channel,
    coloured_noise,
)
from zoo.data.speech.cache import cached
from zoo.data.speech.datasets import _augmented, _dataset_config, _snr
from zoo.data.speech.espeak import (
    ACCENTS,
    FILLERS,
    SAMPLE_RATE,
    SNRS_DB,
    WORDS,
    random_voice,
    render_many,
    split_variants,
)
from zoo.data.speech.human import human_bank, human_speakers

# Long audio without the keyword: what a spotter's false alarms per hour are measured on (and, for the training
# split, what it learns to stay quiet on). Three kinds per split, by the split's voices only:
NEGATIVE_KINDS = ("run-on speech", "words", "noise")
NEGATIVE_SHARES = (0.6, 0.25, 0.15)
NEGATIVE_WORDS_PER_STREAM = (
    70  # King James verses read in one breath: 18-38 s at 110-230 wpm, cut to the stream
)


def keyword_free_verses(keyword: str) -> list[str]:
    """King James verses (`zoo.data.text.kjv_text`) of 8-40 words with no word that holds ``keyword``
    ("seven", "seventh", "sevenfold", "seventy" all out; "heaven" and "eleven" stay: they only sound alike)."""
    import re

    from zoo.data.text import kjv_text

    out = []
    for verse in kjv_text().splitlines():
        words = re.findall(r"[A-Za-z']+", verse)
        if 8 <= len(words) <= 40 and not any(keyword in w.lower() for w in words):
            out.append(" ".join(words))
    return out


def negative_streams(
    front: FrontEnd,
    part: str,
    keyword: str = "seven",
    streams: int = 180,
    seconds: float = 20.0,
    seed: int = 0,
) -> dict:
    """``streams`` streams of ``seconds`` s of audio in which ``keyword`` is never said, by the voices of split
    ``part`` (``train`` / ``val`` / ``test``), in `NEGATIVE_SHARES`:

    - run-on speech: an espeak-ng speaker of the part's variants (random accent, speed, pitch) reading King
      James verses without the keyword (`keyword_free_verses`) in one breath, at a random level 0.5-1.0;
    - words: a human-derived speaker of the part's persons saying the vocabulary and filler words other than
      the keyword, strung together as `keyword_streams` strings them (random speed factor, levels, pauses);
    - noise: white, pink or brown noise alone, at a random level of -70 to -20 dB of full scale.

    Audio passes what `keyword_streams` gives the same split and source: the espeak-ng test voices white noise
    at ``SNRS_DB`` and no channel; every other stream a random channel and white/pink/brown noise at
    ``AUG_SNRS_DB``. Returns ``x`` ``[N, T, F]``, ``kind`` (index into `NEGATIVE_KINDS`), ``voice``, ``snr``.
    """
    s = ("train", "val", "test").index(part)
    config = {"kind": "negatives", "part": part, "front": front.to_dict(), "keyword": keyword}
    config |= {"streams": streams, "seconds": seconds, "seed": seed, "shares": NEGATIVE_SHARES}
    config |= {"words": WORDS, "fillers": FILLERS, "accents": ACCENTS, "snrs": SNRS_DB}
    config |= {"per_stream": NEGATIVE_WORDS_PER_STREAM, **_dataset_config()}

    def build() -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, 11, s])
        counts = np.floor(np.array(NEGATIVE_SHARES) * streams).astype(int)
        counts[0] += streams - counts.sum()
        length = int(seconds * SAMPLE_RATE)
        verses = keyword_free_verses(keyword)
        variants = split_variants(seed)[part]
        jobs = []
        for i in range(counts[0]):
            text, n = [], 0
            while n < NEGATIVE_WORDS_PER_STREAM:
                verse = verses[int(rng.integers(len(verses)))]
                text.append(verse + ".")
                n += len(verse.split())
            jobs.append((" ".join(text), random_voice(variants[i % len(variants)], rng), 0))
        waves = [w[:length] for w in render_many(jobs)]
        names = [v.name for _, v, _ in jobs]
        vocabulary = [j for j, w in enumerate(WORDS + FILLERS) if w != keyword]
        speakers = human_speakers(human_bank(WORDS + FILLERS, seed), part)
        for _ in range(counts[1]):
            speaker = speakers[int(rng.integers(len(speakers)))]
            speed = rng.uniform(*SPEED_RANGE)
            audio = np.zeros(length, "float32")
            t = int(rng.uniform(0.0, 0.5) * SAMPLE_RATE)
            while True:
                word = change_speed(speaker.say(vocabulary[int(rng.integers(len(vocabulary)))]), speed)
                word = word * float(rng.uniform(0.5, 1.0))
                if t + len(word) > length:
                    break
                audio[t : t + len(word)] = word
                t += len(word) + int(rng.uniform(0.05, 0.6) * SAMPLE_RATE)
            waves.append(audio)
            names.append(speaker.name)
        colours = list(NOISE_COLOURS)
        for _ in range(counts[2]):
            colour = colours[int(rng.integers(len(colours)))]
            level = 10 ** (rng.uniform(-70.0, -20.0) / 20)
            waves.append(level * coloured_noise(length, NOISE_COLOURS[colour], rng))
            names.append(f"noise:{colour}")
        kinds = np.repeat(np.arange(3), counts)
        xs, snr = [], []
        for wave, kind in zip(waves, kinds, strict=True):
            audio = np.zeros(length, "float32")
            audio[: len(wave)] = wave
            if kind == 2:
                xs.append(front(audio))
                snr.append(np.inf)
                continue
            source = 0 if kind == 0 else 1
            if kind == 0:
                audio *= float(rng.uniform(0.5, 1.0))
            if _augmented(s, source):
                audio = channel(audio, rng)[:length]
            level = _snr(s, source, rng)
            exponent = float(rng.choice(list(NOISE_COLOURS.values()))) if _augmented(s, source) else 0.0
            xs.append(front(add_noise(audio, level, rng, exponent)))
            snr.append(np.inf if level is None else level)
        return {"x": np.stack(xs), "kind": kinds, "voice": np.array(names), "snr": np.array(snr)}

    return cached(f"negatives-{part}", config, build)
