"""Human-derived voices, channel augmentation, the voice-activity step, and real recorded speech.

Quick tests render a word or two at most; the slow test re-measures the shipped models' real-voice figures
(scripts/real_voice_eval.py) against their cards.
"""

import dataclasses
import shutil

import numpy as np
import pytest
from conftest import load_script

import zoo
from zoo import cards
from zoo.audio import place_speech, speech_span, trim_silence
from zoo.data import real_voice, speech

SR = speech.SAMPLE_RATE


def _tone_burst(seconds: float = 0.4, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f * t) * np.hanning(len(t))).astype("float32")


def _band_power_db(wave: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(10 * np.log10(spectrum[(f >= lo) & (f < hi)].mean() + 1e-30))


def test_persons_are_disjoint_across_splits_and_every_voice_has_one_split() -> None:
    parts = [set(speech.PERSON_SPLIT[p]) for p in ("train", "val", "test")]
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert {v.person for v in speech.HUMAN_VOICES} == set().union(*parts)
    voices = [{v.name for v in speech.human_voices(p)} for p in ("train", "val", "test")]
    assert sum(len(v) for v in voices) == len(speech.HUMAN_VOICES)  # each engine voice in one split only


def test_telephone_band_removes_everything_above_4_khz() -> None:
    noise = np.random.default_rng(0).normal(size=SR).astype("float32")
    phone = speech.telephone_band(noise)
    assert len(phone) == len(noise)
    inside = _band_power_db(phone, 500, 3000)
    assert _band_power_db(phone, 4300, 8000) < inside - 40
    assert _band_power_db(noise, 4300, 8000) > _band_power_db(noise, 500, 3000) - 3


def test_spectral_tilt_changes_the_slope_by_the_asked_db_per_octave_and_keeps_the_level() -> None:
    noise = np.random.default_rng(3).normal(size=4 * SR).astype("float32")
    tilted = speech.spectral_tilt(noise, 2.0)
    assert np.mean(tilted**2) == pytest.approx(np.mean(noise**2), rel=1e-3)
    gain = [
        _band_power_db(tilted, f / 1.2, f * 1.2) - _band_power_db(noise, f / 1.2, f * 1.2)
        for f in (500, 4000)
    ]
    assert gain[1] - gain[0] == pytest.approx(3 * 2.0, abs=0.5)  # three octaves up: 6 dB more


def test_room_impulse_decays_60_db_in_rt60() -> None:
    rt60 = 0.4
    h = speech.room_impulse(rt60, np.random.default_rng(1))
    assert len(h) == int(rt60 * SR) and h[0] == 1.0
    tail = h[1:].astype("float64") ** 2
    early = tail[int(0.01 * SR) : int(0.06 * SR)].mean()
    late = tail[int(0.30 * SR) : int(0.35 * SR)].mean()  # 0.29 s later: 0.29 / 0.4 * 60 = 43.5 dB lower
    assert 10 * np.log10(early / late) == pytest.approx(43.5, abs=4)
    wet = speech.reverberate(_tone_burst(), h)
    assert len(wet) > len(_tone_burst()) and np.abs(wet).max() == pytest.approx(0.3, rel=0.05)


def test_change_speed_scales_tempo_and_pitch_together() -> None:
    wave = _tone_burst(0.5, 400.0)
    fast = speech.change_speed(wave, 1.2)
    assert len(fast) == pytest.approx(len(wave) / 1.2, abs=2)
    peak = np.fft.rfftfreq(len(fast), 1 / SR)[np.abs(np.fft.rfft(fast)).argmax()]
    assert peak == pytest.approx(480.0, abs=5)


def test_coloured_noise_is_added_at_the_asked_snr() -> None:
    wave = _tone_burst(1.0)
    for exponent in speech.NOISE_COLOURS.values():
        noisy = speech.add_noise(wave, 10.0, np.random.default_rng(2), exponent)
        speech_power = np.mean(wave[np.abs(wave) > 1e-3] ** 2)
        # variance: coloured_noise is unit-variance about a random DC offset, which no feature band sees
        assert 10 * np.log10(speech_power / np.var(noisy - wave)) == pytest.approx(10.0, abs=0.5)


def test_vad_trims_a_padded_clip_exactly_as_the_clip() -> None:
    clip = np.concatenate([np.zeros(4000), _tone_burst(), np.zeros(3000)]).astype("float32")
    # Padding by whole 10 ms frames keeps the frame grid: the same samples come out.
    padded = np.concatenate([np.zeros(9600, "float32"), clip, np.zeros(12000, "float32")])
    assert np.array_equal(trim_silence(clip), trim_silence(padded))
    # Any other padding moves the grid: the same speech, give or take one frame at each end.
    shifted = np.concatenate([np.zeros(9000, "float32"), clip, np.zeros(12345, "float32")])
    assert abs(len(trim_silence(shifted)) - len(trim_silence(clip))) <= 2 * 160
    start, end = speech_span(clip)
    # The burst (Hann-shaped) is found, within the margin, and the silence either side is cut.
    assert 4000 - 0.1 * SR <= start < 4000 + 0.1 * SR and 4000 + 0.3 * SR < end <= 4000 + 0.5 * SR + 0.1 * SR


def test_vad_finds_speech_in_noise_and_keeps_whole_clips_of_silence() -> None:
    rng = np.random.default_rng(3)
    clip = np.concatenate([np.zeros(8000), _tone_burst(), np.zeros(8000)]).astype("float32")
    # 20 dB: at 10 dB, brown noise's slow swings (most of its energy lies below the 150 Hz band edge, but
    # not all) sometimes pass for speech and the clip is kept from its start; training sees the same rule.
    for exponent in speech.NOISE_COLOURS.values():
        start, end = speech_span(speech.add_noise(clip, 20.0, rng, exponent))
        assert abs(start - 8000) < 0.15 * SR and abs(end - (8000 + 0.4 * SR)) < 0.15 * SR
    assert speech_span(np.zeros(SR, "float32")) == (0, SR)


def test_place_speech_puts_the_trimmed_speech_after_the_lead() -> None:
    clip = np.concatenate([np.zeros(7000), _tone_burst(), np.zeros(500)]).astype("float32")
    placed = place_speech(clip, SR, canvas_seconds=1.2, lead_seconds=0.1)
    assert len(placed) == int(1.2 * SR)
    assert not placed[: int(0.1 * SR)].any()
    assert np.array_equal(placed[int(0.1 * SR) : int(0.1 * SR) + len(trim_silence(clip))], trim_silence(clip))
    assert len(place_speech(np.tile(clip, 4), SR, 0.5, 0.1)) > int(0.5 * SR)  # long speech is never cut


def test_speech_clip_never_cuts_the_augmented_speech() -> None:
    rng = np.random.default_rng(4)
    wave = _tone_burst(0.9)
    for _ in range(5):
        clip = speech.speech_clip(wave, int(1.2 * SR), rng, int(0.2 * SR), 10.0, augment=True)
        assert len(clip) == int(1.2 * SR) and np.isfinite(clip).all()


@pytest.mark.skipif(shutil.which("flite") is None or shutil.which("text2wave") is None, reason="setup.sh")
@pytest.mark.parametrize("voice", [speech.HUMAN_VOICES[0], speech.HUMAN_VOICES[-1]], ids=lambda v: v.name)
def test_human_derived_voices_render_a_word(voice: speech.HumanVoice) -> None:
    slow = speech.synthesise_human("seven", voice, stretch=1.25)
    fast = speech.synthesise_human("seven", voice, stretch=0.8)
    assert 0.2 * SR < len(fast) < len(slow) < 2.0 * SR
    assert np.abs(slow).max() > 0.01


def test_every_word_a_voice_of_another_language_says_has_a_respelling() -> None:
    assert set(speech.RESPELLED) == set(speech.WORDS + speech.FILLERS)
    women = {"slt", "lp", "ona", "lj", "dita"}  # the real test voice is a woman: women train and validate
    assert women & set(speech.PERSON_SPLIT["train"]) and women & set(speech.PERSON_SPLIT["val"])


@pytest.mark.skipif(shutil.which("text2wave") is None, reason="setup.sh")
def test_a_voice_of_another_language_reads_the_respelled_word() -> None:
    italian = next(v for v in speech.HUMAN_VOICES if v.voice == "lp_diphone")
    verbatim = dataclasses.replace(italian, language="en")  # the same voice, reading its text as written
    said = speech.synthesise_human("three", italian)
    np.testing.assert_array_equal(said, speech.synthesise_human(speech.RESPELLED["three"], verbatim))
    assert not np.array_equal(said, speech.synthesise_human("three", verbatim))


needs_asterisk = pytest.mark.skipif(not real_voice.FOLDER.is_dir(), reason="asterisk sounds (setup.sh)")


@needs_asterisk
def test_real_recordings_and_sets_built_from_them_are_fixed() -> None:
    names, waves = real_voice.real_words()
    assert names[:10] == speech.DIGITS and names[10] == "no"
    assert all(0.3 * SR < len(w) < 1.5 * SR for w in waves)
    refs, audio = real_voice.digit_sequences(0.3, None, n=5)
    again, noisy = real_voice.digit_sequences(0.3, 10.0, n=5)
    assert refs == again and all(1 <= len(r) <= 6 for r in refs)
    assert all(len(a) == len(b) for a, b in zip(audio, noisy, strict=True))
    streams, events = real_voice.keyword_streams(n=3, seconds=6.0)
    assert streams.shape == (3, 6 * SR) and events and all(0 <= s < 3 and a < b for s, a, b in events)


MODELS = ("spoken-words-bigru", "digits-ctc-bigru", "keyword-seven-gru")


@pytest.mark.parametrize("name", [n for n in MODELS if n in zoo.list_models()])
def test_speech_cards_carry_real_voice_figures(name: str) -> None:
    card = zoo.card(name)
    real = card.test_metrics["real_voice"]
    assert "asterisk" in real["data"] and "placement" in card.preprocessing.details or name == MODELS[2]
    assert set(card.dataset.details["persons"]["test"]).isdisjoint(card.dataset.details["persons"]["train"])


@pytest.mark.slow  # loads each model and runs it on ~1,000 recorded clips (about a minute each)
@needs_asterisk
@pytest.mark.parametrize("name", [n for n in MODELS if n in zoo.list_models()])
def test_real_voice_figures_re_measure_to_the_card(name: str) -> None:
    script = load_script("real_voice_eval")
    fresh, card = script.measure(name), zoo.card(name).test_metrics["real_voice"]
    for key, value in card.items():
        if isinstance(value, float):
            assert fresh[key] == pytest.approx(value, abs=1e-3), key
        elif key != "data":
            assert json_round(fresh[key]) == json_round(value), key


def json_round(value: object) -> object:
    """Floats rounded to 3 places, recursively (what a re-measurement must reproduce)."""
    if isinstance(value, dict):
        return {k: json_round(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 3)
    return value


def test_validation_check_refuses_a_person_who_does_not_validate(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script("speech_validation")
    monkeypatch.setattr("sys.argv", ["speech_validation.py", "ked"])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 2
    assert "not a validation person: ked (choose from awb, dita)" in capsys.readouterr().err


def test_validation_check_refuses_a_member_folder_without_a_digit_model(
    tmp_path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script("speech_validation")
    monkeypatch.setattr("sys.argv", ["speech_validation.py", "--ctc-members", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 2
    assert f"no digits-ctc-bigru/model.keras in {tmp_path}" in capsys.readouterr().err


def _stand_in_validation_person(script, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small stand-in for the person awb (one espeak-ng voice saying every word, 12 sequences)."""
    voice = speech.Voice("en-us", "m3", 150, 50)
    waves = [speech.synthesise(w, voice) for w in speech.WORDS]
    bank = {
        "audio": np.concatenate(waves),
        "offsets": np.cumsum([0] + [len(w) for w in waves]),
        "word": np.arange(len(waves)),
    }
    speaker = speech.HumanSpeaker(bank, np.arange(len(waves)), "espeak:en-us+m3", "awb")
    monkeypatch.setattr(script, "_validation_speakers", lambda: [speaker])
    monkeypatch.setattr(script, "SEQUENCES", 12)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="setup.sh")
# Both in the slow suite (9-10 s each): the shipped combination (vote) and averaging, the documented failure.
@pytest.mark.slow
@pytest.mark.parametrize("combine", ["vote", "average"])
def test_validation_scores_members_alone_and_combined(combine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ctc-members`` with the shipped digit model twice: each alone scores what the model scores, and
    two identical models combined, by either rule, score the same again."""
    script = load_script("speech_validation")
    _stand_in_validation_person(script, monkeypatch)
    shipped = cards.model_dir("digits-ctc-bigru").parent
    monkeypatch.setattr(script, "CTC_MEMBERS", [shipped, shipped])
    script._models.cache_clear()
    try:
        measured = script.measure("awb", combine)
    finally:
        script._models.cache_clear()
    assert len(measured.members) == 6
    for condition, row in measured.conditions.items():
        assert measured.members[condition] == [row["sequence_error"]] * 2


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="setup.sh")
def test_validation_errors_account_for_every_wrong_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--errors`` on a small stand-in person (one espeak-ng voice, 12 sequences): the confused words are exactly
    the clips the accuracy counts wrong, and each digit's share of wrong sequences is a share."""
    script = load_script("speech_validation")
    _stand_in_validation_person(script, monkeypatch)
    measured = script.measure("awb")
    assert len(measured.conditions) == 6
    wrong_clips = sum(
        round((1 - c["word_accuracy"]) * len(speech.WORDS)) for c in measured.conditions.values()
    )
    assert sum(measured.words_confused.values()) == wrong_clips
    assert all(a != b for a, b in (k.split(" -> ") for k in measured.words_confused))
    assert set(measured.digits_in_wrong_sequences) <= set(range(10))
    assert all(0 <= r <= 1 for r in measured.digits_in_wrong_sequences.values())
    some_wrong = any(c["sequence_error"] > 0 for c in measured.conditions.values())
    assert any(measured.digits_in_wrong_sequences.values()) == some_wrong


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("espeak-ng", "flite", "festival")), reason="setup.sh"
)
def test_a_change_in_how_the_voices_speak_changes_every_dataset_cache_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dataset built from the old voice bank must not be reused: a stale digits dataset once outlived a change
    of the voices' readings because only the bank's key held them."""
    before = speech.cache_key(speech._dataset_config())
    monkeypatch.setitem(speech.RESPELLED, "zero", "sirou")
    assert speech.cache_key(speech._dataset_config()) != before
