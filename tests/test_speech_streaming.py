"""The keyword spotter streams: audio chunks -> front end -> one StepModel step per frame, equal to Keras."""

import shutil
import subprocess

import numpy as np
import pytest
import scipy.io.wavfile

import zoo
from zoo.audio import FrontEnd
from zoo.builder import Architecture, build_model
from zoo.speech import KWS_REFRACTORY, listen_wave
from zoo.step import StepModel

KWS = "keyword-seven-gru"


def _noise_wave(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 300 * t * (1 + t)) + rng.normal(0, 0.05, t.shape)).astype("float32")


def test_tiny_spotter_steps_exactly_like_the_whole_sequence() -> None:
    front = FrontEnd()
    feats = front(_noise_wave())[None]
    rng = np.random.default_rng(0)
    model = build_model(
        Architecture(cell="gru", units=16, layers=2),
        "step_classification",
        front.n_features,
        2,
        norm_mean=feats.mean((0, 1)),
        norm_var=feats.var((0, 1)),
    )
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    whole = np.asarray(model.predict(feats, verbose=0))
    stepper = StepModel.from_keras(model)
    state = stepper.initial_state(1)
    stream, steps = front.stream(), []
    wave = _noise_wave()
    for start in range(0, len(wave), 1234):  # chunk size unrelated to the hop
        for frame in stream.push(wave[start : start + 1234]):
            y, state = stepper.step(frame[None], state)
            steps.append(y[0])
    assert np.abs(np.stack(steps) - whole[0]).max() <= 1e-5


@pytest.mark.skipif(KWS not in zoo.list_models(), reason="keyword spotter not shipped")
def test_shipped_spotter_card_records_step_parity() -> None:
    card = zoo.card(KWS)
    assert card.streaming.mode == "step"
    assert card.streaming.max_abs_diff_vs_keras <= 1e-5


@pytest.mark.skipif(KWS not in zoo.list_models(), reason="keyword spotter not shipped")
@pytest.mark.slow  # renders the test voices' audio with espeak-ng on a cold cache (about 45 s)
def test_shipped_spotter_steps_like_keras_on_its_test_audio() -> None:
    x, _ = zoo.test_data(KWS)
    model = zoo.load(KWS)
    ours = StepModel.from_keras(model).run(x[:8])
    assert np.abs(ours - np.asarray(model.predict(x[:8], verbose=0))).max() <= 1e-5


@pytest.mark.skipif(KWS not in zoo.list_models(), reason="keyword spotter not shipped")
def test_listen_reports_times_from_the_stream(tmp_path) -> None:
    card = zoo.card(KWS)
    stepper = zoo.predictor(KWS).stepper
    assert listen_wave(stepper, card, _noise_wave(3.0)) == []  # a chirp in noise holds no keyword
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / "talk.wav"
    subprocess.run(
        [espeak, "-v", "en-us+m1", "-w", str(path), "one seven two, three four seven nine"], check=True
    )
    rate, samples = scipy.io.wavfile.read(path)
    detections = zoo.listen(KWS, path)
    assert len(detections) >= 1, detections
    for d in detections:
        assert 0 < d["time_s"] <= len(samples) / rate and d["probability"] >= card.test_metrics["threshold"]
    times = [d["time_s"] for d in detections]
    assert all(b - a >= KWS_REFRACTORY * 0.02 - 1e-9 for a, b in zip(times, times[1:], strict=False))
