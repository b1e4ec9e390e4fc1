"""Payload parsing: bytes from a sensor topic → readings, or a PayloadError whose reason goes to errors/<device>.

Accepted forms (F = the model's number of features):
- JSON object `{"values": [f1, ..., fF], "t": <optional timestamp>}`;
- JSON array of F numbers `[f1, ..., fF]`;
- SenML (RFC 8428) JSON pack: an array of records. Base fields (bn, bt, bv) are resolved; records that share
  a resolved time form one reading, in order of first appearance. Values are ordered by `senml_names` when
  configured (matched against the record's `n` or its full name `bn + n`), else by their order in the pack.

A payload is accepted or refused whole: a SenML pack with one bad record is refused with that record named,
so a reading is never built from part of a measurement.

`parse_many` parses a batch of payloads with the same result as `parse` on each, checking the common forms
(an array of F numbers, `{"values": [...], "t": ...}`) with a few array operations over the whole batch; every
payload those checks do not pass outright goes through `parse` itself, so the reason it is refused is the same.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

log = logging.getLogger("streaming.payloads")

DEFAULT_MAX_BYTES = 64 * 1024
FLOAT32_MAX = 3.4028234663852886e38


class PayloadError(ValueError):
    """A payload that cannot become a reading; `reason` is a short machine-friendly phrase, str() the detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Reading:
    values: list[float]
    t: float | None = None


# Timestamps are seconds (or milliseconds) since the epoch; anything beyond 1e16 is no clock we know, and
# bounding before converting keeps a 400-digit integer from reaching float() (OverflowError).
MAX_ABS_TIME = 1e16


def _is_number(v: object) -> bool:
    # bool is an int subclass in Python but never a sensor value.
    return type(v) is float or type(v) is int


def _number(v: object, limit: float, too_big: str, what: str) -> float:
    """``v`` as a float if it is a finite JSON number with |v| <= limit; else the PayloadError that says why.

    Each value is checked on its own: a sum or any other shortcut can be fooled (``[1e300, -1e300]``)."""
    if not _is_number(v):
        raise PayloadError("non-numeric value", f"{what}={v!r:.40}")
    if type(v) is float and not math.isfinite(v):  # json.loads turns NaN, Infinity and 1e999 into these
        raise PayloadError("non-finite value", f"{what}={v!r}")
    if abs(v) > limit:  # exact for ints of any size: no conversion happens before this test
        shown = repr(v) if type(v) is float else f"an integer of {len(str(abs(v)))} digits"
        raise PayloadError(too_big, f"{what}={shown:.60}")
    return float(v)


def check_values(values: object, n_features: int) -> list[float]:
    """Validate one reading's values: a list of exactly F finite numbers within float32 range."""
    if type(values) is not list:
        raise PayloadError("values not a list", f"got {type(values).__name__}")
    if len(values) != n_features:
        raise PayloadError("wrong number of values", f"expected {n_features}, got {len(values)}")
    return [
        _number(v, FLOAT32_MAX, "value out of float32 range", f"values[{i}]") for i, v in enumerate(values)
    ]


def _check_time(t: object, what: str = "t") -> float | None:
    if t is None:
        return None
    try:
        return _number(t, MAX_ABS_TIME, "bad timestamp", what)
    except PayloadError as err:
        raise PayloadError(
            "bad timestamp", f"{what} must be a finite number of seconds: {err.detail}"
        ) from None


def parse(
    payload: bytes,
    n_features: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    senml_names: Sequence[str] | None = None,
) -> list[Reading]:
    """Parse one MQTT payload into its readings (one, or several for a SenML pack spanning several times)."""
    if len(payload) > max_bytes:
        raise PayloadError("payload too large", f"{len(payload)} bytes > {max_bytes}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise PayloadError("not JSON", str(err)[:80]) from None
    except RecursionError:
        raise PayloadError("not JSON", "nested too deeply") from None
    if type(obj) is dict:
        if "values" not in obj:
            raise PayloadError("missing values", 'expected {"values": [...]} or a SenML array')
        return [Reading(check_values(obj["values"], n_features), _check_time(obj.get("t")))]
    if type(obj) is list:
        if obj and type(obj[0]) is dict:
            return parse_senml(obj, n_features, senml_names)
        return [Reading(check_values(obj, n_features))]
    raise PayloadError("unsupported payload", f"JSON {type(obj).__name__}")


def parse_senml(records: list, n_features: int, names: Sequence[str] | None = None) -> list[Reading]:
    """Resolve a SenML pack (RFC 8428 §4.6) and group its records by time into readings."""
    base_name, base_time, base_value = "", 0.0, 0.0
    groups: dict[float, list[tuple[str, str, float]]] = {}
    for i, rec in enumerate(records):
        if type(rec) is not dict:
            raise PayloadError("bad SenML record", f"record {i} is not an object")
        if "bn" in rec:
            if type(rec["bn"]) is not str:
                raise PayloadError("bad SenML record", f"record {i}: bn must be a string")
            base_name = rec["bn"]
        if "bt" in rec:
            base_time = _check_time(rec["bt"], f"record {i} bt") or 0.0
        if "bv" in rec:
            if not _is_number(rec["bv"]):
                raise PayloadError("bad SenML record", f"record {i}: bv must be a number")
            base_value = _number(rec["bv"], FLOAT32_MAX, "value out of float32 range", f"record {i} bv")
        if "v" not in rec:
            if any(k in rec for k in ("vs", "vb", "vd")):
                raise PayloadError("non-numeric value", f"SenML record {i} has a string/boolean/data value")
            if "bv" in rec or "bn" in rec or "bt" in rec:
                continue  # a record that only sets base fields
            raise PayloadError("bad SenML record", f"record {i} has no value")
        value = _number(rec["v"], FLOAT32_MAX, "value out of float32 range", f"SenML record {i} v")
        name = rec.get("n", "")
        if type(name) is not str:
            raise PayloadError("bad SenML record", f"record {i}: n must be a string")
        if not base_name + name:
            raise PayloadError("bad SenML record", f"record {i} has no name (bn + n is empty)")
        t = base_time + (_check_time(rec.get("t"), f"record {i} t") or 0.0)
        group = groups.setdefault(t, [])
        # One measurement per name and time: six copies of "acc_x" are not six features.
        if any(full == base_name + name for _, full, _ in group):
            raise PayloadError("bad SenML record", f"record {i}: {base_name + name!r} repeated at t={t}")
        group.append((name, base_name + name, base_value + value))
    if not groups:
        raise PayloadError("missing values", "SenML pack has no records with a value")
    readings = []
    for t, recs in groups.items():
        if names:
            by_name: dict[str, float] = {}
            for short, full, v in recs:
                by_name[short] = v
                by_name[full] = v
            missing = [n for n in names if n not in by_name]
            if missing:
                raise PayloadError("wrong number of values", f"SenML reading at t={t} lacks {missing[:3]}")
            if len(recs) != len(names):
                raise PayloadError(
                    "wrong number of values", f"expected {len(names)} records, got {len(recs)}"
                )
            values = [by_name[n] for n in names]
        else:
            values = [v for _, _, v in recs]
        readings.append(Reading(check_values(values, n_features), t if t != 0.0 else None))
    return readings


_NUMBER_TYPES = {float, int}
# What `json.loads` decodes with, minus its encoding detection: a batch of UTF-8 payloads gets the same values.
# Anything else (a BOM, UTF-16 or UTF-32, which `json.loads` accepts from bytes) fails here and goes to `parse`.
_DECODER = json.JSONDecoder()


def decode_utf8_json(payload: bytes) -> object:
    """`json.loads` of a UTF-8 payload, without its encoding detection; raises for anything else (a BOM, UTF-16,
    UTF-32, invalid UTF-8), which `parse` then judges."""
    return _DECODER.decode(payload.decode())


@dataclass
class ParsedBatch:
    """The readings of a batch of payloads, in payload order (a SenML pack's readings in its order).

    Row r of `values` is reading r; `source[r]` is the index of its payload, `part[r]` its place in the
    payload (-1 when the payload held one reading) and `t[r]` its own timestamp. `errors` maps the index of
    each refused payload to the PayloadError `parse` raises for it.
    """

    values: np.ndarray  # [R, F] float64
    source: list[int] = field(default_factory=list)
    part: list[int] = field(default_factory=list)
    t: list[float | None] = field(default_factory=list)
    errors: dict[int, PayloadError] = field(default_factory=dict)


def parse_many(
    payloads: Sequence[bytes],
    n_features: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    senml_names: Sequence[str] | None = None,
) -> ParsedBatch:
    """`parse` over a batch: the same readings and the same refusals, at a fraction of the cost per payload.

    The fast path only accepts what `parse` would accept with certainty: F values that are all JSON numbers
    (bool and str excluded by exact type), each strictly inside float32 range (which also refuses NaN and
    infinity), and a timestamp `_check_time` accepts. Anything else, including a value exactly at the float32
    limit (an integer just above it rounds onto it as a float), goes to `parse` for the exact verdict.
    Never raises: an unexpected failure on one payload is that payload's PayloadError("internal error")."""
    try:  # the common batch: every payload is UTF-8 JSON (the decoder `json.loads` ends in, called directly)
        if max(map(len, payloads), default=0) > max_bytes:
            raise ValueError("a payload too large")
        decode = _DECODER.decode  # `decode_utf8_json`, inlined: a call per payload costs more than it saves
        decoded: list | None = [decode(payload.decode()) for payload in payloads]
    except Exception:  # noqa: BLE001 - not JSON, too deep, too large, another encoding: `parse` says why
        decoded = None
    if decoded is not None and (plain := _plain_arrays(decoded, n_features, payloads)) is not None:
        n = len(decoded)
        return ParsedBatch(plain, list(range(n)), [-1] * n, [None] * n)
    rows: list[list] = []
    row_src: list[int] = []
    row_t: list[float | None] = []
    slow: list[int] = []
    for i, payload in enumerate(payloads):
        if decoded is not None:
            obj = decoded[i]
        elif len(payload) > max_bytes:
            slow.append(i)
            continue
        else:
            try:
                obj = json.loads(payload)
            except Exception:  # noqa: BLE001 - not JSON, too deep: `parse` says which
                slow.append(i)
                continue
        t = None
        if type(obj) is dict:
            values = obj.get("values")
            if "t" in obj:
                try:
                    t = _check_time(obj["t"])
                except PayloadError:
                    slow.append(i)  # `parse` checks the values first: let it pick the reason
                    continue
        else:
            values = obj
        if type(values) is not list or len(values) != n_features or (values and type(values[0]) is dict):
            slow.append(i)
            continue
        rows.append(values)
        row_src.append(i)
        row_t.append(t)
    good = _vetted_rows(rows)
    fast = [r for r, ok in enumerate(good) if ok]
    slow.extend(row_src[r] for r in range(len(rows)) if not good[r])
    values = np.array([rows[r] for r in fast], dtype=np.float64).reshape(len(fast), n_features)
    source = [row_src[r] for r in fast]
    part = [-1] * len(fast)
    times = [row_t[r] for r in fast]
    errors: dict[int, PayloadError] = {}
    extra: list[list[float]] = []
    for i in sorted(slow):
        try:
            readings = parse(payloads[i], n_features, max_bytes, senml_names)
        except PayloadError as err:
            errors[i] = err
            continue
        except Exception as err:  # noqa: BLE001 - a bug here must cost one payload, not the batch
            log.exception("unexpected failure parsing payload %d of a batch", i)
            errors[i] = PayloadError("internal error", type(err).__name__)
            continue
        for k, reading in enumerate(readings):
            extra.append(reading.values)
            source.append(i)
            part.append(k if len(readings) > 1 else -1)
            times.append(reading.t)
    if extra:  # slow-path readings go back to their payloads' places: a device's readings stay in order
        values = np.concatenate([values, np.array(extra, dtype=np.float64)])
        order = np.argsort(np.array(source), kind="stable").tolist()
        values = values[order]
        source = [source[r] for r in order]
        part = [part[r] for r in order]
        times = [times[r] for r in order]
    return ParsedBatch(values, source, part, times, errors)


# The bytes of a payload that holds nothing but JSON numbers in arrays: no string, object, true, false, null, NaN
# or Infinity can be written with them, so such a batch's decoded values need no type check.
_NUMERIC_JSON = b"0123456789+-.eE[], \t\r\n"


def _plain_arrays(decoded: list, n_features: int, payloads: Sequence[bytes]) -> np.ndarray | None:
    """The values [n, F] of a batch whose payloads are all bare arrays of F JSON numbers strictly inside
    float32 range (what devices send); None for any other batch, whose payloads are then looked at one by one."""
    if not decoded:
        return None
    if b"".join(payloads).translate(None, _NUMERIC_JSON):  # more than numbers in arrays: check the types
        if set(map(type, decoded)) != {list}:
            return None
        if not set(map(type, chain.from_iterable(decoded))) <= _NUMBER_TYPES:
            return None
    try:  # a bare number has no len(); a nested list is no float; an integer beyond float64 overflows
        if set(map(len, decoded)) != {n_features}:
            return None
        flat = np.fromiter(chain.from_iterable(decoded), np.float64, count=len(decoded) * n_features)
    except (TypeError, ValueError, OverflowError):
        return None
    values = flat.reshape(len(decoded), n_features)
    if not (np.abs(values) < FLOAT32_MAX).all():
        return None
    return values


def _vetted_rows(rows: list[list]) -> list[bool]:
    """For each row of values: True when `check_values` would certainly accept it as it stands."""
    if not rows:
        return []
    if set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        numeric = [True] * len(rows)
    else:
        numeric = [set(map(type, row)) <= _NUMBER_TYPES for row in rows]
    good = list(numeric)
    candidates = [r for r, ok in enumerate(numeric) if ok]
    if not candidates:
        return good
    try:
        arr = np.array([rows[r] for r in candidates], dtype=np.float64)
    except OverflowError:  # an integer beyond float64: find it row by row
        arr = np.full((len(candidates), len(rows[candidates[0]])), np.inf)
        for k, r in enumerate(candidates):
            try:
                arr[k] = rows[r]
            except OverflowError:
                pass
    # Strictly inside: NaN compares False, infinity and anything at or past the limit go to `parse`.
    inside = (np.abs(arr) < FLOAT32_MAX).all(axis=1).tolist()
    for k, r in enumerate(candidates):
        good[r] = inside[k]
    return good
