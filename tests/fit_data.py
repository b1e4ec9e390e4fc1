"""Real public data that ships offline inside aeon's wheel and that no zoo model uses, written as the long
tables (one row per reading) a user would hand to ``rnnzoo fit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zoo.data._files import aeon_archive, package_file


def ucr(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A UCR/UEA set's default train and test splits together: ``x [N, channels, T]`` and labels/targets."""
    return aeon_archive(name)


def italy_power(path: Path, days: int | None = None) -> Path:
    """UCR ItalyPowerDemand: 24 hourly readings of Italian power demand per day, labelled by the half of the
    year (October-March or April-September; the archive's classes 1 and 2, kept as numbers); one row per
    hour, ``day`` the sequence id."""
    x, y = ucr("ItalyPowerDemand")
    if days is not None:  # both classes, alternating, so a small share stays balanced
        order = np.concatenate([np.flatnonzero(y == c)[: days // 2] for c in ("1", "2")])
        x, y = x[order], y[order]
    n, _, t = x.shape
    frame = pd.DataFrame(
        {
            "day": np.repeat([f"day{i:04d}" for i in range(n)], t),
            "hour": np.tile(np.arange(t), n),
            "demand": x[:, 0].reshape(-1),
            "half_year": np.repeat(y.astype(int), t),
        }
    )
    return _write(frame, path)


def gunpoint_recording(path: Path, gestures: int | None = None) -> Path:
    """UCR GunPoint gestures (an actor's hand position, 150 frames at 30 frames/s, drawing a gun or
    pointing) played one after another as one long recording with two channels — the position and its
    velocity — and a label per reading: which gesture the hand is making."""
    x, y = ucr("GunPoint")
    if gestures is not None:
        x, y = x[:gestures], y[:gestures]
    pos = x[:, 0].reshape(-1)
    frame = pd.DataFrame(
        {
            "t": np.arange(len(pos)) / 30.0,
            "x": pos,
            "dx": np.gradient(pos),
            "gesture": np.repeat(np.where(y == "1", "gun", "point"), x.shape[2]),
        }
    )
    return _write(frame, path)


def airline(path: Path) -> Path:
    """Box & Jenkins' monthly airline passengers 1949-1960 (aeon's Airline.csv): one series of 144 months."""
    return _write(pd.read_csv(package_file("aeon", "datasets", "data", "Airline", "Airline.csv")), path)


def covid_3month() -> tuple[np.ndarray, np.ndarray]:
    """Monash Covid3Month: 84 days of a country's daily Covid-19 cases per sequence; the target is its death
    rate over the following month (a number per sequence). Returns ``x [N, 84, 1]`` and ``y [N]``."""
    x, y = ucr("Covid3Month")
    return x.transpose(0, 2, 1).astype("float32"), y.astype("float64")


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
