"""The audio front end: WAV reading (any rate, clear errors) and streaming features equal to offline ones."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from zoo.audio import AudioError, FrontEnd, mean_mfcc, read_wav


def _tone(seconds: float = 1.3, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A chirp with noise: every mel band gets energy, and frames differ from each other."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.05, t.shape)
    return (0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + noise).astype("float32")


@pytest.mark.parametrize("front", [FrontEnd(), FrontEnd(n_mfcc=13, hop=160, win_length=400)])
def test_streaming_features_equal_offline_for_any_chunking(front: FrontEnd) -> None:
    wave = _tone()
    offline = front(wave)
    assert offline.shape == (front.n_frames(len(wave)), front.n_features)
    rng = np.random.default_rng(1)
    for sizes in ([1] * 700 + [len(wave)], [front.hop] * 200, list(rng.integers(1, 2000, 60))):
        stream, out, start = front.stream(), [], 0
        for size in sizes:
            out.append(stream.push(wave[start : start + size]))
            start += size
        streamed = np.concatenate(out)
        assert streamed.shape == offline.shape
        np.testing.assert_array_equal(streamed, offline)


def test_stream_keeps_only_the_frame_in_progress() -> None:
    front, stream = FrontEnd(), FrontEnd().stream()
    for _ in range(50):
        stream.push(np.zeros(1000, "float32"))
    assert len(stream._buffer) < front.win_length


def test_front_end_round_trips_through_its_card_entry() -> None:
    front = FrontEnd(n_mels=32, hop=160)
    assert FrontEnd.from_dict(front.to_dict()) == front
    assert front.to_dict()["type"] == "log_mel"


def test_mean_mfcc_shape() -> None:
    x = FrontEnd()(_tone())[None]
    assert mean_mfcc(x).shape == (1, 13)


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_any_rate_and_stereo_is_resampled_to_mono_16k(tmp_path: Path, rate: int) -> None:
    t = np.arange(rate) / rate
    left = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("int16")
    path = tmp_path / "x.wav"
    scipy.io.wavfile.write(path, rate, np.stack([left, left], axis=1))
    wave = read_wav(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert 0.45 < np.abs(wave).max() < 0.55


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["missing"] = tmp_path / "nope.wav"
    files["text"] = tmp_path / "notes.wav"
    files["text"].write_text("this is not audio\n")
    files["empty"] = tmp_path / "empty.wav"
    scipy.io.wavfile.write(files["empty"], 16000, np.zeros(0, "int16"))
    files["silent"] = tmp_path / "silent.wav"
    scipy.io.wavfile.write(files["silent"], 16000, np.zeros(16000, "int16"))
    # A mu-law WAV: the header's format tag (bytes 20-21) says 7, a sample format that is not PCM/float.
    data = bytearray((tmp_path / "silent.wav").read_bytes())
    data[20:22] = (7).to_bytes(2, "little")
    files["mulaw"] = tmp_path / "mulaw.wav"
    files["mulaw"].write_bytes(bytes(data))
    return files


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file"),
        ("text", "not a readable WAV file"),
        ("empty", "holds no audio"),
        ("silent", "is silent"),
        ("mulaw", "not a readable WAV file"),
    ],
)
def test_unusable_audio_is_one_clear_line(tmp_path: Path, case: str, message: str) -> None:
    with pytest.raises(AudioError, match=message) as err:
        read_wav(_bad_files(tmp_path)[case])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("colour", "exponent"), [("white", 0.0), ("pink", 1.0), ("brown", 2.0)])
def test_coloured_noise_has_unit_variance_and_its_slope(colour: str, exponent: float) -> None:
    from zoo.data.speech import NOISE_COLOURS, coloured_noise

    assert NOISE_COLOURS[colour] == exponent
    noise = coloured_noise(2**16, exponent, np.random.default_rng(0))
    assert noise.std() == pytest.approx(1.0, abs=1e-3)
    power = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(len(noise))
    low, high = power[(f > 0.01) & (f < 0.02)].mean(), power[(f > 0.2) & (f < 0.4)].mean()
    ratio = np.log10(low / high) / np.log10(0.3 / 0.015)  # fitted spectral exponent
    assert ratio == pytest.approx(exponent, abs=0.15)


def test_feature_domain_noise_matches_waveform_noise_at_the_same_snr() -> None:
    """`augment_features` adds white noise to log-mel clips as `add_noise` would to the waveform."""
    from zoo.data import speech

    front = FrontEnd()
    rng = np.random.default_rng(0)
    t = np.arange(int(1.2 * 16000)) / 16000
    wave = np.where((t > 0.2) & (t < 0.8), 0.3 * np.sin(2 * np.pi * (300 + 800 * t) * t), 0.0).astype(
        "float32"
    )
    clean = front(wave)
    real = front(speech.add_noise(wave, 10.0, rng))
    speech_frames = np.array([front.n_frames(int(0.6 * 16000))])
    white = {"white": 0.0}
    with pytest.MonkeyPatch.context() as m:
        m.setattr("zoo.data.speech.augment.NOISE_COLOURS", white)  # the module augment_features reads
        aug = speech.augment_features(
            clean[None], speech_frames, front, rng, snr_db=(10, 10), gain_db=0, time_mask=0, freq_mask=0
        )[0]
    assert aug.shape == clean.shape and aug.dtype == clean.dtype
    # Same noise floor (within 1.5 dB) where there is no speech, and the same clip on average.
    assert abs(aug[:5].mean() - real[:5].mean()) < np.log(10**0.15)
    assert abs(aug.mean() - real.mean()) < 0.2
    masked = speech.augment_features(clean[None], speech_frames, front, rng, fill=np.zeros(40, "float32"))[0]
    assert np.isfinite(masked).all()
