"""Audio front end: WAV files in, log-mel (or MFCC) feature frames out, offline or chunk by chunk.

The zoo's speech models read one feature frame per recurrent step. ``FrontEnd`` turns a waveform into those
frames; ``FrontEnd.stream()`` does the same incrementally, so a microphone or network stream fed in chunks of
any size yields exactly the frames the offline call gives for the whole file (frames are never centred or
padded, so a frame depends only on the samples it covers). Per-feature normalisation is not done here: the
statistics live in the model's own ``Normalization`` layer (`zoo.builder`), so they travel with the model.

Example:
    >>> front = FrontEnd()
    >>> frames = front(read_wav("x.wav", front.sample_rate))    # [steps, 40]
    >>> stream = front.stream()
    >>> for chunk in chunks:                                    # any sizes
    ...     new_frames = stream.push(chunk)                     # [k, 40], k >= 0
"""

from __future__ import annotations

import io
import wave
from dataclasses import asdict, dataclass
from functools import cached_property
from math import gcd
from pathlib import Path

import numpy as np

# Peak level (full scale = 1) under which a file is called silent: below one step of 14-bit audio.
SILENCE_PEAK = 1e-4
# Floor inside the log so digital silence gives a finite, fixed feature value.
LOG_FLOOR = 1e-6


class AudioError(ValueError):
    """An input that is not usable audio (wrong format, empty, silent); the message is one line."""


def read_wav(path: str | Path | bytes, sample_rate: int = 16000, check_silence: bool = True) -> np.ndarray:
    """Read a PCM/float WAV file (any rate, any channels) as mono float32 in [-1, 1] at ``sample_rate``.

    Args:
        path: a file path, or the bytes of a WAV file.
        sample_rate: the rate to resample to (polyphase filter, `scipy.signal.resample_poly`).
        check_silence: refuse audio whose peak is below ``SILENCE_PEAK``.

    Raises:
        AudioError: the file is missing, not a WAV file, in an unsupported sample format, empty or silent.
    """
    import scipy.io.wavfile
    import scipy.signal

    where = "audio bytes" if isinstance(path, bytes) else str(path)
    if not isinstance(path, bytes) and not Path(path).is_file():
        raise AudioError(f"{where}: no such file")
    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    try:
        import warnings

        with warnings.catch_warnings():
            # A stream-written header (e.g. `espeak-ng --stdout`) declares a bogus length; the data is fine.
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            rate, data = scipy.io.wavfile.read(source)
    except (ValueError, EOFError, OSError, wave.Error) as e:
        raise AudioError(f"{where}: not a readable WAV file ({_first_line(e)})") from None
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        x = (data.astype("float32") - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype("float32") / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "f":
        x = data.astype("float32")
    else:
        raise AudioError(f"{where}: unsupported sample format {data.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise AudioError(f"{where}: the file holds no audio samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: the audio contains NaN or infinite samples")
    if check_silence and float(np.abs(x).max()) < SILENCE_PEAK:
        raise AudioError(f"{where}: the audio is silent (peak {float(np.abs(x).max()):.1e} of full scale)")
    if rate != sample_rate:
        g = gcd(int(rate), int(sample_rate))
        x = scipy.signal.resample_poly(x, sample_rate // g, int(rate) // g).astype("float32")
    return x


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@dataclass(frozen=True)
class FrontEnd:
    """Log-mel filterbank (or MFCC) frames of a mono waveform, one frame every ``hop`` samples.

    Frame ``i`` covers samples ``[i * hop, i * hop + win_length)``; it is Hann-windowed, zero-padded to
    ``n_fft``, and its power spectrum is pooled by ``n_mels`` Slaney mel filters (`librosa.filters.mel`)
    between ``fmin`` and ``fmax``; the result is ``log(energy + LOG_FLOOR)``. With ``n_mfcc`` set, the
    first ``n_mfcc`` coefficients of the orthonormal DCT-II of those log energies are returned instead.

    Args:
        sample_rate: the rate the waveform must have (`read_wav` resamples to it).
        win_length: samples per analysis window.
        hop: samples between consecutive frames.
        n_fft: FFT size (>= win_length).
        n_mels: mel bands.
        fmin, fmax: band edges in Hz (fmax None: half the sample rate).
        n_mfcc: 0 for log-mel features, else the number of cepstral coefficients.
    """

    sample_rate: int = 16000
    win_length: int = 480
    hop: int = 320
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = 7600.0
    n_mfcc: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.hop <= self.win_length <= self.n_fft):
            raise ValueError("need 0 < hop <= win_length <= n_fft")
        if self.n_mfcc < 0 or self.n_mfcc > self.n_mels:
            raise ValueError("n_mfcc must lie in [0, n_mels]")

    @property
    def n_features(self) -> int:
        """Values per frame."""
        return self.n_mfcc or self.n_mels

    @property
    def frame_seconds(self) -> float:
        """Seconds between consecutive frames."""
        return self.hop / self.sample_rate

    @cached_property
    def _mel(self) -> np.ndarray:
        import librosa.filters

        fmax = self.fmax or self.sample_rate / 2
        return librosa.filters.mel(
            sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=fmax
        ).astype("float64")

    @cached_property
    def _window(self) -> np.ndarray:
        import scipy.signal

        return scipy.signal.get_window("hann", self.win_length, fftbins=True).astype("float64")

    def n_frames(self, n_samples: int) -> int:
        """Frames produced from ``n_samples`` samples (0 when shorter than one window)."""
        return 0 if n_samples < self.win_length else 1 + (n_samples - self.win_length) // self.hop

    def frame_span(self, start: int, end: int) -> tuple[int, int]:
        """``(first, last + 1)``: the frames whose window overlaps samples ``start`` to ``end`` (an event such as
        a spoken keyword, as frame targets mark it)."""
        return max(0, (start - self.win_length) // self.hop + 1), end // self.hop + 1

    def silence_frame(self) -> np.ndarray:
        """The feature frame of digital silence ``[n_features]`` (what a canvas is padded with)."""
        return self.frames_from_windows(np.zeros((1, self.win_length)))[0]

    def frames_from_windows(self, windows: np.ndarray) -> np.ndarray:
        """Features of raw sample windows ``[k, win_length]`` -> ``[k, n_features]`` float32.

        Each row is computed on its own (a loop of 1-row matrix products), so a frame's value cannot
        depend on how many frames are computed together: that is what makes streaming equal offline.
        """
        import scipy.fft

        out = np.empty((len(windows), self.n_features), dtype="float32")
        for i, w in enumerate(np.asarray(windows, dtype="float64")):
            power = np.abs(np.fft.rfft(w * self._window, n=self.n_fft)) ** 2
            logmel = np.log(self._mel @ power + LOG_FLOOR)
            if self.n_mfcc:
                logmel = scipy.fft.dct(logmel, type=2, norm="ortho")[: self.n_mfcc]
            out[i] = logmel
        return out

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """Offline: features of a whole mono waveform ``[samples]`` -> ``[steps, n_features]``."""
        wave = np.asarray(wave, dtype="float32").reshape(-1)
        k = self.n_frames(len(wave))
        starts = np.arange(k) * self.hop
        windows = wave[starts[:, None] + np.arange(self.win_length)[None]] if k else wave[:0].reshape(0, 1)
        return self.frames_from_windows(windows) if k else np.zeros((0, self.n_features), "float32")

    def stream(self) -> FrameStream:
        """A fresh incremental front end (no samples seen yet)."""
        return FrameStream(self)

    def to_dict(self) -> dict:
        """The parameters, for the model card (``from_dict`` rebuilds the same front end)."""
        d = asdict(self)
        return {
            "type": "mfcc" if self.n_mfcc else "log_mel",
            "window": "hann",
            "mel_filters": "slaney (librosa.filters.mel)",
            "log_floor": LOG_FLOOR,
            **d,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FrontEnd:
        """The front end a card describes."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class FrameStream:
    """Incremental front end: push audio chunks of any size, get every frame completed so far.

    It keeps only the samples of the frame in progress (at most ``win_length`` of them), so memory stays
    constant on an endless stream; concatenating its outputs equals ``FrontEnd.__call__`` on the whole audio.
    """

    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self._buffer = np.zeros(0, dtype="float32")
        self.frames_out = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add mono samples; return the newly completed frames ``[k, n_features]`` (k may be 0)."""
        self._buffer = np.concatenate([self._buffer, np.asarray(chunk, dtype="float32").reshape(-1)])
        front = self.front
        k = front.n_frames(len(self._buffer))
        if k == 0:
            return np.zeros((0, front.n_features), "float32")
        starts = np.arange(k) * front.hop
        frames = front.frames_from_windows(self._buffer[starts[:, None] + np.arange(front.win_length)[None]])
        self._buffer = self._buffer[k * front.hop :]
        self.frames_out += k
        return frames


def mean_mfcc(logmel: np.ndarray, n_mfcc: int = 13) -> np.ndarray:
    """Per-utterance mean MFCC of log-mel frames ``[N, T, n_mels]`` -> ``[N, n_mfcc]`` (baseline feature)."""
    import scipy.fft

    return scipy.fft.dct(np.asarray(logmel, "float64"), type=2, norm="ortho", axis=-1)[..., :n_mfcc].mean(1)


# ------------------------------------------------------------------------------------------------------------
# Voice activity: where the speech is in a clip. Training clips and inference inputs both go through
# `trim_silence` and are then placed in digital silence, so a model never learns (or depends on) how much
# silence or background a recording happens to start and end with.

VAD_FRAME_SECONDS = 0.01
VAD_RANGE_DB = 40.0  # frames more than this below the loudest frame are silence, however clean the clip
VAD_ABOVE_FLOOR_DB = 6.0  # ... and so are frames within this of the clip's noise floor (its 10th percentile)
VAD_MARGIN_SECONDS = 0.1  # kept either side of the first and last active frame (soft onsets, /s/, releases)
VAD_BAND_HZ = (150.0, 3800.0)  # band-pass before the energy: works at 8 kHz telephone rates too


def speech_span(wave: np.ndarray, sample_rate: int = 16000) -> tuple[int, int]:
    """``(start, end)`` samples from the first to the last speech frame of ``wave``, with a margin.

    Energies are of the signal between ``VAD_BAND_HZ`` (where speech is loud and rumble, brown noise and hiss
    are not), per 10 ms frame, smoothed over 30 ms. A frame is speech when its energy is within ``VAD_RANGE_DB`` of the
    loudest frame and above the noise floor (the 10th percentile of frame energies) by ``VAD_ABOVE_FLOOR_DB``
    or by a third of the clip's dynamic range, whichever is more: an energy rule with no trained part, so it
    behaves the same on synthetic training clips and on recordings. Pauses between words are kept. A clip with
    no frame above the rule is returned whole.
    """
    wave = np.asarray(wave, dtype="float64").reshape(-1)
    hop = max(1, int(VAD_FRAME_SECONDS * sample_rate))
    n = len(wave) // hop
    if n < 3:
        return 0, len(wave)
    import scipy.signal

    band = scipy.signal.butter(2, VAD_BAND_HZ, btype="bandpass", fs=sample_rate, output="sos")
    voiced = scipy.signal.sosfilt(band, wave)
    power = (voiced[: n * hop].reshape(n, hop) ** 2).mean(1)
    energy = 10 * np.log10(np.convolve(power, np.ones(3) / 3, mode="same") + 1e-12)
    peak = energy.max()
    floor = max(np.percentile(energy, 10), peak - 2 * VAD_RANGE_DB)  # digital silence is not a noise floor
    threshold = max(peak - VAD_RANGE_DB, floor + max(VAD_ABOVE_FLOOR_DB, (peak - floor) / 3))
    active = np.flatnonzero(energy >= threshold)
    if len(active) == 0:
        return 0, len(wave)
    margin = int(VAD_MARGIN_SECONDS * sample_rate)
    return max(0, active[0] * hop - margin), min(len(wave), (active[-1] + 1) * hop + margin)


def trim_silence(wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """``wave`` cut to its `speech_span` (leading and trailing silence or background removed)."""
    start, end = speech_span(wave, sample_rate)
    return np.asarray(wave, dtype="float32").reshape(-1)[start:end]


def place_speech(
    wave: np.ndarray, sample_rate: int, canvas_seconds: float, lead_seconds: float
) -> np.ndarray:
    """Inference input of a clip model: the speech of ``wave`` (`trim_silence`) after ``lead_seconds`` of
    silence, padded with silence to ``canvas_seconds`` (longer speech is kept whole, not cut).

    Training places the same trimmed speech at a random offset around ``lead_seconds``
    (`zoo.data.speech.speech_clip`); the card's ``placement`` entry gives both numbers.
    """
    speech = trim_silence(wave, sample_rate)
    lead = np.zeros(int(lead_seconds * sample_rate), "float32")
    out = np.concatenate([lead, speech])
    canvas = int(canvas_seconds * sample_rate)
    return np.concatenate([out, np.zeros(max(0, canvas - len(out)), "float32")])
