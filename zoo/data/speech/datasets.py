"""The rendered datasets: spoken words, keyword streams and connected digits, as features for every split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.audio import (
    FrontEnd,
)
from zoo.data.speech.augment import (
    AUG_SNRS_DB,
    DIGIT_PAUSES,
    NOISE_COLOURS,
    SPEED_RANGE,
    add_noise,
    augmentation_card,
    change_speed,
    channel,
    speech_clip,
    vad_card,
)
from zoo.data.speech.cache import cached
from zoo.data.speech.espeak import (
    ACCENTS,
    DIGITS,
    FILLERS,
    PITCH,
    SAMPLE_RATE,
    SNRS_DB,
    SPEED_WPM,
    WORDS,
    Voice,
    random_voice,
    render_many,
    split_variants,
    synthesise,
)
from zoo.data.speech.human import HUMAN_VOICES, PERSON_SPLIT, human_bank, human_rendering, human_speakers


def _dataset_config() -> dict:
    """Everything outside a dataset's own arguments that shapes its audio: part of every cache key."""
    return {
        "human": [f"{v.name}={v.person}" for v in HUMAN_VOICES],
        "human_rendering": human_rendering(),
        "person_split": PERSON_SPLIT,
        "augmentation": augmentation_card(),
        "vad": vad_card(),
        "version": 2,
    }


# ------------------------------------------------------------------------------------------------------------
# Datasets. Each returns features (not audio) for every split, so training never re-synthesises. Rows carry a
# ``source``: 0 espeak-ng, 1 a human-derived voice (`HUMAN_VOICES`). espeak-ng test clips keep the first
# protocol (white noise at ``SNRS_DB``, no channel), so their figure stays comparable; every other clip goes
# through `perturb_voice` and noise from ``AUG_SNRS_DB``.

SOURCES = ("espeak-ng", "human-derived")


def _augmented(split: int, source: int) -> bool:
    return split != 2 or source == 1


def _snr(split: int, source: int, rng: np.random.Generator) -> float | None:
    levels = AUG_SNRS_DB if _augmented(split, source) else SNRS_DB
    return levels[int(rng.integers(len(levels)))]


def spoken_words(
    front: FrontEnd,
    renditions: int = 2,
    seconds: float = 1.2,
    seed: int = 0,
    # 120 per word in training: twice the first figure, preferred on the validation persons.
    human_renditions: tuple[int, int, int] = (120, 20, 20),
) -> dict:
    """Isolated words: every variant says every word ``renditions`` times (random accent/speed/pitch/SNR),
    and every word is said ``human_renditions`` times (train, validation, test) by random human-derived speakers
    of the split.

    Returns arrays ``x`` ``[N, T, F]`` (log-mel of a ``seconds`` canvas, speech placed by `speech_clip`),
    ``y`` word index, ``split`` (0 train, 1 validation, 2 test, by voice variant / person), ``voice``,
    ``source``, ``snr`` (dB, inf: clean) and ``frames`` (frames that hold speech, for the mean-MFCC baseline).
    """
    config = {"kind": "words", "front": front.to_dict(), "renditions": renditions, "seconds": seconds}
    config |= {
        "seed": seed,
        "words": WORDS,
        "accents": ACCENTS,
        "snrs": SNRS_DB,
        "speed": SPEED_WPM,
        "pitch": PITCH,
        "human_renditions": human_renditions,
        **_dataset_config(),
    }

    def build() -> dict[str, np.ndarray]:
        splits = split_variants(seed)
        rng = np.random.default_rng(seed)
        jobs, meta = [], []
        for s, part in enumerate(("train", "val", "test")):
            for variant in splits[part]:
                for w, word in enumerate(WORDS):
                    for _ in range(renditions):
                        voice = random_voice(variant, rng)
                        jobs.append((word, voice, 0))
                        meta.append((w, s, voice.name, 0))
        waves = render_many(jobs)
        bank = human_bank(WORDS + FILLERS, seed)
        for s, part in enumerate(("train", "val", "test")):
            speakers = human_speakers(bank, part)
            for w in range(len(WORDS)):
                for _ in range(human_renditions[s]):
                    speaker = speakers[int(rng.integers(len(speakers)))]
                    waves.append(speaker.say(w))
                    meta.append((w, s, speaker.name, 1))
        length = int(seconds * SAMPLE_RATE)
        xs, frames, snrs = [], [], []
        for i, (wave, (_, s, _, source)) in enumerate(zip(waves, meta, strict=True)):
            r = np.random.default_rng([seed, i])
            snrs.append(_snr(s, source, r))
            clip = speech_clip(wave, length, r, int(0.2 * SAMPLE_RATE), snrs[-1], _augmented(s, source))
            xs.append(front(clip))
            frames.append(min(front.n_frames(len(wave)), xs[-1].shape[0]))
        return {
            "x": np.stack(xs),
            "y": np.array([m[0] for m in meta]),
            "split": np.array([m[1] for m in meta]),
            "voice": np.array([m[2] for m in meta]),
            "source": np.array([m[3] for m in meta]),
            "snr": np.array([np.inf if v is None else v for v in snrs]),
            "frames": np.array(frames),
        }

    return cached("words", config, build)


def keyword_streams(
    front: FrontEnd,
    keyword: str = "seven",
    streams: tuple[int, int, int] = (1500, 200, 300),
    seconds: float = 4.0,
    seed: int = 0,
    human_streams: tuple[int, int, int] = (600, 100, 100),
) -> dict:
    """Continuous audio: words separated by random pauses, ``keyword`` among them, one speaker per stream.

    Each espeak-ng speaker (variant + random accent/speed/pitch) renders the vocabulary and filler words once;
    human-derived speakers (`human_speakers`, ``human_streams`` streams per split) say them at one random
    speed/pitch/formant factor (`change_speed`). A stream strings together one speaker's words (each slot the
    keyword with probability 0.25, each word at a random level) with pauses of 0.05-0.6 s; human-derived and
    training streams then pass a random room and line (`channel`) and noise. Returns ``x`` ``[N, T, F]``,
    ``split``, ``voice``, ``source``, ``snr`` and ``events`` ``[M, 3]`` (stream index, first frame, last
    frame + 1 of each keyword occurrence).
    """
    config = {
        "kind": "kws",
        "front": front.to_dict(),
        "keyword": keyword,
        "streams": streams,
        "seconds": seconds,
    }
    config |= {"seed": seed, "words": WORDS, "fillers": FILLERS, "accents": ACCENTS, "snrs": SNRS_DB}
    config |= {"human_streams": human_streams, **_dataset_config()}
    vocabulary = [w for w in WORDS + FILLERS if w != keyword]
    texts = [keyword, *vocabulary]

    def build() -> dict[str, np.ndarray]:
        splits = split_variants(seed)
        rng = np.random.default_rng(seed + 1)
        speakers: list[tuple[int, Voice]] = []
        for s, part in enumerate(("train", "val", "test")):
            # Enough speakers that each renders ~10 streams; every variant of the part is used.
            n = max(len(splits[part]), streams[s] // 10)
            speakers += [(s, random_voice(splits[part][k % len(splits[part])], rng)) for k in range(n)]
        waves = render_many([(t, v, 0) for _, v in speakers for t in texts])
        banks = [waves[i * len(texts) : (i + 1) * len(texts)] for i in range(len(speakers))]
        names = [v.name for _, v in speakers]
        owners = [(s, 0) for s, _ in speakers]
        human = human_bank(WORDS + FILLERS, seed)
        order = [(WORDS + FILLERS).index(t) for t in texts]
        for s, part in enumerate(("train", "val", "test")):
            for speaker in human_speakers(human, part):
                banks.append([speaker.say(j) for j in order])
                names.append(speaker.name)
                owners.append((s, 1))
        length = int(seconds * SAMPLE_RATE)
        xs, split, voice, source, snr, events = [], [], [], [], [], []
        for s in range(3):
            for origin, count in ((0, streams[s]), (1, human_streams[s])):
                mine = [i for i, o in enumerate(owners) if o == (s, origin)]
                for _ in range(count):
                    k = mine[int(rng.integers(len(mine)))]
                    speed = rng.uniform(*SPEED_RANGE) if origin == 1 else 1.0
                    audio = np.zeros(length, dtype="float32")
                    t = int(rng.uniform(0.0, 0.5) * SAMPLE_RATE)
                    while True:
                        j = 0 if rng.random() < 0.25 else int(rng.integers(1, len(texts)))
                        word = banks[k][j] * float(rng.uniform(0.5, 1.0))
                        if speed != 1.0:
                            word = change_speed(word, speed)
                        if t + len(word) > length:
                            break
                        audio[t : t + len(word)] = word
                        if j == 0:  # frames whose window overlaps the keyword
                            events.append((len(xs), *front.frame_span(t, t + len(word))))
                        t += len(word) + int(rng.uniform(0.05, 0.6) * SAMPLE_RATE)
                    if _augmented(s, origin):
                        audio = channel(audio, rng)[:length]
                    level = _snr(s, origin, rng)
                    exponent = (
                        float(rng.choice(list(NOISE_COLOURS.values()))) if _augmented(s, origin) else 0.0
                    )
                    xs.append(front(add_noise(audio, level, rng, exponent)))
                    split.append(s)
                    voice.append(names[k])
                    source.append(origin)
                    snr.append(np.inf if level is None else level)
        return {
            "x": np.stack(xs),
            "split": np.array(split),
            "voice": np.array(voice),
            "source": np.array(source),
            "snr": np.array(snr),
            "events": np.array(events, dtype="int64").reshape(-1, 3),
        }

    return cached("kws", config, build)


def join_words(words: Sequence[np.ndarray], pauses: Sequence[float]) -> np.ndarray:
    """Words (waveforms) strung together with ``pauses`` (seconds, one fewer than words) of silence between."""
    parts: list[np.ndarray] = []
    for i, word in enumerate(words):
        if i:
            parts.append(np.zeros(int(pauses[i - 1] * SAMPLE_RATE), "float32"))
        parts.append(np.asarray(word, "float32"))
    return np.concatenate(parts)


def connected_digits(
    front: FrontEnd,
    utterances: tuple[int, int, int] = (3000, 300, 500),
    max_digits: int = 6,
    seconds: float = 4.5,
    seed: int = 0,
    human_utterances: tuple[int, int, int] = (1500, 300, 300),
) -> dict:
    """Strings of 1-``max_digits`` digits: espeak-ng says them in one breath (``"three one four"``), and
    human-derived speakers' separate digits are joined with random pauses of ``DIGIT_PAUSES`` seconds.

    Random variant / person (by split), accent, speed, pitch, word gap (espeak-ng: 0-120 ms) and SNR, placed
    by `speech_clip`. Returns ``x`` ``[N, T, F]`` (a ``seconds`` canvas; espeak-ng renderings too long for it
    are re-drawn faster, joined digits get shorter pauses), ``labels`` ``[N, max_digits]`` (digit + 1,
    0-padded: 0 is the CTC blank), ``split``, ``voice``, ``source``, ``snr``.
    """
    config = {
        "kind": "digits",
        "front": front.to_dict(),
        "n": utterances,
        "max": max_digits,
        "seconds": seconds,
    }
    config |= {"seed": seed, "accents": ACCENTS, "snrs": SNRS_DB, "speed": SPEED_WPM, "pitch": PITCH}
    config |= {"human_utterances": human_utterances, "pauses": DIGIT_PAUSES, **_dataset_config()}

    def build() -> dict[str, np.ndarray]:
        splits = split_variants(seed)
        rng = np.random.default_rng(seed + 2)
        jobs, meta = [], []
        for s, part in enumerate(("train", "val", "test")):
            for _ in range(utterances[s]):
                digits = rng.integers(0, 10, size=int(rng.integers(1, max_digits + 1)))
                voice = random_voice(str(rng.choice(splits[part])), rng)
                jobs.append((" ".join(DIGITS[d] for d in digits), voice, int(rng.integers(0, 13))))
                meta.append((digits, s, voice.name, 0))
        waves = render_many(jobs)
        length = int(seconds * SAMPLE_RATE)
        for i, wave in enumerate(waves):
            while len(wave) > length - int(0.05 * SAMPLE_RATE):  # too slow to fit: same voice, faster
                text, voice, gap = jobs[i]
                voice = Voice(voice.accent, voice.variant, voice.speed + 30, voice.pitch)
                jobs[i] = (text, voice, max(0, gap - 4))
                wave = waves[i] = synthesise(*jobs[i])
            meta[i] = (meta[i][0], meta[i][1], jobs[i][1].name, 0)
        bank = human_bank(WORDS + FILLERS, seed)
        # Room for the joined digits at the slowest speed factor, the offset and the trim's margins.
        room = int((length - 0.5 * SAMPLE_RATE) * SPEED_RANGE[0])
        for s, part in enumerate(("train", "val", "test")):
            speakers = human_speakers(bank, part)
            for _ in range(human_utterances[s]):
                digits = rng.integers(0, 10, size=int(rng.integers(1, max_digits + 1)))
                speaker = speakers[int(rng.integers(len(speakers)))]
                words = [speaker.say(int(d)) for d in digits]
                pauses = rng.uniform(*DIGIT_PAUSES, size=len(digits) - 1)
                spare = room - sum(len(w) for w in words)
                if pauses.sum() * SAMPLE_RATE > spare:
                    pauses *= max(0.0, spare) / (pauses.sum() * SAMPLE_RATE)
                waves.append(join_words(words, pauses))
                meta.append((digits, s, speaker.name, 1))
        xs, snrs = [], []
        labels = np.zeros((len(meta), max_digits), dtype="int32")
        for i, (wave, (digits, s, _, source)) in enumerate(zip(waves, meta, strict=True)):
            r = np.random.default_rng([seed, 7, i])
            snrs.append(_snr(s, source, r))
            xs.append(
                front(speech_clip(wave, length, r, int(0.3 * SAMPLE_RATE), snrs[-1], _augmented(s, source)))
            )
            labels[i, : len(digits)] = digits + 1
        return {
            "x": np.stack(xs),
            "labels": labels,
            "split": np.array([m[1] for m in meta]),
            "voice": np.array([m[2] for m in meta]),
            "source": np.array([m[3] for m in meta]),
            "snr": np.array([np.inf if v is None else v for v in snrs]),
        }

    return cached("digits", config, build)
