"""Speech data: UEA JapaneseVowels (ships in aeon) and audio synthesised offline by Debian's espeak-ng, flite and festival.

No speech corpus can be downloaded here, so spoken words, keyword streams and connected digits are rendered by
a real text-to-speech engine with many voices: every ``espeak-ng`` voice variant (``+m1``, ``+f3``,
``+klatt``, ``+whisper``, … 101 of them) combined with eight English accents, at random speeds and pitches,
with white noise at several signal-to-noise ratios. Voice *variants* are split disjointly between train,
validation and test, so a test score measures generalisation to voices never heard in training.

Rendering is deterministic for a given seed and ``espeak-ng`` version; features are cached in the user cache
(``~/.cache/rnn-zoo/speech``), keyed by a hash of everything that shapes them.
"""

from __future__ import annotations

import functools
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

from zoo.audio import (
    VAD_FRAME_SECONDS,
    VAD_MARGIN_SECONDS,
    VAD_RANGE_DB,
    FrontEnd,
    read_wav,
    trim_silence,
)
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


def add_noise(
    wave: np.ndarray, snr_db: float | None, rng: np.random.Generator, exponent: float = 0.0
) -> np.ndarray:
    """Gaussian noise at ``snr_db`` relative to the power of the speech (its non-silent samples): white, or
    with a power spectrum falling as ``1 / f**exponent`` (`coloured_noise`: 1 pink, 2 brown)."""
    if snr_db is None:
        return wave.astype("float32")
    speech = wave[np.abs(wave) > 1e-3]
    power = float(np.mean(speech**2)) if len(speech) else float(np.mean(wave**2))
    unit = rng.normal(size=wave.shape) if exponent == 0.0 else coloured_noise(len(wave), exponent, rng)
    return (wave + unit * np.sqrt(power / 10 ** (snr_db / 10))).astype("float32")


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


def cache_key(config: dict) -> str:
    """The hash that names a cached speech array file: ``config`` and the espeak-ng version."""
    return hashlib.sha256(
        json.dumps({**config, "espeak": espeak_version()}, sort_keys=True).encode()
    ).hexdigest()


def cached(name: str, config: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays from ``~/.cache/rnn-zoo/speech/<name>-<hash>.npz``, building and saving them on the first call."""
    path = cache_dir("speech") / f"{name}-{cache_key(config)[:12]}.npz"
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
# Voices made from recordings of real people: flite and festival (Debian). espeak-ng's formant synthesis
# alone taught the models espeak-ng, not speech (0 of 10 real recorded digits right); these voices are
# concatenations (diphone) or statistical models (clustergen, HTS) of human recordings, so their spectra carry
# real vocal tracts. Several engines share one person, and the split is by *person*, so no recorded speaker is
# heard in two splits.


@dataclass(frozen=True)
class HumanVoice:
    """One engine voice built from the recordings of ``person``."""

    engine: str  # "flite" or "festival"
    voice: str  # flite -voice NAME, or festival voice_NAME
    person: str
    language: str = "en"  # not "en": the voice reads `RESPELLED` English words (accented English)

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.voice}"


HUMAN_VOICES = (
    HumanVoice("flite", "kal", "kal"),  # diphone voice, 8 kHz (upsampled)
    HumanVoice("flite", "kal16", "kal"),
    HumanVoice("festival", "kal_diphone", "kal"),
    HumanVoice("flite", "rms", "rms"),  # clustergen voices from the CMU ARCTIC speakers
    HumanVoice("flite", "slt", "slt"),
    HumanVoice("festival", "cmu_us_slt_arctic_hts", "slt"),
    HumanVoice("flite", "awb", "awb"),
    HumanVoice("festival", "ked_diphone", "ked"),
    # Festival voices of other languages, recorded from Italian, Catalan, Czech and Finnish speakers, reading
    # the English words respelled in their orthography: accented English, but more real vocal tracts (Debian
    # has only three English people's voices, one a woman; the real test voice is a woman).
    HumanVoice("festival", "lp_diphone", "lp", "it"),  # woman, diphone
    HumanVoice("festival", "pc_diphone", "pc", "it"),  # man, diphone
    HumanVoice("festival", "upc_ca_ona_hts", "ona", "ca"),  # woman, HTS
    HumanVoice("festival", "suo_fi_lj_diphone", "lj", "fi"),  # woman, diphone
    HumanVoice("festival", "hy_fi_mv_diphone", "mv", "fi"),  # man, diphone
    HumanVoice("festival", "czech_machac", "machac", "cs"),  # man, diphone
    HumanVoice("festival", "czech_dita", "dita", "cs"),  # woman, diphone
)
# By person. kal, rms (men, American), slt (woman, American) and the six speakers of other languages train;
# awb (man, Scottish) and dita (woman, Czech) validate and choose; ked (man, American) tests. Channel and
# vocal-tract augmentation (`perturb_voice`) stretches these few people into many more.
PERSON_SPLIT = {
    "train": ("kal", "rms", "slt", "lp", "pc", "ona", "lj", "mv", "machac"),
    "val": ("awb", "dita"),
    "test": ("ked",),
}
# The English words as the voices of other languages should read them: a plain continental spelling that
# Italian, Catalan, Czech and Finnish letter-to-sound rules all turn into the English sounds, near enough (the
# word classifier of stop 23, trained on none of these voices, recognised 12-18 of the 20 words per voice).
RESPELLED = {
    "zero": "zirou", "one": "uan", "two": "tu", "three": "tri", "four": "for", "five": "faiv", "six": "siks",
    "seven": "seven", "eight": "eit", "nine": "nain", "yes": "ies", "no": "nou", "up": "ap", "down": "daun",
    "left": "left", "right": "rait", "on": "on", "off": "of", "stop": "stop", "go": "gou", "hello": "helou",
    "please": "pliis", "the": "de", "weather": "ueder", "today": "tudei", "music": "miuzik", "open": "oupen",
    "window": "uindou", "coffee": "kofi", "eleven": "ileven",
}  # fmt: skip
# Prosody of each word rendering: duration stretch (both engines) x mean F0 target in Hz (flite only:
# festival's diphone and HTS voices keep their own intonation, and resampling shifts pitch anyway).
# 1.5: slow, careful speech (a word said on its own, dictation, prompts) lasts half as long again as the
# engines' default reading; 220 Hz: a higher voice than the engines' own.
HUMAN_STRETCH = (0.8, 1.0, 1.25, 1.5)
HUMAN_F0 = (95, 130, 180, 220)


def human_voices(part: str) -> list[HumanVoice]:
    """The engine voices of the persons in split ``part`` (``train`` / ``val`` / ``test``)."""
    return [v for v in HUMAN_VOICES if v.person in PERSON_SPLIT[part]]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SpeechDataError(f"{name} is not installed: run scripts/setup.sh (apt-get install {package})")
    return path


@functools.cache  # the installed tools do not change within a run, and every cache key asks for them
def human_engine_versions() -> dict[str, str]:
    """Versions of flite and festival (part of the cache key and the card)."""
    flite = subprocess.run([_tool("flite", "flite"), "--version"], capture_output=True, text=True).stdout
    festival = subprocess.run(
        [_tool("festival", "festival"), "--version"], capture_output=True, text=True
    ).stdout
    return {"flite": " ".join(flite.split()[-4:]), "festival": festival.strip()}


def synthesise_human(text: str, voice: HumanVoice, stretch: float = 1.0, f0: int | None = None) -> np.ndarray:
    """Render ``text`` with a flite / festival voice -> mono float32 at 16 kHz, digital silence removed."""
    if voice.language != "en":
        text = " ".join(RESPELLED.get(word, word) for word in text.split())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        if voice.engine == "flite":
            cmd = [_tool("flite", "flite"), "-voice", voice.voice, "--setf", f"duration_stretch={stretch}"]
            cmd += ["--setf", f"int_f0_target_mean={f0}"] if f0 else []
            run = subprocess.run([*cmd, "-t", text, "-o", str(out)], capture_output=True, text=True)
        else:
            cmd = [_tool("text2wave", "festival"), "-o", str(out), "-eval", f"(voice_{voice.voice})"]
            cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {stretch})"]
            run = subprocess.run(cmd, input=text, capture_output=True, text=True)
        if run.returncode != 0 or not out.is_file():
            raise SpeechDataError(f"{voice.name} failed: {run.stderr.strip()[:200]}")
        wave = read_wav(out, SAMPLE_RATE, check_silence=False)
    active = np.flatnonzero(np.abs(wave) > 1e-4)
    return wave[active[0] : active[-1] + 1] if len(active) else wave


def human_rendering() -> dict:
    """Everything that shapes how the human-derived voices say a word: part of the voice bank's cache key and,
    through `_dataset_config`, of every dataset's (a dataset built from an older bank must not be reused)."""
    return {
        "voices": [v.name for v in HUMAN_VOICES],
        "respelled": RESPELLED,
        "stretch": HUMAN_STRETCH,
        "f0": HUMAN_F0,
        "engines": human_engine_versions(),
    }


def human_bank(words: Sequence[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Every word said once by every `HUMAN_VOICES` voice at every prosody setting (cached).

    Returns ``audio`` (all renderings concatenated), ``offsets`` ``[N + 1]``, ``voice`` (index into
    HUMAN_VOICES), ``word`` (index into ``words``), ``stretch``, ``f0`` (0: the voice's own).
    """
    jobs = []
    for v, voice in enumerate(HUMAN_VOICES):
        f0s = HUMAN_F0 if voice.engine == "flite" else (0,)
        for stretch in HUMAN_STRETCH:
            for f0 in f0s:
                jobs += [(v, w, stretch, f0) for w in range(len(words))]
    config = {"kind": "human-bank", "words": list(words), **human_rendering()}

    def build() -> dict[str, np.ndarray]:
        with ThreadPoolExecutor(_threads()) as pool:
            waves = list(
                pool.map(
                    lambda j: synthesise_human(words[j[1]], HUMAN_VOICES[j[0]], j[2], j[3] or None), jobs
                )
            )
        return {
            "audio": np.concatenate(waves).astype("float32"),
            "offsets": np.cumsum([0] + [len(w) for w in waves]),
            "voice": np.array([j[0] for j in jobs]),
            "word": np.array([j[1] for j in jobs]),
            "stretch": np.array([j[2] for j in jobs]),
            "f0": np.array([j[3] for j in jobs]),
        }

    return cached("human-bank", config, build)


class HumanSpeaker:
    """One human-derived speaker of a split: an engine voice at one prosody setting, with all its words."""

    def __init__(self, bank: dict[str, np.ndarray], rows: np.ndarray, name: str, person: str) -> None:
        self.name = name
        self.person = person
        # Trimmed as recordings are before they are joined (`zoo.data.real_voice`): pauses are then pauses.
        self._words = {
            int(bank["word"][i]): trim_silence(bank["audio"][bank["offsets"][i] : bank["offsets"][i + 1]])
            for i in rows
        }

    def say(self, word: int) -> np.ndarray:
        return self._words[word]


def human_speakers(bank: dict[str, np.ndarray], part: str) -> list[HumanSpeaker]:
    """Every (engine voice, prosody) speaker of the persons in ``part``."""
    names = [v.name for v in HUMAN_VOICES]
    out = []
    for voice in human_voices(part):
        v = names.index(voice.name)
        mine = bank["voice"] == v
        for stretch, f0 in sorted(
            {(float(a), int(b)) for a, b in zip(bank["stretch"][mine], bank["f0"][mine], strict=True)}
        ):
            rows = np.flatnonzero(mine & (bank["stretch"] == stretch) & (bank["f0"] == f0))
            name = f"{voice.name}/x{stretch:g}" + (f"/{f0}Hz" if f0 else "")
            out.append(HumanSpeaker(bank, rows, name, voice.person))
    return out


# ------------------------------------------------------------------------------------------------------------
# Channel and speaker augmentation, on waveforms (training clips only).

SPEED_RANGE = (0.82, 1.22)  # resampling factor: tempo, pitch and formants all scale by it
REVERB_RT60 = (0.15, 0.7)  # seconds
MIC_TILT_DB_PER_OCTAVE = 2.0  # +-: about +-7 dB across the telephone band
TELEPHONE_BAND_HZ = (300.0, 3400.0)
AUG_SNRS_DB = (None, 30.0, 20.0, 15.0, 10.0, 5.0)
GAIN_DB = 12.0
SILENCE_SECONDS = (0.0, 0.4)  # random leading / trailing silence before the voice-activity step
DIGIT_PAUSES = (0.03, 0.6)  # seconds between joined digits (human-derived connected digits)


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster by resampling: tempo, pitch and formant frequencies all scale by
    ``factor`` (a vocal-tract-length perturbation: 1.2 turns a man's formants towards a woman's)."""
    import scipy.signal

    down = int(round(100 * factor))
    return scipy.signal.resample_poly(np.asarray(wave, "float64"), 100, down).astype("float32")


def telephone_band(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A telephone channel: down to 8 kHz and back (nothing left above 4 kHz), then 300-3400 Hz band-pass."""
    import scipy.signal

    narrow = scipy.signal.resample_poly(np.asarray(wave, "float64"), 8000, sample_rate)
    sos = scipy.signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=8000, output="sos")
    narrow = scipy.signal.sosfilt(sos, narrow)
    return scipy.signal.resample_poly(narrow, sample_rate, 8000)[: len(wave)].astype("float32")


def room_impulse(rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A simulated room impulse response: the direct path, then a diffuse tail of Gaussian noise whose
    energy decays by 60 dB in ``rt60`` seconds (Sabine's exponential decay), starting 1-5 ms after it at a
    random direct-to-reverberant ratio."""
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.normal(size=n) * 10 ** (-3 * t / rt60)  # amplitude: -60 dB of energy at rt60
    delay = int(rng.uniform(0.001, 0.005) * sample_rate)
    tail[:delay] = 0.0
    tail *= np.sqrt(10 ** (-rng.uniform(-3.0, 12.0) / 10) / float((tail**2).sum()))
    tail[0] = 1.0
    return tail.astype("float32")


def reverberate(wave: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    """``wave`` heard through ``impulse`` (the reverberant tail kept), at the original peak level."""
    import scipy.signal

    out = scipy.signal.fftconvolve(wave, impulse)
    return (out * (np.abs(wave).max() / max(1e-9, np.abs(out).max()))).astype("float32")


def spectral_tilt(wave: np.ndarray, db_per_octave: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``wave`` through a microphone whose response rises (or falls) by ``db_per_octave`` either side of
    1 kHz (flat below 100 Hz), at the original RMS level: voices and microphones differ most in spectral slope."""
    spectrum = np.fft.rfft(np.asarray(wave, "float64"))
    f = np.fft.rfftfreq(len(wave), 1 / sample_rate)
    out = np.fft.irfft(
        spectrum * 10 ** (db_per_octave * np.log2(np.maximum(f, 100.0) / 1000.0) / 20), len(wave)
    )
    return (out * np.sqrt(np.mean(np.square(wave)) / max(1e-20, float(np.mean(out**2))))).astype("float32")


def channel(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random microphone, room and line: spectral tilt (p 0.5, `spectral_tilt`), reverberation (p 0.4,
    `room_impulse`), then telephone band (p 0.4)."""
    if rng.random() < 0.5:
        wave = spectral_tilt(wave, rng.uniform(-MIC_TILT_DB_PER_OCTAVE, MIC_TILT_DB_PER_OCTAVE))
    if rng.random() < 0.4:
        wave = reverberate(wave, room_impulse(rng.uniform(*REVERB_RT60), rng))
    if rng.random() < 0.4:
        wave = telephone_band(wave)
    return np.asarray(wave, "float32")


def perturb_voice(wave: np.ndarray, rng: np.random.Generator, max_length: int | None = None) -> np.ndarray:
    """A random speaker and channel: speed/pitch/formants (`change_speed`, faster where needed so the result
    fits ``max_length`` samples), `channel`, and gain (+-``GAIN_DB`` dB)."""
    factor = rng.uniform(*SPEED_RANGE)
    if max_length:
        factor = max(factor, len(wave) / max_length)
    wave = channel(change_speed(wave, factor), rng)
    return (wave * 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20)).astype("float32")


def speech_clip(
    wave: np.ndarray,
    length: int,
    rng: np.random.Generator,
    max_offset: int,
    snr_db: float | None,
    augment: bool,
) -> np.ndarray:
    """One clip as a model sees it: (``augment``: `perturb_voice`) -> random leading/trailing silence ->
    noise at ``snr_db`` (white, pink or brown with ``augment``, else white) -> voice-activity trim
    (`zoo.audio.trim_silence`, what inference does too) -> at a random offset in ``length`` samples."""
    if augment:
        # Never cut the speech: what the trim keeps (speech + margins) must fit the canvas.
        room = length - int((2 * VAD_MARGIN_SECONDS + 0.02) * SAMPLE_RATE)
        wave = perturb_voice(wave, rng, max_length=room)
    pad = [np.zeros(int(rng.uniform(*SILENCE_SECONDS) * SAMPLE_RATE), "float32") for _ in range(2)]
    wave = np.concatenate([pad[0], wave, pad[1]])
    exponent = float(rng.choice(list(NOISE_COLOURS.values()))) if augment else 0.0
    wave = trim_silence(add_noise(wave, snr_db, rng, exponent), SAMPLE_RATE)
    return fit_canvas(wave, length, rng, max_offset)


def augmentation_card() -> dict:
    """What `speech_clip` / `perturb_voice` do to training clips, for the card."""
    return {
        "speed_pitch_formants": f"resampling by {SPEED_RANGE[0]}-{SPEED_RANGE[1]} (vocal-tract-length "
        "perturbation: tempo, pitch and formants scale together)",
        "microphone": f"p 0.5: spectral tilt +-{MIC_TILT_DB_PER_OCTAVE:g} dB/octave about 1 kHz",
        "reverberation": f"p 0.4: simulated room impulse response, RT60 {REVERB_RT60[0]}-{REVERB_RT60[1]} s, "
        "direct-to-reverberant ratio -3 to 12 dB",
        "telephone_band": f"p 0.4: 8 kHz round trip and {TELEPHONE_BAND_HZ[0]:g}-{TELEPHONE_BAND_HZ[1]:g} Hz "
        "band-pass",
        "gain_db": f"+-{GAIN_DB:g}",
        "noise": "white, pink or brown at SNR "
        + ", ".join("clean" if s is None else f"{s:g} dB" for s in AUG_SNRS_DB),
        "silence": f"{SILENCE_SECONDS[0]}-{SILENCE_SECONDS[1]} s before and after, then the voice-activity trim",
    }


def vad_card() -> dict:
    """The voice-activity step (`zoo.audio.speech_span`), for the card."""
    from zoo.audio import VAD_ABOVE_FLOOR_DB, VAD_BAND_HZ

    return {
        "function": "zoo.audio.trim_silence",
        "band_hz": list(VAD_BAND_HZ),
        "frame_seconds": VAD_FRAME_SECONDS,
        "range_db": VAD_RANGE_DB,
        "above_floor_db": VAD_ABOVE_FLOOR_DB,
        "margin_seconds": VAD_MARGIN_SECONDS,
    }


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
    # 120 per word in training: twice the first figure, preferred on the validation persons (issue 16).
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
