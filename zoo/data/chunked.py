"""Training on a table larger than memory: the file is read block by block, never whole.

Three kinds of pass over the file, each holding one block (`zoo.data.blocks.CHUNK_ROWS` rows) at a time:

1. `zoo.data.blocks.scan_table` checks every row and lists the sequences (each one contiguous run of rows);
2. `held_out` keeps in memory what evaluation needs — the validation and test parts, each capped at
   `MAX_HELD_READINGS`, and a seeded sample of training parts (`MAX_SAMPLE_READINGS`) for the baselines and the
   target scale — and computes the training inputs' mean and variance and label counts over *every* training
   reading;
3. `TableStream`, a `keras.utils.PyDataset`, reads the training parts again each epoch and hands the training
   loop batches of windows (or whole sequences) cut exactly as the in-memory path cuts them
   (`zoo.data.split.window_starts`), shuffled within a bounded buffer.

Memory is bounded by the block, the shuffle buffer and the caps — not by the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from zoo.backend import keras
from zoo.data.blocks import CHUNK_ROWS, Scan, iter_blocks
from zoo.data.split import Split, window_starts
from zoo.data.table import Sequences, label_texts

MAX_HELD_READINGS = 200_000  # per validation / test split, kept in memory for evaluation
MAX_SAMPLE_READINGS = 200_000  # training readings kept for the baselines and the target scale
SHUFFLE_EXAMPLES = 4096  # examples shuffled together before batching
MAX_SEQUENCE_READINGS = 1_000_000  # a whole sequence (classify, per-sequence regress) is one example


def _runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal ids in a block."""
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(int)
    stops = np.concatenate([change, [len(ids)]]).astype(int)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _capped(parts: list[tuple[int, int, int]], cap: int) -> list[tuple[int, int, int]]:
    """The first parts, the last one shortened, holding at most ``cap`` readings."""
    out, left = [], cap
    for i, a, b in parts:
        if left <= 0:
            break
        out.append((i, a, min(b, a + left)))
        left -= min(b - a, left)
    return out


def held_out(
    path: Path, scan: Scan, split: Split, seed: int, progress: Any = None, lookahead: int = 0
) -> tuple[Sequences, Split, dict]:
    """One pass: the validation and test parts (capped) and a sample of training parts in memory as a
    `Sequences` with its own `Split`; and over all training readings, the inputs' mean / variance and the
    label counts (``facts``: ``mean``, ``var``, ``label_counts``, ``held``: what was kept, in words).
    ``lookahead`` (a forecast's horizon): readings kept after each part, where its last targets lie."""
    rng = np.random.default_rng(seed)
    sample = [split.train[k] for k in rng.permutation(len(split.train))]
    wanted = {
        "train": _capped(sample, MAX_SAMPLE_READINGS),
        "validation": _capped(split.validation, MAX_HELD_READINGS),
        "test": _capped(split.test, MAX_HELD_READINGS),
    }
    by_seq: dict[int, list[tuple[str, int, int, int]]] = {}
    for role, parts in wanted.items():
        for k, (i, a, b) in enumerate(parts):
            by_seq.setdefault(i, []).append((role, k, a, min(scan.sequences[i].rows, b + lookahead)))
    train_ranges: dict[int, list[tuple[int, int]]] = {}
    for i, a, b in split.train:
        train_ranges.setdefault(i, []).append((a, b))
    pieces: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    n, mean, m2 = 0, None, None
    counts: dict[str, int] = {}
    first_row = {s.id: s.first_row for s in scan.sequences}
    index_of = {s.id: k for k, s in enumerate(scan.sequences)}
    for block in iter_blocks(path, scan.cols):
        for start, stop in _runs(block.ids):
            seq_id = str(block.ids[start])
            i = index_of[seq_id]
            # positions of these rows within their sequence
            lo = block.row0 + start - first_row[seq_id]
            hi = lo + (stop - start)
            for role, k, a, b in by_seq.get(i, ()):
                s, e = max(a, lo), min(b, hi)
                if s < e:
                    rows = slice(start + s - lo, start + e - lo)
                    # copies: a slice is a view that would keep the whole block alive
                    pieces.setdefault((role, k), []).append((block.x[rows].copy(), block.y[rows].copy()))
            for a, b in train_ranges.get(i, ()):
                s, e = max(a, lo), min(b, hi)
                if s >= e:
                    continue
                rows = slice(start + s - lo, start + e - lo)
                x = block.x[rows].astype("float64")
                bn, bmean = len(x), x.mean(0)
                bm2 = ((x - bmean) ** 2).sum(0)
                if mean is None:
                    n, mean, m2 = bn, bmean, bm2
                else:  # Chan et al.'s parallel update: exact, no cancellation
                    delta = bmean - mean
                    total = n + bn
                    mean = mean + delta * bn / total
                    m2 = m2 + bm2 + delta**2 * n * bn / total
                    n = total
                if not scan.cols.numeric_target or _whole(block.y[rows]):
                    values, c = np.unique(
                        label_texts(block.y[rows, 0], scan.cols.numeric_target), return_counts=True
                    )
                    for v, cc in zip(values, c, strict=True):
                        counts[v] = counts.get(v, 0) + int(cc)
        if progress is not None:
            progress(len(block.ids))
    ids, xs, ys = [], [], []
    held_parts: dict[str, list[tuple[int, int, int]]] = {"train": [], "validation": [], "test": []}
    multi = scan.cols.numeric_target and len(scan.cols.targets) > 1
    for role, parts in wanted.items():
        for k, (i, a, b) in enumerate(parts):
            got = pieces.get((role, k), [])
            x = np.concatenate([p[0] for p in got])
            y = np.concatenate([p[1] for p in got])
            held_parts[role].append((len(ids), 0, b - a))  # the rows after b only hold targets
            ids.append(scan.sequences[i].id)
            xs.append(x)
            ys.append(y if multi else y[:, 0])
    kept = {r: int(sum(b - a for _, a, b in parts)) for r, parts in wanted.items()}
    total = {r: int(sum(b - a for _, a, b in getattr(split, r))) for r in ("train", "validation", "test")}
    held = Sequences(ids, xs, ys, scan.cols.features, scan.cols.targets, scan.cols.numeric_target,
                     dict(scan.source), scan.sample_rate_hz)  # fmt: skip
    note = (
        f"; read from disk in blocks of {CHUNK_ROWS} rows: every training reading trains, the scores use the "
        f"first {kept['validation']:,} of {total['validation']:,} validation and {kept['test']:,} of "
        f"{total['test']:,} test readings"
    )
    held_split = Split(
        split.how + note, held_parts["train"], held_parts["validation"], held_parts["test"], split.by
    )
    facts = {
        "mean": mean if mean is not None else np.zeros(len(scan.cols.features)),
        "var": m2 / max(n, 1) if m2 is not None else np.ones(len(scan.cols.features)),
        "label_counts": counts,
        "readings": total,
        "held": kept,
    }
    return held, held_split, facts


def _whole(y: np.ndarray) -> bool:
    return bool(np.all(np.mod(y.astype("float64"), 1) == 0))


class ArrayBatches(keras.utils.PyDataset):
    """In-memory arrays as batches (the validation data beside a `TableStream`), targets scaled alike."""

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, batch_size: int,
                 scale: tuple | None = None) -> None:  # fmt: skip
        super().__init__()
        self.x, self.w, self.batch_size = x, w, batch_size
        self.y = y if scale is None else ((y - scale[0]) / scale[1]).astype("float32")

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i: int) -> tuple:
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return (self.x[s], self.y[s]) + (() if self.w is None else (self.w[s],))


class TableStream(keras.utils.PyDataset):
    """The training parts of a table on disk as batches, epoch after epoch (Keras asks for them in order).

    Args:
        path: the CSV / Parquet file. scan: its `zoo.data.blocks.Scan`. split: which rows train (indices into
            ``scan.sequences``). batch_size: examples per batch; every batch is full (the last one of an epoch
            is completed with copies weighted 0, so shapes never change). seed: the shuffle's seed.
        steps_per_epoch: batches per epoch; None: one pass over the training parts. With fewer, the next
            epoch goes on where the last one stopped.
    """

    def __init__(self, path: Path, scan: Scan, split: Split, batch_size: int, seed: int = 0,
                 steps_per_epoch: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.path, self.scan, self.split = Path(path), scan, split
        self.batch_size, self.seed, self.steps_per_epoch = batch_size, seed, steps_per_epoch
        self.task: Any = None
        self.scale: tuple | None = None
        self._batches: Any = None
        self._epoch = 0

    def configure(self, task: Any, scale: tuple | None) -> None:
        """Bind the task that cuts examples (`zoo.tasks.user.UserTask`) and the target scale."""
        self.task, self.scale = task, scale
        lengths = [b - a for _, a, b in self.split.train]
        if task.per_sequence:
            longest = max(lengths)
            if longest > MAX_SEQUENCE_READINGS:
                from zoo.data.table import DataError

                raise DataError(
                    f"a training sequence has {longest:,} readings: one label per sequence reads a sequence whole, "
                    f"at most {MAX_SEQUENCE_READINGS:,} readings; cut it (--task tag) or give shorter sequences"
                )
            self.length, self.examples = longest, len(lengths)
        else:
            self.length = task.window_len
            self.examples = sum(len(window_starts(n, task.window_len)) for n in lengths)

    def card(self) -> dict:
        """The card's split facts of the whole file: its sequence (or part) and reading counts per split, and
        how training read it (the in-memory counts of the held-out rows go under ``held_in_memory``)."""
        roles = ("train", "validation", "test")
        return {
            **{r: len(getattr(self.split, r)) for r in roles},
            "training_windows": self.examples,
            "readings": {r: int(sum(b - a for _, a, b in getattr(self.split, r))) for r in roles},
            "read_from_disk": f"training batches read from {self.path.name} block by block every epoch "
            f"({self.examples:,} examples"
            + (f"; {self.steps_per_epoch} batches an epoch" if self.steps_per_epoch else "")
            + ")",
        }

    def __len__(self) -> int:
        return self.steps_per_epoch or max(1, math.ceil(self.examples / self.batch_size))

    def on_epoch_begin(self) -> None:
        if self.steps_per_epoch is None or self._batches is None:
            self._batches = self._all_batches()
        self._epoch += 1

    def __getitem__(self, i: int) -> tuple:
        if self._batches is None:
            self._batches = self._all_batches()
        try:
            return next(self._batches)
        except StopIteration:  # the file's end within an epoch of steps_per_epoch batches: start again
            self._batches = self._all_batches()
            return next(self._batches)

    def _all_batches(self) -> Any:
        rng = np.random.default_rng((self.seed, self._epoch))
        buffer: list = []
        for item in self._examples():
            buffer.append(item)
            if len(buffer) >= SHUFFLE_EXAMPLES:
                yield from self._drain(buffer, rng, keep=SHUFFLE_EXAMPLES // 2)
        yield from self._drain(buffer, rng, keep=0)

    def _drain(self, buffer: list, rng: np.random.Generator, keep: int) -> Any:
        order = rng.permutation(len(buffer))
        shuffled = [buffer[k] for k in order]
        buffer.clear()
        while len(shuffled) - keep >= self.batch_size or (keep == 0 and shuffled):
            batch, shuffled = shuffled[: self.batch_size], shuffled[self.batch_size :]
            real = len(batch)
            batch = batch + [batch[0]] * (self.batch_size - real)  # full batches; copies weigh 0
            x, y, w = self.task.stack_items(batch, self.length)
            w[real:] = 0.0
            if self.scale is not None:
                y = ((y - self.scale[0]) / self.scale[1]).astype("float32")
            if self.task.per_sequence is False or w is not None:
                yield x, y, w
        buffer.extend(shuffled)

    def _examples(self) -> Any:
        """(inputs, targets, validity) of each training example, in file order."""
        task = self.task
        horizon = task.horizon if task.task == "forecast" else 0
        ranges: dict[int, tuple[int, int]] = {i: (a, b) for i, a, b in self.split.train}
        first_row = {s.id: s.first_row for s in self.scan.sequences}
        index_of = {s.id: k for k, s in enumerate(self.scan.sequences)}
        lengths = {k: s.rows for k, s in enumerate(self.scan.sequences)}
        current, buf_x, buf_y, buf_at, starts = None, [], [], 0, []
        for block in iter_blocks(self.path, self.scan.cols):
            for start, stop in _runs(block.ids):
                seq_id = str(block.ids[start])
                i = index_of[seq_id]
                if i not in ranges:
                    continue
                a, b = ranges[i]
                lo = block.row0 + start - first_row[seq_id]
                hi = lo + (stop - start)
                if i != current:
                    current, buf_x, buf_y, buf_at = i, [], [], a
                    starts = (
                        [a + s for s in window_starts(b - a, task.window_len)]
                        if not task.per_sequence
                        else []
                    )
                end_needed = min(lengths[i], b + horizon)  # a forecast's targets look past the part's end
                s, e = max(buf_at + sum(len(v) for v in buf_x), lo), min(end_needed, hi)
                if s >= e:
                    continue
                rows = slice(start + s - lo, start + e - lo)
                buf_x.append(block.x[rows])
                buf_y.append(block.y[rows])
                have = buf_at + sum(len(v) for v in buf_x)
                if task.per_sequence:
                    if have >= b:
                        yield self._item(np.concatenate(buf_x), np.concatenate(buf_y), b - a)
                        buf_x, buf_y = [], []
                    continue
                x, y = np.concatenate(buf_x), np.concatenate(buf_y)
                buf_x, buf_y = [x], [y]
                while starts and (starts[0] + task.window_len + horizon <= have or have >= end_needed):
                    s0 = starts.pop(0) - buf_at
                    stop_at = min(len(x), s0 + task.window_len + horizon)
                    yield self._item(x[s0:stop_at], y[s0:stop_at], min(task.window_len, b - a))
                # keep only what later windows need
                drop = (starts[0] - buf_at) if starts else len(x)
                if drop > 0:
                    buf_x, buf_y, buf_at = [x[drop:]], [y[drop:]], buf_at + drop

    def _item(self, x: np.ndarray, y_raw: np.ndarray, length: int) -> tuple:
        task = self.task
        multi = self.scan.cols.numeric_target and len(self.scan.cols.targets) > 1
        lab = y_raw if multi else y_raw[:, 0]
        if task.task in ("classify", "tag"):
            lab = task.label_index(lab)
        else:
            lab = np.asarray(lab, "float64").reshape(len(lab), -1)
        y, valid = task.targets_of(lab)
        return x[:length], y[:length], valid[:length]
