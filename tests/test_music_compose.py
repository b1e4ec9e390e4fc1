"""Chorale models: step-by-step generation equals Keras, seeded output, card NLL re-measured, CLI errors in one line."""

import subprocess
import sys

import numpy as np
import pytest

import zoo
from rnnzoo.cli import main
from zoo.data import music
from zoo.music import count_notes, generate, sample_frame
from zoo.step import StepModel
from zoo.tasks.music import with_start

CHORALE_MODELS = [n for n in ("chorales-lstm", "chorales-gru", "chorales-simple") if n in zoo.list_models()]
MODEL = "chorales-gru"


def test_step_engine_equals_keras_on_real_test_frames() -> None:
    x, y = zoo.test_data(MODEL)
    model, mask = zoo.load(MODEL), y[..., 0] >= 0
    stepper = StepModel.from_keras(model)
    state, steps = stepper.initial_state(len(x)), []
    for t in range(x.shape[1]):
        out, state = stepper.step(x[:, t], state)
        steps.append(out)
    diff = np.abs(np.stack(steps, 1) - np.asarray(model.predict(x, verbose=0)))
    assert diff[mask].max() <= 1e-5


def test_the_three_cells_ship_and_beat_both_baselines() -> None:
    assert CHORALE_MODELS == ["chorales-lstm", "chorales-gru", "chorales-simple"]
    for name in CHORALE_MODELS:
        card = zoo.card(name)
        nll = card.test_metrics["nll_per_frame"]
        assert nll < min(b["nll_per_frame"] for b in card.baselines.values()), name
        # Parity is measured over the real frames of the test chorales (not their end padding).
        assert card.streaming.mode == "step" and card.streaming.max_abs_diff_vs_keras <= 1e-5
        assert {row["model"] for row in card.cell_comparison} == set(CHORALE_MODELS)


@pytest.mark.parametrize("name", CHORALE_MODELS)
def test_re_evaluation_matches_card_nll(name: str) -> None:
    fresh = zoo.evaluate(name)["nll_per_frame"]
    assert fresh == pytest.approx(zoo.card(name).test_metrics["nll_per_frame"], abs=2e-3)


@pytest.mark.parametrize("name", CHORALE_MODELS)
def test_generation_step_by_step_equals_keras_on_the_whole_sequence(name: str) -> None:
    model = zoo.load(name)
    primer = music.load_split("test").rolls[0][:16]
    roll, probs = generate(StepModel.from_keras(model), primer, steps=40, temperature=1.0, seed=5)
    assert np.array_equal(roll[:16], primer) and roll.shape == (56, 88)
    x, _ = with_start(roll)
    keras_probs = np.asarray(model.predict(x[None], verbose=0))[0, 16:]
    assert np.abs(keras_probs - probs).max() <= 1e-5


def test_same_seed_same_midi_bytes_and_the_file_reads_back(tmp_path) -> None:
    a = zoo.compose(MODEL, steps=32, seed=3, prime="bwv437", max_notes=4)
    b = zoo.compose(MODEL, steps=32, seed=3, prime="bwv437", max_notes=4)
    c = zoo.compose(MODEL, steps=32, seed=4, prime="bwv437", max_notes=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (16 + 32, 88) and a[16:].sum(1).max() <= 4
    pa = music.roll_to_midi(a, tmp_path / "a.mid")
    pb = music.roll_to_midi(b, tmp_path / "b.mid")
    assert pa.read_bytes() == pb.read_bytes()
    assert np.array_equal(music.midi_to_roll(pa)[: len(a)], a[: len(music.midi_to_roll(pa))])
    assert count_notes(a) > 0


def test_temperature_and_cap_shape_the_sampling() -> None:
    p = np.full(88, 0.3)
    rng = np.random.default_rng(0)
    cold = np.mean([sample_frame(p, rng, 0.2, None).sum() for _ in range(50)])
    hot = np.mean([sample_frame(p, rng, 3.0, None).sum() for _ in range(50)])
    assert cold < 5 and hot > 30  # untempered: 0.3 x 88 = 26.4 keys on average
    capped = sample_frame(np.linspace(0.5, 0.99, 88), np.random.default_rng(0), 1.0, 3)
    assert capped.sum() == 3


def test_cli_compose_writes_midi_and_png(tmp_path, capsys) -> None:
    out, png = tmp_path / "x.mid", tmp_path / "x.png"
    args = ["compose", MODEL, "--bars", "2", "--seed", "3", "--out", str(out), "--png", str(png)]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out and png.stat().st_size > 1000
    roll = zoo.compose(MODEL, steps=16, seed=3)
    assert np.array_equal(music.midi_to_roll(out), roll[: len(music.midi_to_roll(out))])
    first = out.read_bytes()
    assert main(args) == 0 and out.read_bytes() == first


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--bars", "-3"], "--bars must be at least 1"),
        (["--prime", "bwv9999"], "unknown prime 'bwv9999'"),
        (["--out", "/no/such/folder/x.mid"], "does not exist"),
        (["--temperature", "0"], "--temperature must be a finite number above 0"),
    ],
)
def test_cli_bad_options_are_one_line(tmp_path, capsys, options, expected) -> None:
    argv = ["compose", MODEL, "--out", str(tmp_path / "x.mid"), *options]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_cli_bad_options_never_print_a_traceback(tmp_path) -> None:
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rnnzoo.cli",
                "compose",
                MODEL,
                "--out",
                str(tmp_path / "x.mid"),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for options in (["--bars", "-1"], ["--prime", "nope"], ["--out", str(tmp_path)])
    ]
    for r in runs:  # started together: each pays the Keras import once, in parallel
        _, err = r.communicate(timeout=180)
        assert r.returncode == 2 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("rnnzoo: error:")
