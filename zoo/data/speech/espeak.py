"""espeak-ng voices: the vocabulary, the English accents, the voice variants and their split, and rendering text."""

from __future__ import annotations

import os
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
)

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
