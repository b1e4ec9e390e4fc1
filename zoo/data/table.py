"""The user's own readings: a long table (one row per reading) read, checked and cut into sequences.

``rnnzoo fit`` and `zoo.fit` read CSV or Parquet files (or a pandas DataFrame) with a target column, an
optional sequence id (device, recording, patient) and an optional time column. Every problem a user can fix
is a `DataError` with one sentence that names the column and the rows, so the command ends in one line
instead of a traceback half-way through training. A file larger than memory is checked block by block with the
same checks (`zoo.data.blocks`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.cards import sha256

SUFFIXES = (".csv", ".parquet", ".pq")
FILLS = ("ffill", "zero")
# Beyond this many distinct integer values, an integer target is a quantity, not a label.
MAX_INTEGER_CLASSES = 20


class DataError(ValueError):
    """A table the user can fix: the message is one line naming the column, the rows or the option."""


@dataclass
class Sequences:
    """The table cut into sequences, in the order the ids first appear.

    ``x[i]`` is ``[T_i, F]`` float32 (the feature columns, in ``features`` order); ``target[i]`` is ``[T_i]``
    (labels as strings, or float values) or ``[T_i, K]`` for several forecast targets."""

    ids: list[str]
    x: list[np.ndarray]
    target: list[np.ndarray]
    features: list[str]
    target_names: list[str]
    numeric_target: bool
    source: dict = field(default_factory=dict)  # name, origin, sha256, rows, columns, … for the card
    sample_rate_hz: float | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.x])


def label_texts(values: np.ndarray, numeric: bool) -> np.ndarray:
    """Labels as the card names them: strings as read; whole numbers without a decimal point ("1", not
    "1.0")."""
    values = np.asarray(values)
    if not numeric:
        return values.astype(str)
    f = values.astype("float64")
    whole = np.mod(f, 1) == 0
    return np.where(whole, np.char.mod("%d", np.where(whole, f, 0).astype("int64")), f.astype(str))


def _closest(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; columns: {', '.join(columns[:20])}"


def _rows(index: np.ndarray, limit: int = 5) -> str:
    """Data rows (1-based, the header not counted) for a message: at most ``limit`` named."""
    shown = ", ".join(str(int(i) + 1) for i in index[:limit])
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


def read_frame(data: Any, columns: list[str] | None = None) -> tuple[Any, dict]:
    """A DataFrame from a path (CSV, Parquet) or a DataFrame, and the card's record of where it came from."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data, {"name": "a pandas DataFrame", "origin": "passed in Python (zoo.fit)"}
    path = Path(data)
    _, source = read_frame_source(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, usecols=columns)
        else:
            frame = pd.read_parquet(path, columns=columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} is empty") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(f"cannot read {path.name} as a table ({first})") from None
    except Exception as e:  # pyarrow raises its own types for a corrupt Parquet file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(f"cannot read {path.name} as a table ({first})") from None
    return frame, source


def _numeric_column(frame: Any, col: str, role: str, row0: int = 0) -> np.ndarray:
    import pandas as pd

    series = frame[col]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy("float64")
    if not pd.api.types.is_numeric_dtype(series):
        bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
        where = np.flatnonzero(bad.to_numpy())
        example = repr(series.iloc[where[0]])[:40] if len(where) else "?"
        raise DataError(
            f"{role} column {col!r} is not numeric ({example} in row {_rows(where + row0, 1)}); "
            + ("give numeric columns with --features" if role == "feature" else "it must hold numbers")
        )
    return series.to_numpy("float64")


@dataclass(frozen=True)
class Columns:
    """Which columns play which part, checked against the table's header and types."""

    features: list[str]
    targets: list[str]
    id: str | None
    time: str | None
    numeric_target: bool
    fill: str | None

    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys(self.features + self.targets + [c for c in (self.id, self.time) if c]))


def resolve_columns(
    frame: Any,
    name: str,
    target: str | list[str],
    id_col: str | None = None,
    time_col: str | None = None,
    features: list[str] | None = None,
    fill: str | None = None,
    target_as_input: bool = False,
    require_features: bool = True,
) -> Columns:
    """The roles of the columns of ``frame`` (the whole table, or its first rows for their types), which must
    hold a row; the frame's column names become strings (a Parquet file may name a column 0)."""
    import pandas as pd

    if fill is not None and fill not in FILLS:
        raise DataError(f"--fill must be one of {', '.join(FILLS)} (got {fill!r})")
    if len(frame) == 0:
        raise DataError(f"{name} has a header but no rows")
    frame.columns = columns = [str(c) for c in frame.columns]
    targets = [target] if isinstance(target, str) else list(target)
    if not targets:
        raise DataError("--target names no column")
    for role, col in [("--target", t) for t in targets] + [("--id", id_col), ("--time", time_col)]:
        if col is not None and col not in columns:
            raise DataError(f"{role} column {col!r} is not in {name}{_closest(col, columns)}")
    for f in features or []:
        if f not in columns:
            raise DataError(f"--features column {f!r} is not in {name}{_closest(f, columns)}")
    reserved = {id_col, time_col} - {None}
    if features:
        clash = [f for f in features if f in reserved]
        if clash:
            raise DataError(f"--features names {clash[0]!r}, which is the --id or --time column")
        among = [f for f in features if f in targets]
        if among and not target_as_input:
            raise DataError(
                f"the target {among[0]!r} is among the features: a model that reads its own label learns "
                "nothing; leave it out of --features"
            )
        names = list(features)
    else:
        names = [
            c
            for c in columns
            if c not in reserved
            and c not in targets
            and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
        ]
    if target_as_input:
        names = [t for t in targets if t not in names] + names
    if not names and require_features:
        raise DataError(
            f"{name} has no numeric feature column besides the target"
            + (", id and time" if reserved else "")
            + "; name them with --features"
        )
    numeric_target = all(
        pd.api.types.is_numeric_dtype(frame[t]) and not pd.api.types.is_bool_dtype(frame[t]) for t in targets
    )
    if len(targets) > 1 and not numeric_target:
        raise DataError("several --target columns are for forecasting numbers; a label is one column")
    return Columns(names, targets, id_col, time_col, numeric_target, fill)


@dataclass
class Rows:
    """One block of the table as arrays: features ``[n, F]``, targets ``[n, K]`` (float, or str labels
    ``[n, 1]``), sequence ids ``[n]`` and times ``[n]`` (seconds for dates), rows numbered from ``row0``."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    times: np.ndarray | None
    row0: int


def block_rows(frame: Any, cols: Columns, row0: int = 0, carry: dict | None = None) -> Rows:
    """Check and convert a block of rows (``row0``: its first row's index in the table, for messages).
    ``carry`` (``ffill`` across blocks): the last finite feature values of the sequence the block continues."""
    import pandas as pd

    x = (
        np.stack([_numeric_column(frame, c, "feature", row0) for c in cols.features], axis=1)
        if cols.features
        else np.zeros((len(frame), 0))
    )
    if cols.id is not None:
        if frame[cols.id].isna().any():
            where = np.flatnonzero(frame[cols.id].isna().to_numpy())
            raise DataError(f"--id column {cols.id!r} has missing ids (rows {_rows(where + row0)})")
        ids = frame[cols.id].astype(str).to_numpy()
    else:
        ids = np.full(len(frame), "recording", dtype=object)
    if cols.numeric_target:
        y = np.stack([_numeric_column(frame, t, "target", row0) for t in cols.targets], axis=1)
        y = _check_finite(y, cols.targets, None, "target", row0, ids)
    else:
        col = frame[cols.targets[0]]
        missing = col.isna().to_numpy()
        if missing.any():
            where = np.flatnonzero(missing) + row0
            raise DataError(f"--target column {cols.targets[0]!r} has missing labels (rows {_rows(where)})")
        y = col.astype(str).to_numpy()[:, None]
    x = _check_finite(x, cols.features, cols.fill, "feature", row0, ids, carry)
    times = None
    if cols.time is not None:
        series = frame[cols.time]
        if pd.api.types.is_numeric_dtype(series):
            times = series.to_numpy("float64")
        else:
            try:
                stamps = pd.to_datetime(series, utc=True, format="mixed")
            except (ValueError, TypeError):
                raise DataError(f"--time column {cols.time!r} holds neither numbers nor dates") from None
            if stamps.isna().any():
                where = np.flatnonzero(stamps.isna().to_numpy()) + row0
                raise DataError(f"--time column {cols.time!r} has missing time stamps (rows {_rows(where)})")
            times = stamps.astype("int64").to_numpy() / 1e9
        bad = ~np.isfinite(times)
        if bad.any():
            raise DataError(
                f"--time column {cols.time!r} has missing time stamps (rows {_rows(np.flatnonzero(bad) + row0)})"
            )
    return Rows(x.astype("float32"), y, ids, times, row0)


def check_time_order(seq_id: str, times: np.ndarray, rows: np.ndarray, col: str) -> np.ndarray:
    """The steps between readings of one sequence, once its time stamps strictly increase."""
    d = np.diff(times)
    if (d == 0).any():
        raise DataError(
            f"duplicate time stamps in sequence {seq_id!r} (--time {col!r}, rows {_rows(rows[1:][d == 0])})"
        )
    if (d < 0).any():
        raise DataError(
            f"time stamps go backwards in sequence {seq_id!r} (--time {col!r}, rows {_rows(rows[1:][d < 0])}); "
            "sort the file by id and time"
        )
    return d


def read_sequences(
    data: Any,
    target: str | list[str],
    id_col: str | None = None,
    time_col: str | None = None,
    features: list[str] | None = None,
    fill: str | None = None,
    target_as_input: bool = False,
    require_features: bool = True,
) -> Sequences:
    """Read and check the whole table in memory, and cut it into sequences (one per id, rows in file order,
    which the time column must follow).

    ``target_as_input`` (forecasting): the target columns are inputs too — their past is known at every step —
    and come first among the features unless ``features`` names them. ``require_features=False`` lets a table
    with no input column through (to choose the task: a forecaster's only input may be its target)."""
    import pandas as pd

    if fill is not None and fill not in FILLS:
        raise DataError(f"--fill must be one of {', '.join(FILLS)} (got {fill!r})")
    frame, source = read_frame(data)
    cols = resolve_columns(frame, source["name"], target, id_col, time_col, features, fill, target_as_input,
                           require_features)  # fmt: skip
    rows = block_rows(frame, cols)
    groups = pd.Series(np.arange(len(frame))).groupby(rows.ids, sort=False).indices
    out_ids, xs, ys, steps = [], [], [], []
    for seq_id, index in groups.items():  # in the order the ids first appear
        index = np.asarray(index)
        if rows.times is not None:
            steps.append(check_time_order(str(seq_id), rows.times[index], index, time_col))
        out_ids.append(str(seq_id))
        xs.append(rows.x[index])
        ys.append(rows.y[index] if cols.numeric_target and len(cols.targets) > 1 else rows.y[index, 0])
    source.update(source_facts(cols, len(frame), len(out_ids)))
    return Sequences(
        out_ids, xs, ys, cols.features, cols.targets, cols.numeric_target, source, sample_rate(steps)
    )


def sample_rate(steps: list[np.ndarray]) -> float | None:
    """Readings per second (or per time unit) from the median step between readings."""
    if not steps or not sum(len(s) for s in steps):
        return None
    dt = float(np.median(np.concatenate(steps)))
    return 1.0 / dt if dt > 0 else None


def source_facts(cols: Columns, rows: int, sequences: int) -> dict:
    """The card's record of the columns used and the table's size."""
    return {
        "rows": rows,
        "sequences": sequences,
        "columns_used": {"features": cols.features, "target": cols.targets, "id": cols.id, "time": cols.time},
        "fill": cols.fill,
        **({"time_unit": "seconds (dates) or the column's own unit"} if cols.time else {}),
    }


def _check_finite(
    values: np.ndarray,
    names: list[str],
    fill: str | None,
    role: str,
    row0: int = 0,
    ids: np.ndarray | None = None,
    carry: dict | None = None,
) -> np.ndarray:
    """Refuse NaN / inf (naming the column and rows), or fill them: ``ffill`` repeats the last finite value of
    the column within the same sequence (0 before its first), ``zero`` writes 0. Values beyond float32 count
    as inf. ``carry``: {sequence id: last finite row} for a sequence a previous block began."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(values) | (np.abs(values) > np.finfo("float32").max)
    if not bad.any():
        if carry is not None and len(values):
            carry.clear()
            carry[ids[-1]] = values[-1].copy()
        return values
    if fill is None or role == "target":
        col = int(np.flatnonzero(bad.any(0))[0])
        where = np.flatnonzero(bad[:, col]) + row0
        hint = "" if role == "target" else "; fill them with --fill ffill|zero"
        raise DataError(
            f"{role} column {names[col]!r} has {len(where)} missing or non-finite value(s) "
            f"(rows {_rows(where)}){hint}"
        )
    values = values.copy()
    values[bad] = np.nan
    if fill == "zero":
        return np.nan_to_num(values, nan=0.0)
    import pandas as pd

    frame = pd.DataFrame(values)
    if carry and ids is not None and ids[0] in carry:  # the sequence goes on from the previous block
        frame = pd.concat([pd.DataFrame([carry[ids[0]]]), frame], ignore_index=True)
        keys = np.concatenate([[ids[0]], ids])
        filled = frame.groupby(keys, sort=False).ffill().fillna(0.0).to_numpy("float64")[1:]
    else:
        filled = frame.groupby(ids if ids is not None else np.zeros(len(values)), sort=False).ffill()
        filled = filled.fillna(0.0).to_numpy("float64")
    if carry is not None and len(values):
        carry.clear()
        carry[ids[-1]] = filled[-1].copy()
    return filled


def read_frame_source(path: Path) -> tuple[None, dict]:
    """The card's record of a file (name, path, sha256, size) without reading it as a table."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path.name}: expected a .csv or .parquet file (got {suffix or 'no suffix'})")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty")
    return None, {
        "name": path.name,
        "origin": f"the user's file {path.resolve()}",
        "path": str(path.resolve()),
        "sha256": sha256(path),
        "file_size_bytes": path.stat().st_size,
    }
