"""Patient visits: the PBC loader, the patient split, masked labels, and the shipped risk model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zoo
from rnnzoo.cli import main
from zoo.data import patients
from zoo.step import StepModel
from zoo.tasks.patients import (
    HORIZON_YEARS,
    PBC_VISITS,
    PUBLISHED,
    cohort,
    five_year_labels,
    split_patients,
)

NAME = "pbc-visits-gru"


def test_loader_reads_the_whole_cohort_offline() -> None:
    frame = patients.pbcseq()
    assert len(frame) == 1945 and frame["id"].nunique() == 312
    assert {"bili", "albumin", "protime", "futime", "status", "day"} <= set(frame.columns)
    v = cohort().visits
    assert v.x.shape == (312, 16, len(patients.FEATURES)) and v.valid.sum() == 1945
    assert np.isfinite(v.x).all()
    # First patient: two visits (day 0 and 192), bilirubin 14.5 then 21.3, died at day 400.
    assert v.valid[0].sum() == 2 and v.status[0] == 2 and v.futime[0] == 400
    bili = patients.FEATURES.index("log_bili")
    np.testing.assert_allclose(np.exp(v.x[0, :2, bili]), [14.5, 21.3], rtol=1e-5)
    gap = patients.FEATURES.index("years_since_previous_visit")
    assert v.x[0, 0, gap] == 0 and v.x[0, 1, gap] == pytest.approx(192 / 365.25)


def test_missing_labs_are_carried_forward_and_flagged() -> None:
    v = cohort().visits
    chol, flag = patients.FEATURES.index("log_chol"), patients.FEATURES.index("missing_chol")
    # Patient 1 (index 0): cholesterol 261 at entry, not measured at the second visit.
    assert v.x[0, 0, flag] == 0 and v.x[0, 1, flag] == 1
    assert np.exp(v.x[0, 1, chol]) == pytest.approx(261, rel=1e-5)


def test_split_is_by_patient_and_fixed() -> None:
    c = cohort()
    parts = [set(c.train), set(c.val), set(c.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == 312 and (len(c.train), len(c.val), len(c.test)) == (186, 63, 63)
    again = split_patients(c.visits.status)
    assert all(np.array_equal(a, b) for a, b in zip(again, (c.train, c.val, c.test), strict=True))


def test_unknown_five_year_status_is_masked() -> None:
    year = patients.DAYS_PER_YEAR
    day = np.array([[0.0, 2 * year], [0.0, 2 * year], [0.0, 2 * year]])
    futime = np.array([4 * year, 6 * year, 8 * year])
    status = np.array([2, 1, 0])  # died at 4 y; transplanted at 6 y; censored at 8 y
    label, known = five_year_labels(day, futime, status)
    assert label.tolist() == [[1, 1], [0, 0], [0, 0]]
    # A transplant is censoring: at 2 y, 5-year survival of the transplanted patient is unknown.
    assert known.tolist() == [[True, True], [True, False], [True, True]]
    c = cohort()
    assert c.known.sum() == 1401 and not (c.known & ~c.visits.valid).any()
    assert (c.weight[~c.known] == 0).all() and (c.weight[c.known] >= 1).all()
    x, y = PBC_VISITS.test_data()
    assert ((y == -1) == ~c.known[c.test]).all() and set(np.unique(y)) == {-1, 0, 1}
    assert HORIZON_YEARS == 5


@pytest.mark.slow  # a training run (12 s)
def test_tiny_training_run_masks_through_the_loop(tmp_path) -> None:
    card = zoo.train(NAME, out=tmp_path, verbose=0, units=4, epochs=2)
    assert card.streaming.mode == "step" and card.streaming.max_abs_diff_vs_keras <= 1e-5
    assert {"c_td_mean", "brier_ipcw_mean", "auc_5y_known_visits"} <= set(card.test_metrics)
    assert (tmp_path / NAME / "test_plot.png").is_file()


def test_shipped_model_streams_visit_by_visit() -> None:
    x, _ = zoo.test_data(NAME)
    valid = cohort().visits.valid[cohort().test]
    model = zoo.load(NAME)
    step = StepModel.from_keras(model).run(x)
    keras_out = np.asarray(model.predict(x, verbose=0))
    assert np.abs(step - keras_out)[valid].max() <= 1e-5
    assert zoo.card(NAME).streaming.max_abs_diff_vs_keras <= 1e-5


def test_card_has_baselines_and_published_reference() -> None:
    card = zoo.card(NAME)
    m, base = card.test_metrics, card.baselines
    for key in ("c_td", "c_td_mean", "brier_ipcw", "brier_ipcw_mean", "auc_5y_known_visits"):
        assert key in m
    assert {"cox_baseline_all", "cox_landmark_all", "cox_baseline_mayo", "cox_landmark_mayo"} <= set(base)
    assert all(0.5 <= b["c_td_mean"] <= 1 for b in base.values())
    assert "Dynamic-DeepHit" in m["published_reference"]["reference"]
    # The card quotes what the code quotes (the published figures are not re-measured, only carried).
    assert m["published_reference"] == json.loads(json.dumps(PUBLISHED))
    assert "transplant" in card.preprocessing.details["target"]
    assert card.versus_baseline is not None and card.versus_baseline.reference.startswith("cox_")
    assert card.preprocessing.details["feature_names"] == list(patients.FEATURES)


def test_predict_reads_one_patients_visits_from_csv(tmp_path, capsys) -> None:
    x, _ = zoo.test_data(NAME)
    n = int(cohort().visits.valid[cohort().test][0].sum())
    path = tmp_path / "patient.csv"
    np.savetxt(path, x[0, :n], delimiter=",", header=",".join(patients.FEATURES))
    assert main(["predict", NAME, "--input", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("sequence 0: 5-year death risk ") and f"after visit {n} " in out
