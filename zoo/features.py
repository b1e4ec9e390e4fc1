"""Spectral front ends and waveform augmentation, in plain numpy (no framework, reusable for speech).

A long univariate waveform is a poor recurrent-network input: thousands of steps, and the information that
matters (rhythm, harmonics) is in the spectrum rather than in the absolute position of each sample. A
short-time Fourier transform turns it into a short sequence of spectra, one per frame, which a small recurrent
stack can read. Everything here works on batches ``[N, T, F]`` and returns ``[N, steps, F * bins]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Spectrogram:
    """Short-time magnitude spectrum of each channel, one frame per recurrent step.

    Each series is (optionally) z-normalised, cut into frames of ``frame_length`` samples every ``hop``
    samples (no padding: a tail shorter than a frame is dropped), each frame has its mean removed when
    ``remove_frame_mean`` is set, is multiplied by a Hann window and Fourier-transformed; the magnitudes of
    FFT bins ``first_bin`` .. ``first_bin + bins - 1`` are kept, compressed with ``log1p`` when ``log`` is set.
    Bin ``k`` is centred on ``k * sample_rate / frame_length`` Hz.

    Args:
        frame_length: samples per frame (FFT size).
        hop: samples between the starts of consecutive frames.
        first_bin: lowest FFT bin kept (0 keeps the frame's level, 1 drops it).
        bins: how many consecutive bins are kept.
        log: compress magnitudes with ``log1p``.
        znorm: z-normalise every series (per channel) over its whole length first, removing its level and
            scale; otherwise absolute amplitudes are kept.
        remove_frame_mean: subtract each frame's mean before windowing (stops the level leaking into the low
            bins through the window's side lobes).
    """

    frame_length: int = 256
    hop: int = 128
    first_bin: int = 1
    bins: int = 32
    log: bool = True
    znorm: bool = False
    remove_frame_mean: bool = True

    def __post_init__(self) -> None:
        if self.frame_length < 2 or self.hop < 1:
            raise ValueError("frame_length must be at least 2 and hop at least 1")
        if self.first_bin < 0 or self.bins < 1 or self.first_bin + self.bins > self.frame_length // 2 + 1:
            raise ValueError(
                f"bins {self.first_bin}..{self.first_bin + self.bins - 1} do not fit an FFT of "
                f"{self.frame_length} samples ({self.frame_length // 2 + 1} bins)"
            )

    def steps(self, length: int) -> int:
        """Recurrent steps produced from a series of ``length`` samples."""
        if length < self.frame_length:
            raise ValueError(f"series of {length} samples is shorter than one frame ({self.frame_length})")
        return 1 + (length - self.frame_length) // self.hop

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``[N, T, F]`` -> spectrogram ``[N, steps, F * bins]`` float32 (channel-major features)."""
        x = np.asarray(x, dtype="float64")
        n, t, f = x.shape
        if self.znorm:
            x = (x - x.mean(1, keepdims=True)) / np.maximum(x.std(1, keepdims=True), 1e-8)
        starts = np.arange(self.steps(t)) * self.hop
        frames = x[:, starts[:, None] + np.arange(self.frame_length)[None]]  # [N, steps, frame, F]
        if self.remove_frame_mean:
            frames = frames - frames.mean(2, keepdims=True)
        window = np.hanning(self.frame_length)[None, None, :, None]
        kept = slice(self.first_bin, self.first_bin + self.bins)
        spectrum = np.abs(np.fft.rfft(frames * window, axis=2))[:, :, kept]
        if self.log:
            spectrum = np.log1p(spectrum)
        # [N, steps, bins, F] -> [N, steps, F, bins] -> [N, steps, F * bins]
        return spectrum.transpose(0, 1, 3, 2).reshape(n, len(starts), f * self.bins).astype("float32")

    def to_dict(self) -> dict:
        return {"type": "stft_magnitude", "window": "hann", **asdict(self)}


def circular_shifts(
    x: np.ndarray, y: np.ndarray, copies: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training-set augmentation: the originals followed by ``copies`` randomly circularly shifted copies.

    Each copy of a series ``[T, F]`` is rolled along time by a uniform random offset in ``[1, T)``, which keeps
    its spectrum (up to the one seam) while moving every beat; labels are repeated. Use on training data only.

    Args:
        x: series ``[N, T, F]``.
        y: labels ``[N, ...]``.
        copies: shifted copies per series (0 returns the inputs unchanged).
        seed: seed of the offsets.
    """
    if copies <= 0:
        return x, y
    rng = np.random.default_rng(seed)
    t = x.shape[1]
    shifted = [np.roll(x[i], int(rng.integers(1, t)), axis=0) for _ in range(copies) for i in range(len(x))]
    return np.concatenate([x, np.stack(shifted)]), np.concatenate([y] + [y] * copies)
