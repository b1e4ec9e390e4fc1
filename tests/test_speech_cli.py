"""`rnnzoo transcribe` / `rnnzoo listen`: end to end on espeak-ng audio, and one clear line for bad input."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

import zoo
from rnnzoo.cli import main

CTC, KWS = "digits-ctc-bigru", "keyword-seven-gru"
ESPEAK = shutil.which("espeak-ng")
needs_ctc = pytest.mark.skipif(CTC not in zoo.list_models(), reason="CTC model not shipped")
needs_kws = pytest.mark.skipif(KWS not in zoo.list_models(), reason="keyword spotter not shipped")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (scripts/setup.sh)")


def _say(tmp_path: Path, text: str, voice: str, name: str = "x.wav") -> Path:
    path = tmp_path / name
    subprocess.run([ESPEAK, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


@needs_ctc
@needs_espeak
def test_transcribe_three_one_four_with_an_unseen_voice(tmp_path: Path, capsys) -> None:
    # "m1" is a test-split variant: never heard in training.
    assert "m1" in zoo.card(CTC).dataset.details["test_voice_variants"]
    path = _say(tmp_path, "three one four", "en+m1")
    assert main(["transcribe", CTC, str(path)]) == 0
    assert capsys.readouterr().out.strip() == "314"
    assert zoo.transcribe(CTC, _say(tmp_path, "nine zero two seven", "en-us+croak")) == "9027"


@needs_kws
@needs_espeak
def test_listen_finds_the_keyword_said_twice_among_other_words(tmp_path: Path, capsys) -> None:
    path = _say(tmp_path, "one seven two, three four seven nine", "en-us+m1", "talk.wav")
    detections = zoo.listen(KWS, path)
    assert len(detections) == 2, detections
    assert detections[0]["time_s"] < 1.2 < detections[1]["time_s"]
    assert main(["listen", KWS, "--input", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 detection(s) of 'seven'" in out


@needs_kws
@needs_espeak
@pytest.mark.xfail(
    reason="known miss: trained on words joined by pauses; run-on espeak sentences with this "
    "voice lose the keyword (see the card / report)",
    strict=True,  # a known miss: when the spotter learns it, this fails and the marker goes
)
def test_listen_in_run_on_speech_with_a_hard_voice(tmp_path: Path) -> None:
    path = _say(tmp_path, "go left seven up down, hello seven stop", "en-us+zac", "talk.wav")
    assert len(zoo.listen(KWS, path)) == 2


@pytest.mark.parametrize("command", [["transcribe", CTC], ["listen", KWS, "--input"]])
def test_bad_audio_is_one_line_in_process(tmp_path: Path, capsys, command: list[str]) -> None:
    silent, text = tmp_path / "silent.wav", tmp_path / "notes.wav"
    scipy.io.wavfile.write(silent, 16000, np.zeros(8000, "int16"))
    text.write_text("not audio")
    name = command[1]
    if name not in zoo.list_models():
        pytest.skip(f"{name} not shipped")
    for path, message in (
        (silent, "is silent"),
        (text, "not a readable WAV file"),
        (tmp_path / "no.wav", "no such"),
    ):
        assert main([*command, str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("rnnzoo: error:") and message in err and "\n" not in err


def test_bad_audio_via_subprocess_has_no_traceback(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    name = CTC if CTC in zoo.list_models() else "no-such-model"
    run = subprocess.run(
        [sys.executable, "-m", "rnnzoo.cli", "transcribe", name, str(text)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_transcribe_refuses_a_model_that_is_not_a_transcriber(capsys) -> None:
    others = [n for n in zoo.list_models() if zoo.card(n).kind != "ctc"]
    if not others:
        pytest.skip("no other shipped model")
    assert main(["transcribe", others[0], "x.wav"]) == 2
    assert "cannot transcribe" in capsys.readouterr().err
