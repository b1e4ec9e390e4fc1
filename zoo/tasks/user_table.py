"""A user's table as a `zoo.tasks.user.UserTask`: the kind of fit chosen from the target column, the table read
whole or block by block (a file larger than memory), and the same task rebuilt from a fitted model's card (for
`zoo.evaluate` and `zoo.test_data` on a model folder)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo import cards
from zoo.data.blocks import scan_table
from zoo.data.split import KINDS, split_sequences
from zoo.data.table import (
    MAX_INTEGER_CLASSES,
    DataError,
    Sequences,
    label_texts,
    read_sequences,
)
from zoo.tasks.user import UserTask, default_window, natural_order


@dataclass(frozen=True)
class TargetFacts:
    """What the task choice looks at: the target column's kind of values and how they sit in sequences."""

    column: str
    numeric: bool
    whole_numbers: bool  # every value a whole number (numeric targets)
    distinct: int  # distinct values (capped for numbers that are not whole)
    constant: bool  # the target never changes within a sequence
    sequences: int
    columns: int = 1  # target columns


def target_facts(seqs: Sequences) -> TargetFacts:
    values = np.concatenate([np.asarray(t).reshape(len(t), -1)[:, 0] for t in seqs.target])
    whole = bool(seqs.numeric_target and np.all(np.mod(values.astype("float64"), 1) == 0))
    return TargetFacts(
        seqs.target_names[0],
        seqs.numeric_target,
        whole,
        len(np.unique(values.astype(str))),
        all(np.all(np.asarray(t) == np.asarray(t)[0]) for t in seqs.target),
        len(seqs.ids),
        len(seqs.target_names),
    )


def choose_task(facts: TargetFacts) -> tuple[str, str]:
    """The kind of fit a target column asks for, and why, in words."""
    col, n, k = facts.column, facts.sequences, facts.distinct
    if not facts.numeric or (facts.whole_numbers and k <= MAX_INTEGER_CLASSES and facts.columns == 1):
        what = "labels" if not facts.numeric else f"{k} distinct whole numbers"
        if facts.constant and n >= 3:
            return (
                "classify",
                f"target {col!r} holds {what} ({k} classes), one per sequence in all {n} sequences",
            )
        return (
            "tag",
            f"target {col!r} holds {what} ({k} classes) that change within a sequence: a label per reading",
        )
    if facts.constant and n >= 3:
        return (
            "regress",
            f"target {col!r} is a number, constant within each of the {n} sequences: one per sequence",
        )
    return (
        "forecast",
        f"target {col!r} is a number that changes reading by reading: forecast its next value(s)",
    )


IN_MEMORY_BYTES = 256 * 2**20  # files larger than this are read block by block


def build_task(
    data: Any,
    target: str | list[str],
    id: str | None,  # noqa: A002
    time_col: str | None,
    features: list[str] | None,
    fill: str | None,
    task: str | None,
    horizon: int,
    window: int | None,
    season: int | None,
    balance: str,
    seed: int,
    batch_size: int = 32,
    chunked: bool | None = None,
    steps_per_epoch: int | None = None,
    progress: bool = False,
) -> tuple[UserTask, str]:
    """The `UserTask` for a table — read whole, or block by block when it is large — and the
    task chosen, with why, in one sentence."""
    if task is not None and task not in KINDS:
        raise DataError(f"--task must be classify, tag, forecast or regress (got {task!r})")
    is_file = isinstance(data, str | Path)
    if chunked is None:
        chunked = is_file and Path(data).is_file() and Path(data).stat().st_size > IN_MEMORY_BYTES
    if chunked and not is_file:
        raise DataError("only a CSV or Parquet file can be read block by block")
    if steps_per_epoch is not None and not (chunked and steps_per_epoch >= 1):
        raise DataError(
            "--steps-per-epoch applies to a table read block by block (--chunked), and must be >= 1"
        )
    flags = {"target_as_input": task == "forecast", "require_features": task is not None}
    if not chunked:
        seqs = read_sequences(data, target, id, time_col, features, fill, **flags)
        facts = target_facts(seqs)
    else:
        with _rows_bar(Path(data), "checking", progress) as bar:
            scan = scan_table(Path(data), target, id, time_col, features, fill, progress=bar, **flags)
        facts = _scan_facts(scan)
    chosen = f"task {task} (as asked)"
    if task is None:
        task, why = choose_task(facts)
        chosen = f"task {task}: {why} (--task to choose another)"
        if not chunked:  # the target's past is an input of a forecaster; the other kinds need other inputs
            seqs = read_sequences(
                data, target, id, time_col, features, fill, target_as_input=task == "forecast"
            )
    options = {"horizon": horizon, "season": season, "balance": balance, "seed": seed}
    if not chunked:
        return UserTask(seqs, task, window=window, **options), chosen
    return _chunked_task(
        Path(data), scan, task, window, batch_size, steps_per_epoch, progress, options
    ), chosen


def _scan_facts(scan: Any) -> TargetFacts:
    infos = scan.sequences
    whole = scan.cols.numeric_target and all(s.whole_numbers for s in infos)
    distinct = len(scan.labels) if (not scan.cols.numeric_target or whole) else 10**9
    return TargetFacts(scan.cols.targets[0], scan.cols.numeric_target, whole, distinct,
                       all(s.constant for s in infos), len(infos), len(scan.cols.targets))  # fmt: skip


def _chunked_task(path: Path, scan: Any, task: str, window: int | None, batch_size: int,
                  steps_per_epoch: int | None, progress: bool, options: dict) -> Any:  # fmt: skip
    from zoo.data.chunked import TableStream, held_out

    cols = scan.cols
    if task == "forecast":  # the target's past is an input of a forecaster
        cols = dataclasses.replace(
            cols, features=[t for t in cols.targets if t not in cols.features] + cols.features
        )
        scan = dataclasses.replace(scan, cols=cols)
    elif not cols.features:
        raise DataError(
            f"{path.name} has no numeric feature column besides the target; name them with --features"
        )
    infos = scan.sequences
    if task == "classify":
        mixed = next((s for s in infos if not s.constant), None)
        if mixed is not None:
            raise DataError(f"--task classify needs one label per sequence, but sequence {mixed.id!r} has several "
                            "(use --task tag for a label per reading)")  # fmt: skip
    ids = [s.id for s in infos]
    lengths = np.array([s.rows for s in infos])
    names = sorted(scan.labels, key=natural_order) if task in ("classify", "tag") else []
    if task in ("classify", "tag") and len(names) < 2:
        raise DataError(
            f"--target {cols.targets[0]!r} has a single class ({names[0]!r}): nothing to tell apart"
        )
    per_sequence = task == "classify" or (
        task == "regress" and len(ids) >= 3 and all(s.constant for s in infos)
    )
    win = int(window or default_window(len(ids), int(lengths.min())))
    label_of = {n: i for i, n in enumerate(names)}

    firsts = label_texts(np.array([s.first_label for s in infos]), cols.numeric_target)
    seq_labels = np.array([label_of[k] for k in firsts]) if task == "classify" else None
    split = split_sequences(ids, lengths, options["seed"], per_sequence, seq_labels, win)
    with _rows_bar(path, "holding out", progress) as bar:
        lookahead = options["horizon"] if task == "forecast" else 0
        held, held_split, facts = held_out(path, scan, split, options["seed"], bar, lookahead)
    counts = None
    if task == "classify":
        counts = np.bincount([seq_labels[i] for i, _, _ in split.train], minlength=len(names))
    elif task == "tag":
        counts = np.array([facts["label_counts"].get(n, 0) for n in names])
    stream = TableStream(path, scan, split, batch_size, options["seed"], steps_per_epoch)
    return UserTask(held, task, window=win, class_names=names, split=held_split, stream=stream,
                    train_stats=(facts["mean"], facts["var"]), train_label_counts=counts, **options)  # fmt: skip


def _rows_bar(path: Path, what: str, show: bool) -> Any:
    """A progress bar over a file's rows (its total known for Parquet), as a context giving ``update``."""
    import contextlib

    if not show:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    total = None
    if path.suffix.lower() != ".csv":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows

    @contextlib.contextmanager
    def bar() -> Any:
        with tqdm(
            total=total, desc=f"{what} {path.name}", unit="rows", unit_scale=True, dynamic_ncols=True
        ) as t:
            yield t.update

    return bar()


def user_options(user: UserTask) -> dict:
    """What `zoo.evaluate` needs to rebuild the same split from the same file."""
    cols = user.seqs.source["columns_used"]
    return {
        "target": cols["target"], "id": cols["id"], "time": cols["time"], "features": cols["features"],
        "task": user.task, "horizon": user.horizon, "window": user.window_len, "season": user.season,
        "balance": user.balance, "seed": user.seed, "chunked": user.stream is not None,
    }  # fmt: skip


def task_of(folder: Path, card: cards.Card) -> UserTask:
    """The fitted model's task rebuilt from the file it was fitted on (same columns, split and seed): the file
    must still be there and unchanged (its sha256)."""
    opts = card.recipe.details.get("fit_options")
    path = card.dataset.details.get("path")
    if not opts or not path:
        raise DataError(f"{folder}: the card does not say which file the model was fitted on")
    if not Path(path).is_file():
        raise DataError(f"{folder} was fitted on {path}, which is no longer there: cannot re-measure it")
    if cards.sha256(Path(path)) != card.dataset.details.get("sha256"):
        raise DataError(
            f"{path} changed since {folder} was fitted on it (sha256): cannot re-measure on the same split"
        )
    feats = opts["features"]
    as_input = opts["task"] == "forecast"
    user, _ = build_task(path, opts["target"], opts["id"], opts["time"],
                         [f for f in feats if not (as_input and f in opts["target"])] or None,
                         card.dataset.details.get("fill"), opts["task"], opts["horizon"], opts["window"],
                         opts["season"], opts["balance"], opts["seed"], chunked=bool(opts.get("chunked")))  # fmt: skip
    return user
