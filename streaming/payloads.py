"""Payload parsing: bytes from a sensor topic → readings, or a PayloadError whose reason goes to errors/<device>.

Accepted forms (F = the model's number of features):
- JSON object `{"values": [f1, ..., fF], "t": <optional timestamp>}`;
- JSON array of F numbers `[f1, ..., fF]`;
- SenML (RFC 8428) JSON pack: an array of records. Base fields (bn, bt, bv) are resolved; records that share
  a resolved time form one reading, in order of first appearance. Values are ordered by `senml_names` when
  configured (matched against the record's `n` or its full name `bn + n`), else by their order in the pack.

A payload is accepted or refused whole: a SenML pack with one bad record is refused with that record named,
so a reading is never built from part of a measurement.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def _is_number(v: object) -> bool:
    # bool is an int subclass in Python but never a sensor value.
    return type(v) is float or type(v) is int


def check_values(values: object, n_features: int) -> list[float]:
    """Validate one reading's values: a list of exactly F finite numbers within float32 range."""
    if type(values) is not list:
        raise PayloadError("values not a list", f"got {type(values).__name__}")
    if len(values) != n_features:
        raise PayloadError("wrong number of values", f"expected {n_features}, got {len(values)}")
    for v in values:
        if not _is_number(v):
            raise PayloadError("non-numeric value", f"{v!r:.40}")
    total = sum(values)
    # One sum answers "all finite and in range" for nearly every reading; only suspicious ones are scanned.
    if not (-FLOAT32_MAX < total < FLOAT32_MAX):
        for v in values:
            if not math.isfinite(v):
                raise PayloadError("non-finite value", repr(v))
            if abs(v) > FLOAT32_MAX:
                raise PayloadError("value out of float32 range", repr(v))
    return values


def _check_time(t: object) -> float | None:
    if t is None:
        return None
    if not _is_number(t) or not math.isfinite(t):
        raise PayloadError("bad timestamp", f"t must be a finite number, got {t!r:.40}")
    return float(t)


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
            base_time = _check_time(rec["bt"]) or 0.0
        if "bv" in rec:
            if not _is_number(rec["bv"]):
                raise PayloadError("bad SenML record", f"record {i}: bv must be a number")
            base_value = rec["bv"]
        if "v" not in rec:
            if any(k in rec for k in ("vs", "vb", "vd")):
                raise PayloadError("non-numeric value", f"SenML record {i} has a string/boolean/data value")
            if "bv" in rec or "bn" in rec or "bt" in rec:
                continue  # a record that only sets base fields
            raise PayloadError("bad SenML record", f"record {i} has no value")
        value = rec["v"]
        if not _is_number(value):
            raise PayloadError("non-numeric value", f"SenML record {i}: v={value!r:.40}")
        name = rec.get("n", "")
        if type(name) is not str:
            raise PayloadError("bad SenML record", f"record {i}: n must be a string")
        t = base_time + (_check_time(rec.get("t")) or 0.0)
        groups.setdefault(t, []).append((name, base_name + name, base_value + value))
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
