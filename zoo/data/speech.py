"""Speech data: UEA JapaneseVowels (ships in aeon) and audio synthesised offline by Debian's ``espeak-ng``.

No speech corpus can be downloaded here, so spoken words, keyword streams and connected digits are rendered by
a real text-to-speech engine with many voices: every ``espeak-ng`` voice variant (``+m1``, ``+f3``,
``+klatt``, ``+whisper``, … 101 of them) combined with eight English accents, at random speeds and pitches,
with white noise at several signal-to-noise ratios. Voice *variants* are split disjointly between train,
validation and test, so a test score measures generalisation to voices never heard in training.

Rendering is deterministic for a given seed and ``espeak-ng`` version; features are cached in the user cache
(``~/.cache/rnn-zoo/speech``), keyed by a hash of everything that shapes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.audio import FrontEnd, read_wav
from zoo.data._files import cache_dir, package_file

SAMPLE_RATE = 16000

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
WORDS = DIGITS + COMMANDS
# Words that are not in the vocabulary, spoken between keywords in continuous streams (some sound alike).
FILLERS = ["hello", "please", "the", "weather", "today", "music", "open", "window", "coffee", "eleven"]
# The English accents ("languages") of espeak-ng's own voices; the mbrola voices need an extra binary.
ACCENTS = [
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
]
SNRS_DB = (None, 30.0, 20.0, 10.0)  # None: the clean rendering
SPEED_WPM = (110, 230)
PITCH = (15, 85)

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


# ------------------------------------------------------------------------------------------------------------
# espeak-ng


class SpeechDataError(RuntimeError):
    """The synthesiser is missing or failed; the message says how to fix it."""


def espeak_binary() -> str:
    """Path of ``espeak-ng``, or an error that says how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechDataError("espeak-ng is not installed: run scripts/setup.sh (apt-get install espeak-ng)")
    return path


def espeak_version() -> str:
    """The synthesiser's version line (part of every cache key and card)."""
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("Data at")[0].strip()


def voice_variants() -> list[str]:
    """Every espeak-ng voice variant installed (``m1``, ``f3``, ``klatt``, ``whisper``…), sorted."""
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    data = Path(out.split("Data at:")[-1].strip())
    folder = data / "voices" / "!v"
    if not folder.is_dir():
        raise SpeechDataError(f"no espeak-ng voice variants under {folder}")
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def split_variants(seed: int = 0, n_val: int = 12, n_test: int = 15) -> dict[str, list[str]]:
    """Voice variants split disjointly into ``train`` / ``val`` / ``test`` by a seeded permutation."""
    names = voice_variants()
    order = np.random.default_rng(seed).permutation(len(names))
    test = sorted(names[i] for i in order[:n_test])
    val = sorted(names[i] for i in order[n_test : n_test + n_val])
    train = sorted(names[i] for i in order[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: accent, variant, speed (words per minute) and pitch (0-99)."""

    accent: str
    variant: str
    speed: int
    pitch: int

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"


def synthesise(text: str, voice: Voice, word_gap: int = 0) -> np.ndarray:
    """Render ``text`` with ``voice`` -> mono float32 at 16 kHz, leading/trailing digital silence removed.

    Args:
        word_gap: extra pause between words, in units of 10 ms (``espeak-ng -g``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        cmd = [espeak_binary(), "-v", f"{voice.accent}+{voice.variant}", "-s", str(voice.speed)]
        cmd += ["-p", str(voice.pitch), "-g", str(word_gap), "-w", str(out), text]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0 or not out.is_file():
            raise SpeechDataError(f"espeak-ng failed for {voice.name}: {run.stderr.strip()[:200]}")
        wave = read_wav(out, SAMPLE_RATE, check_silence=False)
    active = np.flatnonzero(np.abs(wave) > 1e-4)
    return wave[active[0] : active[-1] + 1] if len(active) else wave


def add_noise(wave: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the power of the speech (its non-silent samples)."""
    if snr_db is None:
        return wave.astype("float32")
    speech = wave[np.abs(wave) > 1e-3]
    power = float(np.mean(speech**2)) if len(speech) else float(np.mean(wave**2))
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), size=wave.shape)
    return (wave + noise).astype("float32")


def random_voice(variant: str, rng: np.random.Generator) -> Voice:
    """A speaker with the given variant and a random accent, speed and pitch."""
    return Voice(
        accent=str(rng.choice(ACCENTS)),
        variant=variant,
        speed=int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1)),
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
    )


def _threads() -> int:
    return max(2, min(6, (os.cpu_count() or 2) * 2))


def render_many(jobs: Sequence[tuple[str, Voice, int]]) -> list[np.ndarray]:
    """Synthesise ``(text, voice, word_gap)`` jobs in parallel (espeak-ng runs as separate processes)."""
    with ThreadPoolExecutor(_threads()) as pool:
        return list(pool.map(lambda j: synthesise(*j), jobs))


def cached(name: str, config: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays from ``~/.cache/rnn-zoo/speech/<name>-<hash>.npz``, building and saving them on the first call."""
    key = hashlib.sha256(
        json.dumps({**config, "espeak": espeak_version()}, sort_keys=True).encode()
    ).hexdigest()
    path = cache_dir("speech") / f"{name}-{key[:12]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return arrays


NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise of ``n`` samples whose power spectrum falls as ``1 / f**exponent``."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), n=n)
    return (noise / noise.std()).astype("float32")


def augment_features(
    x: np.ndarray,
    frames: np.ndarray,
    front: FrontEnd,
    rng: np.random.Generator,
    snr_db: tuple[float, float] = (0.0, 20.0),
    gain_db: float = 6.0,
    time_mask: int = 6,
    freq_mask: int = 5,
    fill: np.ndarray | None = None,
) -> np.ndarray:
    """Randomised copies of log-mel clips ``x`` ``[N, T, F]``: extra noise, gain and SpecAugment masks.

    Noise is added where it adds, in the mel power domain: ``log(exp(x) + noise)``, with ``noise`` the mel
    energies of a real white, pink or brown noise waveform passed through ``front`` (so it carries the
    periodogram's fluctuation), scaled to an SNR drawn uniformly from ``snr_db`` against the clip's speech
    power, as `add_noise` does on waveforms: the mean power of its ``frames`` loudest frames, read back from
    the mel energies through band weights that make the filters sum to one on every frequency bin (so it is
    the power between ``fmin`` and ``fmax``). Then a random gain of +-``gain_db`` dB, one time mask of up to
    ``time_mask`` frames and one band mask of up to ``freq_mask`` mel bands (filled with ``fill``, per band,
    e.g. the training mean; default the clip's mean).
    """
    from zoo.audio import LOG_FLOOR

    n, t, f = x.shape
    length = front.win_length + (t - 1) * front.hop
    colours = list(NOISE_COLOURS.values())
    # Band weights with weights @ filters = 1 on the bins between fmin and fmax: mel energy -> frame power.
    mel = front._mel
    bins = np.fft.rfftfreq(front.n_fft, 1 / front.sample_rate)
    inside = (bins >= front.fmin) & (bins <= (front.fmax or front.sample_rate / 2))
    weights = np.linalg.lstsq(mel.T, inside.astype("float64"), rcond=None)[0]
    # Frame power of unit-variance white noise: the reference that turns frame power into signal power.
    white = float((np.exp(front(coloured_noise(length, 0.0, rng))) @ weights).mean())
    out = np.empty_like(x)
    for i in range(n):
        energy = np.maximum(np.exp(x[i].astype("float64")) - LOG_FLOOR, 0.0)
        total = energy @ weights
        loud = np.sort(total)[-max(1, int(frames[i])) :]
        power = float(loud.mean()) / white
        snr = rng.uniform(*snr_db)
        noise = np.exp(front(coloured_noise(length, colours[int(rng.integers(len(colours)))], rng)))
        energy = energy + (noise - LOG_FLOOR) * power / 10 ** (snr / 10)
        energy *= 10 ** (rng.uniform(-gain_db, gain_db) / 10)
        clip = np.log(energy + LOG_FLOOR).astype("float32")
        band_fill = clip.mean(0) if fill is None else np.asarray(fill, "float32")
        width = int(rng.integers(0, time_mask + 1))
        start = int(rng.integers(0, t - width + 1))
        clip[start : start + width] = band_fill
        width = int(rng.integers(0, freq_mask + 1))
        start = int(rng.integers(0, f - width + 1))
        clip[:, start : start + width] = band_fill[start : start + width]
        out[i] = clip
    return out


def fit_canvas(wave: np.ndarray, length: int, rng: np.random.Generator, max_offset: int) -> np.ndarray:
    """Place ``wave`` at a random offset (0..max_offset samples) in ``length`` samples of silence."""
    out = np.zeros(length, dtype="float32")
    offset = int(rng.integers(0, max(1, min(max_offset, length - len(wave)) + 1)))
    piece = wave[: length - offset]
    out[offset : offset + len(piece)] = piece
    return out


# ------------------------------------------------------------------------------------------------------------
# Datasets. Each returns features (not audio) for every split, so training never re-synthesises.


def spoken_words(front: FrontEnd, renditions: int = 2, seconds: float = 1.2, seed: int = 0) -> dict:
    """Isolated words: every variant says every word ``renditions`` times (random accent/speed/pitch/SNR).

    Returns arrays ``x`` ``[N, T, F]`` (log-mel of a ``seconds`` canvas), ``y`` word index, ``split``
    (0 train, 1 validation, 2 test, by voice variant), ``voice`` (accent+variant), ``snr`` (dB, inf: clean)
    and ``frames`` (frames that hold speech, for the mean-MFCC baseline).
    """
    config = {"kind": "words", "front": front.to_dict(), "renditions": renditions, "seconds": seconds}
    config |= {
        "seed": seed,
        "words": WORDS,
        "accents": ACCENTS,
        "snrs": SNRS_DB,
        "speed": SPEED_WPM,
        "pitch": PITCH,
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
                        meta.append((w, s, voice.name, SNRS_DB[int(rng.integers(len(SNRS_DB)))]))
        waves = render_many(jobs)
        length = int(seconds * SAMPLE_RATE)
        xs, frames = [], []
        for i, (wave, (_, _, _, snr)) in enumerate(zip(waves, meta, strict=True)):
            r = np.random.default_rng([seed, i])
            speech = fit_canvas(wave, length, r, max_offset=int(0.2 * SAMPLE_RATE))
            xs.append(front(add_noise(speech, snr, r)))
            frames.append(min(front.n_frames(len(wave)), xs[-1].shape[0]))
        return {
            "x": np.stack(xs),
            "y": np.array([m[0] for m in meta]),
            "split": np.array([m[1] for m in meta]),
            "voice": np.array([m[2] for m in meta]),
            "snr": np.array([np.inf if m[3] is None else m[3] for m in meta]),
            "frames": np.array(frames),
        }

    return cached("words", config, build)


def keyword_streams(
    front: FrontEnd,
    keyword: str = "seven",
    streams: tuple[int, int, int] = (1500, 200, 300),
    seconds: float = 4.0,
    seed: int = 0,
) -> dict:
    """Continuous audio: words separated by random pauses, ``keyword`` among them, one speaker per stream.

    Each speaker (variant + random accent/speed/pitch) renders the vocabulary and filler words once; a stream
    strings together that speaker's words (each slot the keyword with probability 0.25) with pauses of
    0.05-0.6 s and adds noise at a random SNR. Returns ``x`` ``[N, T, F]``, ``split``, ``voice``, ``snr`` and
    ``events`` ``[M, 3]`` (stream index, first frame, last frame + 1 of each keyword occurrence).
    """
    config = {
        "kind": "kws",
        "front": front.to_dict(),
        "keyword": keyword,
        "streams": streams,
        "seconds": seconds,
    }
    config |= {"seed": seed, "words": WORDS, "fillers": FILLERS, "accents": ACCENTS, "snrs": SNRS_DB}
    vocabulary = [w for w in WORDS + FILLERS if w != keyword]

    def build() -> dict[str, np.ndarray]:
        splits = split_variants(seed)
        rng = np.random.default_rng(seed + 1)
        speakers: list[tuple[int, Voice]] = []
        for s, part in enumerate(("train", "val", "test")):
            # Enough speakers that each renders ~10 streams; every variant of the part is used.
            n = max(len(splits[part]), streams[s] // 10)
            speakers += [(s, random_voice(splits[part][k % len(splits[part])], rng)) for k in range(n)]
        texts = [keyword, *vocabulary]
        waves = render_many([(t, v, 0) for _, v in speakers for t in texts])
        bank = [waves[i * len(texts) : (i + 1) * len(texts)] for i in range(len(speakers))]
        length = int(seconds * SAMPLE_RATE)
        xs, split, voice, snr, events = [], [], [], [], []
        for s in range(3):
            mine = [i for i, (part, _) in enumerate(speakers) if part == s]
            for _ in range(streams[s]):
                k = mine[int(rng.integers(len(mine)))]
                audio = np.zeros(length, dtype="float32")
                t = int(rng.uniform(0.0, 0.5) * SAMPLE_RATE)
                while True:
                    j = 0 if rng.random() < 0.25 else int(rng.integers(1, len(texts)))
                    word = bank[k][j] * float(rng.uniform(0.5, 1.0))
                    if t + len(word) > length:
                        break
                    audio[t : t + len(word)] = word
                    if j == 0:  # frames whose window overlaps the keyword
                        first = max(0, (t - front.win_length) // front.hop + 1)
                        events.append((len(xs), first, (t + len(word)) // front.hop + 1))
                    t += len(word) + int(rng.uniform(0.05, 0.6) * SAMPLE_RATE)
                level = SNRS_DB[int(rng.integers(len(SNRS_DB)))]
                xs.append(front(add_noise(audio, level, rng)))
                split.append(s)
                voice.append(speakers[k][1].name)
                snr.append(np.inf if level is None else level)
        return {
            "x": np.stack(xs),
            "split": np.array(split),
            "voice": np.array(voice),
            "snr": np.array(snr),
            "events": np.array(events, dtype="int64").reshape(-1, 3),
        }

    return cached("kws", config, build)


def connected_digits(
    front: FrontEnd,
    utterances: tuple[int, int, int] = (3000, 300, 500),
    max_digits: int = 6,
    seconds: float = 4.5,
    seed: int = 0,
) -> dict:
    """Strings of 1-``max_digits`` digits spoken in one breath (``espeak-ng "three one four"``).

    Random variant (by split), accent, speed, pitch, word gap (0-120 ms) and SNR. Returns ``x`` ``[N, T, F]``
    (a ``seconds`` canvas; longer renderings are re-drawn faster), ``labels`` ``[N, max_digits]`` (digit + 1,
    0-padded: 0 is the CTC blank), ``split``, ``voice``, ``snr``.
    """
    config = {
        "kind": "digits",
        "front": front.to_dict(),
        "n": utterances,
        "max": max_digits,
        "seconds": seconds,
    }
    config |= {"seed": seed, "accents": ACCENTS, "snrs": SNRS_DB, "speed": SPEED_WPM, "pitch": PITCH}

    def build() -> dict[str, np.ndarray]:
        splits = split_variants(seed)
        rng = np.random.default_rng(seed + 2)
        jobs, meta = [], []
        for s, part in enumerate(("train", "val", "test")):
            for _ in range(utterances[s]):
                digits = rng.integers(0, 10, size=int(rng.integers(1, max_digits + 1)))
                voice = random_voice(str(rng.choice(splits[part])), rng)
                jobs.append((" ".join(DIGITS[d] for d in digits), voice, int(rng.integers(0, 13))))
                meta.append((digits, s, voice.name, SNRS_DB[int(rng.integers(len(SNRS_DB)))]))
        waves = render_many(jobs)
        length = int(seconds * SAMPLE_RATE)
        for i, wave in enumerate(waves):
            while len(wave) > length - int(0.05 * SAMPLE_RATE):  # too slow to fit: same voice, faster
                text, voice, gap = jobs[i]
                voice = Voice(voice.accent, voice.variant, voice.speed + 30, voice.pitch)
                jobs[i] = (text, voice, max(0, gap - 4))
                wave = waves[i] = synthesise(*jobs[i])
        xs = []
        labels = np.zeros((len(meta), max_digits), dtype="int32")
        for i, (wave, (digits, _, _, snr)) in enumerate(zip(waves, meta, strict=True)):
            r = np.random.default_rng([seed, 7, i])
            speech = fit_canvas(wave, length, r, max_offset=int(0.3 * SAMPLE_RATE))
            xs.append(front(add_noise(speech, snr, r)))
            labels[i, : len(digits)] = digits + 1
        return {
            "x": np.stack(xs),
            "labels": labels,
            "split": np.array([m[1] for m in meta]),
            "voice": np.array([jobs[i][1].name for i in range(len(jobs))]),
            "snr": np.array([np.inf if m[3] is None else m[3] for m in meta]),
        }

    return cached("digits", config, build)
