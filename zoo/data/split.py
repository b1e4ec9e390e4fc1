"""How a user's sequences are split for honest evaluation, and where training windows are cut.

Both the in-memory path (`zoo.tasks.user`) and the path over tables larger than memory (`zoo.data.chunked`) use
these, so the two cut exactly the same examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoo.data.table import DataError

__all__ = ["KINDS", "Split", "split_sequences", "window_starts"]

KINDS = (
    "classify",
    "tag",
    "forecast",
    "regress",
)  # what a fit can be (zoo.tasks.user says how each is scored)


@dataclass
class Split:
    """Which readings of which sequences each split holds: (sequence index, start, stop) per part."""

    how: str
    train: list[tuple[int, int, int]]
    validation: list[tuple[int, int, int]]
    test: list[tuple[int, int, int]]
    by: str = "sequence"  # or "time"


def split_sequences(
    ids: list[str], lengths: np.ndarray, seed: int, per_sequence: bool, labels: np.ndarray | None, gap: int
) -> Split:
    """60 / 20 / 20 by sequence (stratified by label where there is one per sequence), seeded; by time within
    each sequence when there are fewer than three (refused for the per-sequence kinds)."""
    from sklearn.model_selection import train_test_split

    n = len(ids)
    whole = [(i, 0, int(lengths[i])) for i in range(n)]
    if n >= 3 and not (per_sequence and labels is not None and np.bincount(labels).min() < 3):
        idx = np.arange(n)
        strat = labels if labels is not None else None
        n_test = max(1, round(0.2 * n))
        n_val = max(1, round(0.2 * n))
        if strat is not None and (n_test < strat.max() + 1 or n_val < strat.max() + 1):
            strat = None
        rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
        train, val = train_test_split(
            rest, test_size=n_val, random_state=seed, stratify=None if strat is None else strat[rest]
        )
        how = (
            f"by sequence, {'stratified by label, ' if strat is not None else ''}60/20/20, seed {seed}: "
            "no sequence is in two splits"
        )
        return Split(how, [whole[i] for i in sorted(train)], [whole[i] for i in sorted(val)],
                     [whole[i] for i in sorted(test)])  # fmt: skip
    if per_sequence:
        if labels is not None and n >= 3:
            small = int(np.argmin(np.bincount(labels)))
            raise DataError(
                f"a class has {int(np.bincount(labels).min())} sequence(s): a split by sequence needs at least 3 "
                "of every class (training, validation, test)" + (f" (class index {small})" if small else "")
            )
        raise DataError(
            f"{n} sequence(s): one label per sequence needs at least 3 sequences to split (training, validation, "
            "test); give more sequences (--id) or a label per reading (--task tag)"
        )
    parts: tuple[list, list, list] = ([], [], [])
    gaps = []
    for i, (_, _, length) in enumerate(whole):
        a, b = int(length * 0.6), int(length * 0.8)
        if a < 4 * gap and length - 2 * gap < 3 * 16:
            raise DataError(
                f"sequence {ids[i]!r} has {length} readings: too few to split by time into training, "
                f"validation and test with a gap of {gap}"
            )
        g = min(gap, max(0, (b - a) // 4))  # a short recording keeps most of its validation and test parts
        gaps.append(g)
        parts[0].append((i, 0, a))
        parts[1].append((i, a + g, b))
        parts[2].append((i, b + g, length))
    how = (
        f"by time within each of the {n} sequence(s): the first 60% of readings train, the next 20% validate, "
        f"the last 20% test, with a gap of {min(gaps)}"
        + (f"-{max(gaps)}" if max(gaps) != min(gaps) else "")
        + " readings before each of the later parts"
    )
    return Split(how, *parts, by="time")


def window_starts(n: int, window: int) -> list[int]:
    """Where the training windows of a part of ``n`` readings start: every ``window // 2`` readings, and one
    ending at the part's end; a part no longer than the window is one window."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, max(1, window // 2)))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts
