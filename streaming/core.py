"""The transport-free part of serving: which device ids are taken, which devices are admitted, which readings are
stale, and stepping a batch of readings in waves with the finite guard — one copy, used by the MQTT service
(`streaming.service`) and the JetStream worker (`streaming.worker`).

A transport hands a batch of messages — each a device id and a payload — to `step_payloads`: the payloads are
parsed in one pass (`streaming.payloads.parse_many`) and their readings go through `step_readings` (admission,
stale time stamps, waves, the finite guard, the commit). It gets back one outcome per reading (a committed
prediction or a refusal with its reason) and publishes them its own way: predictions through
`PredictionEncoder`, refusals through `ErrorAnswers`. Refusals carry the same reasons and details in both
transports, so an error message reads alike wherever it came from.

    policy = DevicePolicy(max_devices=10_000, ttl_s=3600, max_new_per_s=1000)
    table = policy.table(engine)
    got = step_payloads(engine, table, ["a", "b", "a"], [b"[1, 2, 3]", ...], now=time.time())
    got.batch.errors, got.done.outputs[got.done.ok], got.done.steps[got.done.ok], got.done.refusals
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming.logs import LogBudget
from streaming.payloads import DEFAULT_MAX_BYTES, ParsedBatch, parse_many
from streaming.state import FULL, RATE_LIMITED, StateTable

REJECTED_DEVICE = "_rejected"  # the error topic's device level for a message whose own id is refused


def refuse_device(device: str, max_bytes: int) -> str | None:
    """Why a device id is refused, or None: longer than `max_bytes` in UTF-8, not valid UTF-8 (a transport that
    kept undecodable bytes as lone surrogates), empty, or starting with '_' (levels the service owns:
    predictions/_batch/…, errors/_rejected)."""
    try:
        size = len(device.encode())
    except UnicodeEncodeError:
        return "device id is not valid UTF-8"
    if size > max_bytes:
        return f"device id too long: {size} bytes > {max_bytes}"
    if not device or device.startswith("_"):
        return f"reserved device id {device[:40]!r}: ids may not be empty or start with '_'"
    return None


@dataclass
class DevicePolicy:
    """How many devices a process (or a partition) holds and how new ones get in, in both transports.

    Args:
        max_devices: device states held at once.
        ttl_s: idle seconds after which a device is forgotten (None: never).
        max_new_per_s: admission cap on churn — newcomers that would evict recently seen devices (None: no
            cap). While the table has room every new device is admitted.
        max_device_id_bytes: longer ids are refused (they cost their length in RAM and every checkpoint).
    """

    max_devices: int = 100_000
    ttl_s: float | None = 3600.0
    max_new_per_s: float | None = 1000.0
    max_device_id_bytes: int = 128

    def table(self, engine: Any) -> StateTable:
        """An empty state table for `engine` under this policy."""
        return StateTable(
            engine.state_size,
            self.max_devices,
            self.ttl_s,
            dtype=getattr(engine, "dtype", np.float32),
            max_new_per_s=self.max_new_per_s,
        )

    def refuse(self, device: str) -> str | None:
        return refuse_device(device, self.max_device_id_bytes)


def wave_index(slots: np.ndarray) -> np.ndarray:
    """For each reading of a batch (its device's slot, in arrival order): how many readings of the same device
    come before it in the batch, i.e. the wave that steps it. A wave holds each device at most once."""
    n = len(slots)
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    wave = np.empty(n, dtype=np.int64)
    wave[order] = np.arange(n) - run_start
    return wave


@dataclass
class Stepped:
    """The outcome of `step_readings`, one entry per input row.

    Attributes:
        ok: the row was stepped and its state committed; `outputs[i]` and `steps[i]` (the step index it was
            stepped at, 0 for a device's first reading) are its prediction.
        outputs: [n, K] float32 (zeros where not ok).
        steps: [n] int64.
        refusals: (row, reason, detail) for every row that was not ok, in row order.
    """

    ok: np.ndarray
    outputs: np.ndarray
    steps: np.ndarray
    refusals: list[tuple[int, str, str]] = field(default_factory=list)


def admit(
    table: StateTable, devices: Sequence[str], seen: float | Sequence[float]
) -> tuple[np.ndarray, list]:
    """Each row's slot (marking its device seen at `seen`, one time or one per row), or -1 with a refusal:
    'device limit reached' (full of devices seen at this instant) or 'new device rate limit' (churn over the
    cap). Returns (slots, refusals)."""
    per_row = not isinstance(seen, (int, float))
    held = _touch_held(table, devices, seen, per_row)
    if held is not None:
        return held, []
    slot = table.slot
    slots = np.fromiter(
        map(slot, devices, seen) if per_row else (slot(d, seen) for d in devices),  # type: ignore[arg-type]
        dtype=np.int64,
        count=len(devices),
    )
    refusals = []
    if len(slots) and slots.min() < 0:
        for i in np.flatnonzero(slots < 0).tolist():
            if slots[i] == FULL:
                refusals.append((i, "device limit reached", f"max_devices={table.max_devices}"))
            elif slots[i] == RATE_LIMITED:
                refusals.append((i, "new device rate limit", f"max_new_devices_per_s={table.max_new_per_s}"))
        slots[slots < 0] = -1
    return slots, refusals


def _touch_held(
    table: StateTable, devices: Sequence[str], seen: float | Sequence[float], per_row: bool
) -> np.ndarray | None:
    """`admit` in a few vector passes for the common batch — every device already held, none idle past its TTL:
    the slots, each marked seen (the last row of a device wins, as row by row). None for any other batch
    (a newcomer, an expiry), which `table.slot` then takes row by row; nothing is changed then."""
    found = table.held(devices)
    if not found or None in found:
        return None
    slots = np.array(found, dtype=np.int64)
    if not per_row:
        if table.ttl_s is not None and (table.last_seen[slots] < seen - table.ttl_s).any():
            return None
        table.last_seen[slots] = seen
        table.dirty[slots] = True
        return slots
    times = np.asarray(seen, dtype=np.float64)
    order = np.argsort(slots, kind="stable")
    ordered, at = slots[order], times[order]
    later = ordered[1:] == ordered[:-1]  # a device's second and later rows of the batch, in arrival order
    if table.ttl_s is not None:
        # When each row's device was seen before it: in the table, or at its previous row of the batch.
        before = table.last_seen[ordered]
        before[1:][later] = at[:-1][later]
        if (before < at - table.ttl_s).any():
            return None
    last = np.r_[~later, True]  # each device's last row
    table.last_seen[ordered[last]] = at[last]
    table.dirty[slots] = True
    return slots


def stale_rows(table: StateTable, slots: np.ndarray, t: np.ndarray) -> list[int]:
    """Rows whose own time stamp `t` (NaN: none) is not after the device's previous one — in the table or
    earlier in this batch: a duplicate (a QoS 1 redelivery, a publisher's retry) or a late reading would
    otherwise advance the state a second time or out of order."""
    rows = np.flatnonzero((slots >= 0) & ~np.isnan(t))
    if not len(rows):
        return []
    stale, last = [], {}
    table_t = table.last_t
    for i in rows.tolist():
        s = int(slots[i])
        previous = last.get(s, table_t[s])
        if previous == previous and t[i] <= previous:  # NaN: no reading with a time stamp yet
            stale.append(i)
            continue
        last[s] = t[i]
    return stale


def step_readings(
    engine: Any,
    table: StateTable,
    devices: Sequence[str],
    x: np.ndarray,
    t: np.ndarray | None,
    now: float,
    seen: float | Sequence[float] | None = None,
    step_timer: Callable[[float], None] | None = None,
) -> Stepped:
    """Admit, check time stamps, step in waves, guard, commit: one batch of readings, in arrival order.

    Args:
        engine: the step engine (`advance(x, state, steps) -> (outputs, new_state)`), any runtime.
        table: the devices' states (`DevicePolicy.table`).
        devices: each row's device id (already checked with `refuse_device`).
        x: [n, F] float32 values as the device sent them.
        t: [n] float64 each reading's own time stamp, NaN where it had none (None: no row has one).
        now: the time the states are committed at (the wall clock, or the stream's clock on a replay).
        seen: the time each device is marked seen at admission (default `now`).
        step_timer: called with the seconds of each engine call (a histogram's observe).

    Returns the outcome per row; a wave whose engine call raises is refused "internal error" as a whole (its
    states unchanged), the others go on.
    """
    import time

    n = len(devices)
    slots, refusals = admit(table, devices, now if seen is None else seen)
    no_t = t is None  # no row has a time stamp of its own
    t = np.full(n, np.nan) if no_t else np.asarray(t, dtype=np.float64)
    for i in stale_rows(table, slots, t):
        refusals.append((i, "stale timestamp", f"t={t[i]!r} is not after {float(table.last_t[slots[i]])!r}"))
        slots[i] = -1
    outputs = np.zeros((n, engine.n_outputs), dtype=np.float32)
    steps = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(slots >= 0)
    if len(rows):
        waves = wave_index(slots[rows])
        for w in range(int(waves.max()) + 1):
            idx = rows[waves == w]
            s = slots[idx]
            before = table.steps[s]
            try:
                began = time.perf_counter()
                out, new_state = engine.advance(x[idx], table.state[s], before)
                if step_timer is not None:
                    step_timer(time.perf_counter() - began)
            except Exception as err:  # noqa: BLE001 - one failing wave must not cost the others their answers
                refusals += [(i, "internal error", type(err).__name__) for i in idx.tolist()]
                continue
            # A reading that would make the state or the output non-finite is refused, not committed: one such
            # reading would otherwise poison that device's state for good.
            finite = np.isfinite(new_state).all(axis=1) & np.isfinite(out).all(axis=1)
            if finite.all():  # the common wave: no masks
                good = idx
            else:
                refusals += [
                    (i, "non-finite result", "the reading drives the model out of range")
                    for i in idx[~finite].tolist()
                ]
                good, s, new_state, out, before = (
                    idx[finite],
                    s[finite],
                    new_state[finite],
                    out[finite],
                    before[finite],
                )
            table.commit(s, new_state, now, None if no_t else t[good])
            outputs[good] = out
            steps[good] = before
            ok[good] = True
    refusals.sort(key=lambda r: r[0])
    return Stepped(ok, outputs, steps, refusals)


@dataclass
class Answered:
    """The outcome of `step_payloads` for a batch of messages.

    Attributes:
        batch: their readings (`ParsedBatch`: `source[r]` is the message of reading r, `part[r]` its place in a
            SenML pack, `t[r]` its time stamp; `errors` the messages refused whole, by index).
        done: the outcome of each reading (`Stepped`, indexed like the readings).
    """

    batch: ParsedBatch
    done: Stepped


def step_payloads(
    engine: Any,
    table: StateTable,
    devices: Sequence[str],
    payloads: Sequence[bytes],
    now: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    senml_names: Sequence[str] | None = None,
    seen: float | Sequence[float] | None = None,
    step_timer: Callable[[float], None] | None = None,
) -> Answered:
    """Parse a batch of messages in one pass and step their readings (`step_readings`), in arrival order.

    Args:
        devices: each message's device id (already checked with `refuse_device`).
        payloads: each message's payload.
        now, step_timer: as for `step_readings`.
        seen: the time each device is marked seen at, one for all or one per message (default `now`).
        max_bytes, senml_names: as for `streaming.payloads.parse`.
    """
    batch = parse_many(payloads, engine.n_features, max_bytes, senml_names)
    source = batch.source
    whole = len(source) == len(payloads) and not batch.errors  # one reading a message, none refused
    if seen is not None and not isinstance(seen, (int, float)) and not whole:
        seen = [seen[j] for j in source]
    times = batch.t
    done = step_readings(
        engine,
        table,
        devices if whole else [devices[j] for j in source],
        batch.values.astype(np.float32),  # what the device sent, as the float32 Keras reads
        None
        if times.count(None) == len(times)
        else np.array([np.nan if t is None else t for t in times], dtype=np.float64),
        now,
        seen,
        step_timer,
    )
    return Answered(batch, done)


class PredictionEncoder:
    """Prediction messages in the one schema both transports publish, byte for byte what `json.dumps` makes of
    {["seq"], "step", "outputs", ["label", "probabilities"], ["reading"], ["t"], ["partial"]}, from one
    %-template per output width: a dict and the generic encoder per reading cost more than the step itself.
    Floats go through `%r`, which is `float.__repr__`, as in `json.dumps`. Transport fields (the JetStream
    worker's "seq", its stream sequence) are additions in front; the rest reads alike from both.

    Args:
        n_outputs: K, the width of one output row.
        class_names: the label of each output (None: no "label" or "probabilities").
        window: W of a window-mode model: a prediction made on fewer than W readings (step + 1 < W) is marked
            "partial" (0: a step-mode model, never partial).
    """

    def __init__(self, n_outputs: int, class_names: Sequence[str] | None = None, window: int = 0):
        self.window = window
        self.body = '"step": %d, "outputs": [' + ", ".join(["%r"] * n_outputs) + "]"
        self.labels = [', "label": ' + json.dumps(name) for name in class_names] if class_names else None
        self.probabilities = (
            ', "probabilities": {' + ", ".join(json.dumps(name) + ": %r" for name in class_names) + "}"
            if class_names
            else ""
        )

    def encode(
        self,
        seqs: Sequence[int] | None,
        steps: Sequence[int],
        outputs: np.ndarray,
        parts: Sequence[int] | None = None,
        times: Sequence[float | None] | None = None,
        partial: Sequence[bool] | None = None,
    ) -> list[bytes]:
        """One message per row of `outputs` (finite, [n, K]), rounded to 8 decimals (well inside 1e-5, half
        the JSON). `seqs` None: no "seq"; `parts[i]` >= 0 adds "reading" (the i-th reading of a SenML pack); a
        `times[i]` that is not None adds "t"; `partial[i]` adds "partial": true (a window not yet full; by
        default, for a window-mode encoder, from `steps`)."""
        if partial is None and self.window:
            partial = [step + 1 < self.window for step in steps]
        rows = np.round(outputs.astype(np.float64), 8).tolist()
        labels = np.argmax(outputs, axis=1).tolist() if self.labels else None
        body, names, probabilities = self.body, self.labels, self.probabilities
        out = []
        for i, row in enumerate(rows):
            text = "{" if seqs is None else f'{{"seq": {seqs[i]}, '
            text += body % (steps[i], *row)
            if names is not None:
                text += names[labels[i]] + probabilities % tuple(row)  # type: ignore[index]
            if parts is not None and parts[i] >= 0:
                text += f', "reading": {parts[i]}'
            if times is not None and times[i] is not None:
                text += f', "t": {times[i]!r}'
            if partial is not None and partial[i]:
                text += ', "partial": true'
            out.append((text + "}").encode())
        return out


@dataclass
class ModelStats:
    """What one served model has counted (summed over its bindings or partitions)."""

    mode: str = "step"
    readings: int = 0
    predictions: int = 0
    resets: int = 0
    devices: int = 0
    evicted_idle: int = 0
    evicted_lru: int = 0

    def add_table(self, table: StateTable) -> None:
        """Count a state table's devices and evictions in (its counters copied in one step: a scrape reads
        them from another thread)."""
        counts = dict(table.counters)
        self.devices += len(table)
        self.evicted_idle += counts.get("evicted_idle", 0)
        self.evicted_lru += counts.get("evicted_lru", 0)


@dataclass
class Stats:
    """A serving process's counts at one moment, the same shape from both transports: what the metrics
    collector (`streaming.metrics`), the status message and the tests read — never the process's private parts.

    Attributes:
        received: messages received on the subscribed topics or partitions (any payload).
        counters: the process's counters (readings, predictions, errors, …) plus its state tables' own
            (evicted_idle, evicted_lru, refused_full, refused_rate) and their sum "evicted".
        errors: answers on the error topic by (model, reason); the model is "" where none was reached.
        models: by model name.
        connected: connected to the broker / server now.
        outgoing: messages the client still holds for the broker.
        snapshot_age_s: seconds since the last snapshot or checkpoint (None: none are written).
    """

    received: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[tuple[str, str], int] = field(default_factory=dict)
    models: dict[str, ModelStats] = field(default_factory=dict)
    connected: bool = False
    outgoing: int = 0
    snapshot_age_s: float | None = None


def table_counters(counters: dict[str, int], tables: Sequence[StateTable]) -> dict[str, int]:
    """`counters` plus every table's own (copied in one step each: a scrape reads them from another thread)."""
    from collections import Counter

    merged = Counter(dict(counters))
    for table in tables:
        merged.update(dict(table.counters))
    merged["evicted"] = merged["evicted_idle"] + merged["evicted_lru"]
    return dict(merged)


def error_body(reason: str, detail: str, source: str, **extra: Any) -> str:
    """One refused reading's error message, the same schema in both transports: {"reason", "detail", "topic"}
    (the topic or subject it came on), plus what a transport adds (the JetStream worker's "seq")."""
    body = {"reason": reason, "detail": detail[:200], "topic": source[:200], **extra}
    return json.dumps(body)


class Answering:
    """What the two transports' answerers (`streaming.routing.Routing` for MQTT, `streaming.answers.Answers` for
    JetStream) share above their `refusals` (`ErrorAnswers`): the live page's feed, held once by the error
    answers, so a batch's predictions and its errors reach the same feed."""

    refusals: ErrorAnswers

    @property
    def observer(self) -> Any:
        """The live page's feed (`streaming.live.LiveFeed`, `--ui`), told of every answer; None: off."""
        return self.refusals.observer

    @observer.setter
    def observer(self, feed: Any) -> None:
        self.refusals.observer = feed


class ErrorAnswers:
    """Refused messages answered alike in both transports: counted by (model, reason), told to the live page,
    published as `error_body` where `destination(device)` says, and logged within the log budget (one kind
    per reason: a flood of one kind cannot hide the first lines of another).

    Args:
        counters: the process's counters ("errors" counts every answer).
        log_budget: the process's log budget.
        logger: where the lines go.
        publish: publish(destination, body) on the transport.
        destination: the error topic or subject of a device.
    """

    def __init__(
        self,
        counters: Any,
        log_budget: LogBudget,
        logger: logging.Logger,
        publish: Callable[[str, str], None],
        destination: Callable[[str], str],
    ):
        self.counters, self.log_budget, self.log = counters, log_budget, logger
        self.publish, self.destination = publish, destination
        self.errors: Counter[tuple[str, str]] = (
            Counter()
        )  # by (model, reason); model "" where none was reached
        self.observer: Any = None  # the live page's feed (streaming.live.LiveFeed), told of every error

    def answer(
        self,
        device: str,
        source: str,
        reason: str,
        detail: str,
        model: str = "",
        logged: bool = False,
        **extra: Any,
    ) -> None:
        """Answer one refused message from `device` that came on `source` (`logged`: a line was written
        already); `extra` fields (the worker's "seq") go into the error body and the log line's fields."""
        self.counters["errors"] += 1
        self.errors[(model, reason)] += 1
        if self.observer is not None:  # the live page counts errors per device
            self.observer.error(device, reason, model)
        self.publish(self.destination(device), error_body(reason, detail, source, **extra))
        if not logged and self.log_budget.allow(reason):
            # %r: a device id or topic comes from outside and may hold a newline; repr keeps it on one line.
            self.log.warning(
                "refused a message from device %r (%s): %s: %s",
                device[:200],
                model or "no model",
                reason,
                detail[:200],
                extra={
                    "device": device[:200],
                    "model": model,
                    "reason": reason,
                    "topic": source[:200],
                    **extra,
                },
            )

    def reasons(self) -> Counter[str]:
        """Answers by reason, whatever the model."""
        out: Counter[str] = Counter()
        for (_, reason), n in list(self.errors.items()):
            out[reason] += n
        return out
