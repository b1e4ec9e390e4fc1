"""Noise and augmentation: white, pink and brown noise at an SNR, feature-domain augmentation, and the
speaker and channel perturbation of training waveforms."""

from __future__ import annotations

import numpy as np

from zoo.audio import (
    VAD_FRAME_SECONDS,
    VAD_MARGIN_SECONDS,
    VAD_RANGE_DB,
    FrontEnd,
    trim_silence,
)
from zoo.data.speech.espeak import SAMPLE_RATE


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
