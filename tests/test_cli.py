"""`rnnzoo`: the table, the card, predictions, and one-line errors (never a traceback)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

import zoo
from rnnzoo.cli import main
from zoo import cards


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnzoo.cli", *argv], capture_output=True, text=True, timeout=300
    )


def test_list_shows_shipped_models_with_metrics(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == set(zoo.list_models())
    for row in rows.values():  # every model has its headline figure, none a bare "-"
        assert not row.rstrip().endswith(" -"), row
    assert "accuracy" in out and "MASE" in out and "C^td" in out


def test_unknown_model_is_one_line() -> None:
    r = run("info", "activty-gru-causal")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "rnnzoo: error: unknown model 'activty-gru-causal'; did you mean activity-gru-causal?"
    ] or ("did you mean" in r.stderr and len(r.stderr.strip().splitlines()) == 1)
    assert "Traceback" not in r.stderr


def test_predict_on_csv_and_wrong_shape(tmp_path, capsys) -> None:
    x, y = zoo.test_data("activity-gru-causal")
    good = tmp_path / "walk.csv"
    np.savetxt(good, x[0], delimiter=",")
    assert main(["predict", "activity-gru-causal", "--input", str(good)]) == 0
    names = zoo.card("activity-gru-causal").class_names
    assert names[y[0]] in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    np.savetxt(bad, x[0][:, :4], delimiter=",")
    r = run("predict", "activity-gru-causal", "--input", str(bad))
    assert r.returncode == 2 and "expects [steps, 6]" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_tampered_file_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    name = "activity-gru-causal"
    shutil.copytree(cards.model_dir(name), tmp_path / name)
    (tmp_path / name / "model.keras").write_bytes(b"not a model")
    monkeypatch.setattr(cards, "SAVED_MODELS", tmp_path)
    assert main(["evaluate", name]) == 2
    err = capsys.readouterr().err
    assert "does not match its card" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "activity-gru-causal", "--cell", "cnn"], ["predict", "x"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    r = run(*argv)
    assert r.returncode == 2 and "Traceback" not in r.stderr
