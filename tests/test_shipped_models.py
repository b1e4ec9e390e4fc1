"""Every shipped model: loads offline, is refused when tampered with, and re-measures to its card."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo import cards

SHIPPED = zoo.list_models()
# Re-measuring these renders speech with espeak-ng or decodes 1,500 sentences: 50-80 s each on 2 cores
# (measured with --durations), so they run in the slow suite; the rest re-measure in a second or two.
HEAVY = {"translate-en-fr-gru", "spoken-words-bigru", "digits-ctc-bigru", "keyword-seven-gru"}


def _numbers(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The scalar figures of a card's test metrics, nested ones flattened as ``outer.inner`` (not the anomaly
    block: its flagged counts may move at the threshold, checked below)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or key == "anomaly":
            continue
        if isinstance(value, int | float):
            out[prefix + key] = float(value)
        elif isinstance(value, dict):
            out |= _numbers(value, f"{prefix}{key}.")
    return out


def _by_cost(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


def test_the_sensor_and_health_models_ship() -> None:
    for name in ("activity-gru-causal", "activity-lstm-causal", "activity-simple-causal", "activity-bigru"):
        assert name in SHIPPED
    assert {"ecg-anomaly-gru", "abp-anomaly-gru", "co2-forecast-gru"} <= set(SHIPPED)


@pytest.mark.parametrize("name", _by_cost(SHIPPED))
def test_re_evaluation_matches_card(name: str) -> None:
    fresh, recorded = zoo.evaluate(name), zoo.card(name).test_metrics
    # Every number the card states about the test split (accuracy, bits per character, NLL per frame, C^td /
    # AUC / Brier, sequence and digit error, detection rate and false alarms, BLEU / chrF, ...) is re-measured:
    # trained on one backend, re-measured on another, so float round-off only.
    compared = 0
    for key, value in _numbers(recorded).items():
        assert key in _numbers(fresh), f"{name}: the re-evaluation does not report {key}"
        assert _numbers(fresh)[key] == pytest.approx(value, abs=2e-3, rel=1e-3), key
        compared += 1
    assert compared >= 1, f"{name}: the card states no test figure to re-measure"
    if "anomaly" in recorded:
        for key in ("ucr_hit", "ucr_top_score_index"):
            if key in recorded["anomaly"]:
                assert fresh["anomaly"][key] == recorded["anomaly"][key], key
        # A point whose score sits at the threshold flips with one float rounding; only those may move.
        moved = abs(fresh["anomaly"]["flagged_test_points"] - recorded["anomaly"]["flagged_test_points"])
        assert moved <= fresh["anomaly"]["test_points_near_threshold"], (moved, fresh["anomaly"])


@pytest.mark.parametrize("name", [n for n in SHIPPED if zoo.card(n).kind == "forecast"])
def test_forecasters_beat_seasonal_naive_and_detectors_hit(name: str) -> None:
    card = zoo.card(name)
    m, base = card.test_metrics, card.baselines
    assert m["mase"] < min(b["mase"] for b in base.values())
    if "ucr_hit" in m["anomaly"]:
        assert m["anomaly"]["ucr_hit"]


def test_tampered_model_is_refused(tmp_path, monkeypatch) -> None:
    name = SHIPPED[0]
    shutil.copytree(cards.model_dir(name), tmp_path / name)
    path = tmp_path / name / "model.keras"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setattr(cards, "SAVED_MODELS", tmp_path)
    with pytest.raises(cards.IntegrityError, match="does not match its card"):
        zoo.load(name)


def test_saved_model_loads_on_jax_with_the_same_outputs(tmp_path) -> None:
    name = "activity-gru-causal"
    x, _ = zoo.test_data(name)
    np.save(tmp_path / "x.npy", x[:4])
    ours = np.asarray(zoo.load(name).predict(x[:4], verbose=0))
    code = (
        "import sys, numpy as np, zoo; x = np.load(sys.argv[1]); "
        "np.save(sys.argv[2], np.asarray(zoo.load(sys.argv[3]).predict(x, verbose=0)))"
    )
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), name],
        env=env,
        check=True,
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ours, atol=1e-5)
