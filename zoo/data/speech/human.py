"""Voices made from recordings of real people (flite and festival), the bank of their words and its speakers."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.audio import (
    read_wav,
    trim_silence,
)
from zoo.data.speech.cache import cached
from zoo.data.speech.espeak import SAMPLE_RATE, SpeechDataError, _threads

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
