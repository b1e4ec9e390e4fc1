"""Write a table of real sensor readings shaped like a user's own: one row per reading, a CSV to try
`rnnzoo fit` on before pointing it at your devices.

The readings are aeon's bundled UEA BasicMotions (the package ships them; nothing is downloaded): 80
recordings of a wrist-worn smartwatch's 3-axis accelerometer and gyroscope at 10 Hz while a person stands,
walks, runs or plays badminton, 100 readings each. Each recording becomes one ``session`` (``s000`` ..
``s079``), with ``t`` in seconds from its start, the six channels and the ``activity`` label::

    session,t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,activity
    s000,0.0,0.0791,0.394,0.5514,0.3516,0.024,0.6339,standing

    python scripts/example_readings.py readings.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
RATE_HZ = 10.0


def basic_motions() -> tuple[np.ndarray, np.ndarray]:
    """BasicMotions' train and test recordings together: ``x [80, 6, 100]`` and their activity labels."""
    from zoo.data._files import aeon_archive

    return aeon_archive("BasicMotions")


def write(path: Path) -> int:
    """Write the long table to ``path`` (CSV, or Parquet for a ``.parquet`` name); return its row count."""
    import pandas as pd

    x, y = basic_motions()
    n, _, t = x.shape
    frame = pd.DataFrame({"session": np.repeat([f"s{i:03d}" for i in range(n)], t),
                          "t": np.tile(np.round(np.arange(t) / RATE_HZ, 1), n)})  # fmt: skip
    for j, name in enumerate(CHANNELS):
        frame[name] = x[:, j].reshape(-1).round(4)
    frame["activity"] = np.repeat(np.char.lower(y.astype(str)), t)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return len(frame)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="readings.csv", help="the file to write (.csv or .parquet)")
    args = ap.parse_args(argv)
    rows = write(Path(args.out))
    print(
        f"wrote {args.out}: {rows:,} readings of 80 sessions (BasicMotions: 6 channels at 10 Hz, 4 activities)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
