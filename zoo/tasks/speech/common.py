"""What the audio tasks share: their front end, the synthesised datasets' card, how clips are placed and
normalised, and randomised training copies."""

from __future__ import annotations

import numpy as np

from zoo.audio import FrontEnd
from zoo.data import real_voice, speech
from zoo.speech import placed

SPLIT_NAMES = ("train", "val", "test")

# The audio models' front end: 40 log-mel bands up to 3.8 kHz. Speech arrives through telephone lines and
# 8 kHz recorders as often as through wideband microphones; a band both share makes the two look alike (with
# bands up to 7.6 kHz a telephone clip's empty top bands, or noise alone there, was a cue of its own).
SPEECH_FRONT = FrontEnd(fmax=3800.0)


def _synth_dataset_card(what: str, front: FrontEnd) -> dict:
    variants = speech.split_variants()
    engines = speech.human_engine_versions()
    return {
        "name": f"synthesised speech: {what}",
        "origin": f"rendered offline by Debian espeak-ng ({speech.espeak_version()}), flite ({engines['flite']}) "
        f"and festival ({engines['festival']}); not recorded speech, though the flite and festival voices are "
        "built from recordings of real people",
        "voices": f"{len(speech.voice_variants())} espeak-ng voice variants x {len(speech.ACCENTS)} English "
        f"accents ({', '.join(speech.ACCENTS)}); speed {speech.SPEED_WPM[0]}-{speech.SPEED_WPM[1]} wpm, pitch "
        f"{speech.PITCH[0]}-{speech.PITCH[1]}",
        "human_derived_voices": {v.name: v.person for v in speech.HUMAN_VOICES},
        "human_derived_prosody": f"duration stretch {', '.join(map(str, speech.HUMAN_STRETCH))}; flite mean F0 "
        f"{', '.join(map(str, speech.HUMAN_F0))} Hz",
        "noise": "espeak-ng test voices: white Gaussian noise at SNR "
        + ", ".join("clean" if s is None else f"{s:g} dB" for s in speech.SNRS_DB)
        + " (chosen at random per utterance), no channel; every other clip: the augmentation below",
        "augmentation": speech.augmentation_card(),
        "test_voice_variants": variants["test"],
        "validation_voice_variants": variants["val"],
        "persons": {k: list(v) for k, v in speech.PERSON_SPLIT.items()},
        "real_voice_test": f"Debian {real_voice.PACKAGE} ({real_voice.FOLDER}): one woman's studio recordings, "
        "8 kHz, evaluation only (never trained or tuned on); see test_metrics.real_voice",
        "sample_rate_hz": front.sample_rate,
        "licence": "espeak-ng is GPL-3.0, flite BSD-style (CMU), festival and its English voices free (MIT/X11-style, "
        "Edinburgh/CMU/OGI), its Italian voices GPL-2.0+ (ISTC-CNR), Catalan ona LGPL-2.1+ (UPC), Finnish voices "
        "LGPL-2.0+ (Suopuhe), Czech voices GPL-3.0+ (Brailcom), as their Debian copyright files state; the "
        "generated audio is produced by this project. Asterisk sounds (test only): CC BY-SA "
        "3.0 (Digium)",
    }


_SPLIT_HOW = (
    "by voice: espeak-ng voice variants, and flite/festival voices by the person recorded (train "
    + "/".join(speech.PERSON_SPLIT["train"])
    + ", validation "
    + "/".join(speech.PERSON_SPLIT["val"])
    + ", test "
    + "/".join(speech.PERSON_SPLIT["test"])
    + "): train, validation and test voices are disjoint"
)


def _placement(canvas: float, lead: float) -> dict:
    """How a clip model's input is made from audio, in training and at inference (`zoo.audio.place_speech`)."""
    return {
        "function": "zoo.audio.place_speech",
        "canvas_seconds": canvas,
        "lead_seconds": lead,
        "vad": speech.vad_card(),
        "training": f"the trimmed speech at a random offset 0-{2 * lead:g} s (zoo.data.speech.speech_clip)",
    }


def placed_features(waves: list[np.ndarray], preprocessing: dict) -> np.ndarray:
    """Model input ``[N, T, F]`` of clips: each placed as at inference (`zoo.speech.placed`), then padded
    with silence frames to the longest (at least the training canvas)."""
    front = FrontEnd.from_dict(preprocessing["features"])
    feats = [front(placed(w, preprocessing)) for w in waves]
    t = max(len(f) for f in feats)
    silence = front.silence_frame()
    return np.stack([np.concatenate([f, np.tile(silence, (t - len(f), 1))]) for f in feats])


def _audio_frame_step(preprocessing: dict) -> str:
    """One step of a speech model's input, in words: an audio frame of the front end on its card."""
    f = preprocessing["features"]
    return (
        f"one audio frame: {preprocessing['n_features']} {f['type']} features of a "
        f"{1000 * f['win_length'] / f['sample_rate']:g} ms window, every {1000 * f['hop'] / f['sample_rate']:g} ms"
    )


def _split_card(split: np.ndarray, how: str) -> dict:
    return {
        "how": how,
        **{name: int((split == i).sum()) for i, name in enumerate(("train", "validation", "test"))},
    }


def _normalization(mean: np.ndarray, var: np.ndarray) -> dict:
    return {"mean": mean.tolist(), "variance": var.tolist(), "where": "inside the model"}


def _with_augmented_copies(
    x: np.ndarray, frames: np.ndarray, front: FrontEnd, seed: int, copies: int, fill: np.ndarray
) -> np.ndarray:
    """Training clips ``x`` followed by ``copies`` randomised copies of them (`speech.augment_features`)."""
    rng = np.random.default_rng([seed, 6])
    return np.concatenate(
        [x, *(speech.augment_features(x, frames, front, rng, fill=fill) for _ in range(copies))]
    )


def _augmentation_card(copies: int) -> dict:
    return {
        "copies_per_training_clip": copies,
        "how": "speech.augment_features: white/pink/brown noise added in the mel power domain at 0-20 dB SNR, "
        "gain +-6 dB, one time mask <= 6 frames, one band mask <= 5 bands (filled with the training mean); "
        "training split only, on top of the waveform augmentation (dataset.augmentation)",
    }


def _speech_frames(x: np.ndarray, front: FrontEnd) -> np.ndarray:
    """Frames per clip that are not the canvas's digital silence: the trimmed speech with its pauses."""
    return (np.abs(x - front.silence_frame()).max(-1) > 1e-6).sum(1)
