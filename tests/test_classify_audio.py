"""`rnnzoo classify-audio` / `zoo.classify_audio`: which word a WAV file says, and one clear line for bad input."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

import zoo
from rnnzoo.cli import main

WORDS = "spoken-words-bigru"
ESPEAK = shutil.which("espeak-ng")
pytestmark = [
    pytest.mark.skipif(WORDS not in zoo.list_models(), reason="spoken-word model not shipped"),
    pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed (scripts/setup.sh)"),
]


def _say(tmp_path: Path, word: str, voice: str) -> Path:
    """``word`` spoken by espeak-ng at its own 22,050 Hz (the model reads 16 kHz: the reader resamples)."""
    path = tmp_path / f"{word}.wav"
    subprocess.run([ESPEAK, "-v", voice, "-w", str(path), word], check=True, capture_output=True)
    return path


def _unseen_voice() -> str:
    """An espeak-ng variant of the model's test split: never heard in training."""
    variants = zoo.card(WORDS).dataset.details.get("test_voice_variants") or ["m1"]
    return f"en-us+{variants[0]}"


def test_words_said_by_an_unseen_voice_are_labelled(tmp_path: Path, capsys) -> None:
    words = ["seven", "yes", "stop", "left"]
    paths = [_say(tmp_path, w, _unseen_voice()) for w in words]
    results = zoo.classify_audio(WORDS, paths)
    assert [r["file"] for r in results] == [str(p) for p in paths]  # one result per file, in order
    right = sum(r["label"] == w for r, w in zip(results, words, strict=True))
    assert right >= 3, [(r["label"], w) for r, w in zip(results, words, strict=True)]
    for r in results:
        probs = list(r["probabilities"].values())
        assert set(r["probabilities"]) == set(zoo.card(WORDS).class_names)
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
        assert r["probability"] == probs[0] and r["label"] == next(iter(r["probabilities"]))

    assert main(["classify-audio", WORDS, *map(str, paths[:2]), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{paths[0]}: {results[0]['label']} (p=")
    assert lines[0].count("next:") == 1

    assert main(["classify-audio", WORDS, str(paths[0]), "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed[0]["label"] == results[0]["label"] and len(parsed[0]["probabilities"]) == 20


def test_a_file_longer_than_the_clip_is_read_from_its_start(tmp_path: Path) -> None:
    path = _say(tmp_path, "seven", _unseen_voice())
    rate, wave = scipy.io.wavfile.read(path)
    long = tmp_path / "long.wav"
    scipy.io.wavfile.write(long, rate, np.concatenate([wave, np.zeros(3 * rate, wave.dtype)]))
    assert zoo.classify_audio(WORDS, long)[0]["label"] == zoo.classify_audio(WORDS, path)[0]["label"]


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    silent, text = tmp_path / "silent.wav", tmp_path / "notes.wav"
    scipy.io.wavfile.write(silent, 16000, np.zeros(8000, "int16"))
    text.write_text("not audio")
    cases = [
        ([str(silent)], "is silent"),
        ([str(text)], "not a readable WAV file"),
        ([str(tmp_path / "no.wav")], "no such"),
        ([str(silent), "--top", "0"], "--top must be between 1 and 20"),
    ]
    for extra, message in cases:
        assert main(["classify-audio", WORDS, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("rnnzoo: error:") and message in err and "\n" not in err, err
    assert main(["classify-audio", "kjv-char-lstm", str(silent)]) == 2
    assert "cannot classify-audio" in capsys.readouterr().err
