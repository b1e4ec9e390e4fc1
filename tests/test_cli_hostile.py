"""Every input an attacker (or a typo) tried on the zoo's commands ends in one line and exit code 2."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from rnnzoo.cli import main


def _npy(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 20000).astype("<i2").tobytes())
    return str(path)


CASES = {
    "empty .npy file": lambda d: ["predict", "activity-gru-causal", "--input", str(d / "e.npy")],
    "no sequences": lambda d: [
        "predict",
        "activity-gru-causal",
        "--input",
        _npy(d / "z.npy", np.zeros((0, 10, 6))),
    ],
    "no steps": lambda d: ["predict", "activity-gru-causal", "--input", _npy(d / "s.npy", np.zeros((0, 6)))],
    "text model on numbers": lambda d: ["predict", "sentiment-bilstm", "--input", str(d / "x.csv")],
    "strings in .npy": lambda d: [
        "predict",
        "activity-gru-causal",
        "--input",
        _npy(d / "u.npy", np.array([["a"] * 6])),
    ],
    "negative beam width": lambda d: [
        "transcribe",
        "digits-ctc-bigru",
        _wav(d / "a.wav", np.sin(np.arange(8000) / 5)),
        "--beam-width",
        "-1",
    ],
    "huge beam width": lambda d: [
        "transcribe",
        "digits-ctc-bigru",
        _wav(d / "b.wav", np.sin(np.arange(8000) / 5)),
        "--beam-width",
        "100000",
    ],
    "3-sample WAV": lambda d: [
        "transcribe",
        "digits-ctc-bigru",
        _wav(d / "c.wav", np.array([0.5, -0.5, 0.5])),
    ],
    "3-sample WAV to the spotter": lambda d: [
        "listen",
        "keyword-seven-gru",
        "--input",
        _wav(d / "c.wav", np.array([0.5, -0.5, 0.5])),
    ],
    "beam 5000": lambda d: ["translate", "translate-en-fr-gru", "Cannot open file", "--beam", "5000"],
    "infinite temperature": lambda d: [
        "compose",
        "chorales-gru",
        "--out",
        str(d / "x.mid"),
        "--temperature",
        "inf",
    ],
    "NaN temperature": lambda d: ["generate", "kjv-char-lstm", "--prompt", "And ", "--temperature", "nan"],
    "ensemble of a non-CTC model": lambda d: [
        "train",
        "activity-gru-causal",
        "--members",
        "2",
        "--out",
        str(d),
    ],
    "zero members": lambda d: ["train", "digits-ctc-bigru", "--members", "0", "--out", str(d)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cli_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "e.npy").write_bytes(b"")
    (tmp_path / "x.csv").write_text("1,2,3\n4,5,6\n")
    code = main(CASES[case](tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rnnzoo: error: "), (code, err)
