"""Real recorded speech for evaluation only: Debian's ``asterisk-core-sounds-en-wav`` (one woman, studio, 8 kHz).

The package holds the Asterisk telephone system's prompts, one take of each, recorded by a single speaker
("Allison", folder ``en_US_f_Allison``). Its digits 0-9 and the word "no" (``vm-no.wav``, the "no" of "you
have no messages") are the only words of the zoo's 20-word vocabulary it contains. Nothing here is trained
on or tuned on: the speech models choose everything on their validation voices, and these recordings only
measure them (`zoo.tasks.speech.real_voice_eval`: real_voice_words, real_voice_digits, real_voice_keyword). Recordings are resampled from 8 kHz to 16 kHz, so they
hold nothing above 4 kHz, like a telephone line.

Digit sequences and keyword streams are built by joining the recordings (each cut to its speech by
`zoo.audio.trim_silence`) with fixed pauses, with and without noise: every set is drawn from a fixed seed, so
it is the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.audio import read_wav, trim_silence
from zoo.data.speech import DIGITS, SAMPLE_RATE, SpeechDataError, add_noise, join_words

FOLDER = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
PACKAGE = "asterisk-core-sounds-en-wav"
# Vocabulary words present in the package -> file (Asterisk's own sound list names vm-no "no").
WORD_FILES = {d: f"digits/{i}.wav" for i, d in enumerate(DIGITS)} | {"no": "vm-no.wav"}
# Other single words, the keyword spotter's non-keywords. "seventeen" and "seventy" are left out: they begin
# with the whole sound "seven", and a causal detector that fires when "seven" ends cannot know what follows.
OTHER_FILES = {
    **{w: f"digits/{n}.wav" for n, w in ((10, "ten"), (11, "eleven"), (12, "twelve"), (13, "thirteen"))},
    **{w: f"digits/{n}.wav" for n, w in ((20, "twenty"), (30, "thirty"), (60, "sixty"), (90, "ninety"))},
    "oh": "digits/oh.wav",
    "hundred": "digits/hundred.wav",
    "thousand": "digits/thousand.wav",
    "today": "digits/today.wav",
    "tomorrow": "digits/tomorrow.wav",
    "hello": "hello.wav",
    "goodbye": "goodbye.wav",
    "and": "vm-and.wav",
    "for": "for.wav",
    "is": "is.wav",
    "with": "with.wav",
    "your": "your.wav",
    "number": "number.wav",
    "minutes": "minutes.wav",
    "seconds": "seconds.wav",
}
SEQUENCE_PAUSES = (0.15, 0.3, 0.5)  # seconds between joined digits
SEQUENCE_SNRS_DB = (None, 20.0, 10.0)  # None: the clean recordings; else white noise at this SNR
SEQUENCES_PER_CONDITION = 100
STREAMS = 40
STREAM_SECONDS = 12.0


def recording(relative: str) -> np.ndarray:
    """One recording of the package, mono float32 at 16 kHz; an error naming the package if it is missing."""
    path = FOLDER / relative
    if not path.is_file():
        raise SpeechDataError(f"{path} is missing: run scripts/setup.sh (apt-get install {PACKAGE})")
    return read_wav(path, SAMPLE_RATE)


def real_words() -> tuple[list[str], list[np.ndarray]]:
    """The vocabulary words the package holds (ten digits and "no"), as recorded."""
    return list(WORD_FILES), [recording(f) for f in WORD_FILES.values()]


def _noisy(wave: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """``wave`` inside 0.3 s of silence each side, then noise over all of it (a recording made in noise)."""
    pad = np.zeros(int(0.3 * SAMPLE_RATE), "float32")
    return add_noise(np.concatenate([pad, wave, pad]), snr_db, rng)


def digit_sequences(
    pause: float, snr_db: float | None, n: int = SEQUENCES_PER_CONDITION, max_digits: int = 6, seed: int = 0
) -> tuple[list[list[int]], list[np.ndarray]]:
    """``n`` sequences of 1-``max_digits`` recorded digits joined with ``pause`` seconds of silence, in noise
    at ``snr_db``: (digit lists, waveforms). The digits drawn depend only on ``seed``, not on the condition."""
    digits = [recording(WORD_FILES[d]) for d in DIGITS]
    trimmed = [trim_silence(w, SAMPLE_RATE) for w in digits]
    rng = np.random.default_rng(seed)
    sequences = [list(rng.integers(0, 10, size=int(rng.integers(1, max_digits + 1)))) for _ in range(n)]
    noise = np.random.default_rng([seed, int(pause * 1000), int(snr_db or 0)])
    waves = [
        _noisy(join_words([trimmed[d] for d in seq], [pause] * (len(seq) - 1)), snr_db, noise)
        for seq in sequences
    ]
    return [[int(d) for d in seq] for seq in sequences], waves


def keyword_streams(
    keyword: str = "seven",
    snr_db: float | None = None,
    n: int = STREAMS,
    seconds: float = STREAM_SECONDS,
    seed: int = 0,
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Streams of recorded words with ``keyword`` among them (each slot the keyword with probability 0.25,
    each word at a random level 0.5-1.0, pauses 0.05-0.6 s, as the training streams), in noise at ``snr_db``.

    Returns audio ``[n, samples]`` and keyword occurrences ``(stream, first sample, end sample)``.
    """
    bank = [trim_silence(recording(WORD_FILES[keyword]), SAMPLE_RATE)]
    others = {**WORD_FILES, **OTHER_FILES}
    bank += [trim_silence(recording(f), SAMPLE_RATE) for w, f in others.items() if w != keyword]
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng([seed, int(snr_db or 0)])
    length = int(seconds * SAMPLE_RATE)
    audio = np.zeros((n, length), "float32")
    events = []
    for s in range(n):
        t = int(rng.uniform(0.0, 0.5) * SAMPLE_RATE)
        while True:
            j = 0 if rng.random() < 0.25 else int(rng.integers(1, len(bank)))
            word = bank[j] * float(rng.uniform(0.5, 1.0))
            if t + len(word) > length:
                break
            audio[s, t : t + len(word)] = word
            if j == 0:
                events.append((s, t, t + len(word)))
            t += len(word) + int(rng.uniform(0.05, 0.6) * SAMPLE_RATE)
        audio[s] = add_noise(audio[s], snr_db, noise)
    return audio, events
