"""IoT motion sensors: UEA BasicMotions (smartwatch accelerometer + gyroscope), shipped in aeon."""

from __future__ import annotations

import numpy as np

from zoo.data._files import aeon_archive

BASIC_MOTIONS = {
    "name": "BasicMotions (UEA multivariate archive)",
    "origin": "aeon 1.6 package file aeon/datasets/data/BasicMotions/*.ts; Clements & Bagnall, UEA archive",
    "channels": ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"],
    "sample_rate_hz": 10.0,
    "licence": "no licence stated by the UEA archive (it asks users to cite it); the files ship in aeon's "
    "BSD-3-Clause package",
}


def basic_motions(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The archive's default ``"train"`` or ``"test"`` split: X ``[N, 100, 6]`` float32, y string labels."""
    X, y = aeon_archive("BasicMotions", split)
    return np.transpose(np.asarray(X, "float32"), (0, 2, 1)), np.asarray(y).astype(str)
