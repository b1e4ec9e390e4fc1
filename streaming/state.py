"""The per-model state table: device id → slot in one `[capacity, S]` array, plus step counts and last-seen times.

Keeping every device's state in one contiguous array lets a micro-batch gather its devices' states with one
fancy-index, step them together, and scatter them back. Devices are added on their first reading (zero state)
and removed by a reset, after `ttl_s` idle, or — when the table is full — least recently seen first, so a flood
of made-up device ids can churn the table but never lock real devices out. A cap on new devices per second
bounds that churn: it applies only to newcomers that would evict a recently seen device, so a fleet that starts
all at once is admitted while the table has room. After a mass eviction the arrays shrink again (`compact`).

Snapshots are written atomically (temp file, fsync, rename) so a crash never leaves a half-written file, carry a
sha256 tag over their content, and are validated member by member before anything is allocated or restored.

Example:
    >>> table = StateTable(state_size=64, max_devices=10_000, ttl_s=3600)
    >>> slots = np.array([table.slot("dev1", now), table.slot("dev2", now)])
    >>> y, new = step_model.step(x, table.state[slots])
    >>> table.commit(slots, new, now)
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = np.ndarray

FULL = -1  # slot(): the table is full and no device could be evicted to make room
RATE_LIMITED = -2  # slot(): too many new devices this second

SNAPSHOT_FORMAT = "rnnzoo-snapshot/2"
TABLE_FIELDS = ("devices", "state", "steps", "last_seen", "last_t")


class SnapshotError(ValueError):
    """A snapshot that cannot be trusted: unreadable, tampered with, or holding impossible values."""


class StateTable:
    """Device → slot map over preallocated state arrays that grow by doubling up to `max_devices`.

    Args:
        state_size: S, the width of one device's flattened state.
        max_devices: the most devices held at once; beyond it the least recently seen device makes room.
        ttl_s: idle seconds after which `evict_idle` removes a device (None: never).
        dtype: state dtype.
        initial_capacity: slots allocated up front (and the size `compact` never shrinks below).
        max_new_per_s: new devices per second admitted in the place of recently seen ones, when the table is
            full (churn; None: no cap); the rest get RATE_LIMITED. While there is room, every device is admitted.
    """

    def __init__(
        self,
        state_size: int,
        max_devices: int = 100_000,
        ttl_s: float | None = None,
        dtype: Any = np.float32,
        initial_capacity: int = 1024,
        max_new_per_s: float | None = None,
    ):
        self.state_size = int(state_size)
        self.max_devices = int(max_devices)
        self.ttl_s = ttl_s
        self.dtype = np.dtype(dtype)
        self.initial_capacity = max(1, min(initial_capacity, self.max_devices))
        self.max_new_per_s = max_new_per_s
        # evicted_idle, evicted_lru, refused_full, refused_rate: exact, whoever triggered them.
        self.counters: Counter[str] = Counter()
        self._tokens = float(max_new_per_s or 0.0)
        self._tokens_at = 0.0
        self._allocate(self.initial_capacity)

    def _allocate(self, capacity: int) -> None:
        self.state = np.zeros((capacity, self.state_size), dtype=self.dtype)
        self.steps = np.zeros(capacity, dtype=np.int64)
        self.last_seen = np.zeros(capacity, dtype=np.float64)
        self.last_t = np.full(capacity, np.nan)  # the last accepted reading's own timestamp, NaN if none
        self.used = np.zeros(capacity, dtype=bool)  # mirrors _ids, so TTL and LRU scans are one vector op
        # Changed since `take_changes` (a checkpoint): slots touched or stepped, and ids removed.
        self.dirty = np.zeros(capacity, dtype=bool)
        self.removed: set[str] = set()
        self._ids: list[str | None] = [None] * capacity
        self._slot_of: dict[str, int] = {}
        # Free slots as a stack; popping from the end hands out low slots first, keeping the array dense.
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._churn = 0  # free slots made by evicting recently seen devices: each newcomer there pays a token

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, device: str) -> bool:
        return device in self._slot_of

    @property
    def capacity(self) -> int:
        return self.state.shape[0]

    def devices(self) -> list[str]:
        return list(self._slot_of)

    def _grow(self) -> bool:
        old = self.capacity
        new = min(old * 2, self.max_devices)
        if new <= old:
            return False
        extra = new - old
        self.state = np.concatenate([self.state, np.zeros((extra, self.state_size), dtype=self.dtype)])
        self.steps = np.concatenate([self.steps, np.zeros(extra, dtype=np.int64)])
        self.last_seen = np.concatenate([self.last_seen, np.zeros(extra, dtype=np.float64)])
        self.last_t = np.concatenate([self.last_t, np.full(extra, np.nan)])
        self.used = np.concatenate([self.used, np.zeros(extra, dtype=bool)])
        self.dirty = np.concatenate([self.dirty, np.zeros(extra, dtype=bool)])
        self._ids.extend([None] * extra)
        self._free.extend(range(new - 1, old - 1, -1))
        return True

    def _admit(self, now: float) -> bool:
        """Token bucket: up to max_new_per_s new devices a second, with a burst of one second's worth."""
        if self.max_new_per_s is None:
            return True
        rate = self.max_new_per_s
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def held(self, devices: Sequence[str]) -> list[int | None]:
        """Each device's slot, or None where the table does not hold it; nothing is marked seen."""
        return list(map(self._slot_of.get, devices))

    def slot(self, device: str, now: float) -> int:
        """The device's slot (marked seen at `now`), adding it with zero state if new; FULL or RATE_LIMITED
        when a new device cannot be admitted."""
        found = self._slot_of.get(device)
        if found is not None:
            if self.ttl_s is not None and self.last_seen[found] < now - self.ttl_s:
                # Idle past its TTL: it starts again from zero state, exactly as if a sweep (`evict_idle`) had
                # already forgotten it — so when the sweep runs changes nothing, and a replay is the same run.
                self.state[found] = 0
                self.steps[found] = 0
                self.last_t[found] = np.nan
                self.counters["evicted_idle"] += 1
            # Touching it now keeps a device of the batch being built from being evicted for a newcomer.
            self.last_seen[found] = now
            self.dirty[found] = True
            return found
        if self._churn or (not self._free and not self._grow() and not self.evict_idle(now)):
            # Full of devices seen within the TTL: this newcomer takes the place of a recently seen device
            # (churn). Only churn pays the admission cap, so a fleet that starts at once fills the room there is.
            if not self._admit(now):
                self.counters["refused_rate"] += 1
                return RATE_LIMITED
            if not self._churn:
                self._churn = self._evict_lru(now)
                if not self._churn:
                    self.counters["refused_full"] += 1
                    return FULL
            self._churn -= 1
        slot = self._free.pop()
        self._slot_of[device] = slot
        self._ids[slot] = device
        self.used[slot] = True
        self.state[slot] = 0
        self.steps[slot] = 0
        self.last_seen[slot] = now
        self.last_t[slot] = np.nan
        self.dirty[slot] = True
        return slot

    def commit(self, slots: Array, new_state: Array, now: float, t: Array | None = None) -> None:
        """Store the stepped state of `slots` (all distinct), count one more reading for each and remember
        each reading's own timestamp `t` (NaN where it had none)."""
        self.state[slots] = new_state
        self.steps[slots] += 1
        self.last_seen[slots] = now
        self.dirty[slots] = True
        if t is not None:
            has_t = ~np.isnan(t)
            self.last_t[slots[has_t]] = t[has_t]

    def remove(self, device: str) -> bool:
        """Forget a device (a reset): its next reading starts from zero state at step 0."""
        slot = self._slot_of.pop(device, None)
        if slot is None:
            return False
        self._ids[slot] = None
        self.used[slot] = False
        self.dirty[slot] = False
        self.removed.add(device)
        self._free.append(slot)
        return True

    def evict_idle(self, now: float) -> list[str]:
        """Remove devices idle for longer than ttl_s; return their ids."""
        if self.ttl_s is None or not self._slot_of:
            return []
        idle = np.nonzero(self.used & (self.last_seen < now - self.ttl_s))[0]
        evicted = [self._ids[s] for s in idle.tolist()]
        for device in evicted:
            self.remove(device)  # type: ignore[arg-type]
        self.counters["evicted_idle"] += len(evicted)
        return evicted  # type: ignore[return-value]

    def _evict_lru(self, now: float) -> int:
        """Make room in a full table: evict the least recently seen 1% (at least one) — never a device seen
        at `now`, i.e. one of the batch being stepped. Evicting a few at once keeps this O(1) amortised."""
        seen = np.where(self.used & (self.last_seen < now), self.last_seen, np.inf)
        k = min(max(1, self.capacity // 100), int(np.isfinite(seen).sum()))
        if k == 0:
            return 0
        oldest = np.argpartition(seen, k - 1)[:k]
        for s in oldest.tolist():
            self.remove(self._ids[s])  # type: ignore[arg-type]
        self.counters["evicted_lru"] += k
        return k

    def clear(self) -> None:
        """Forget every device and return to the initial size."""
        removed = self.removed | set(self._slot_of)
        self._allocate(self.initial_capacity)
        self.removed = removed

    # -- changes (checkpoints) ------------------------------------------------------------------------------

    def admission(self) -> dict[str, float]:
        """The admission cap's state: the token bucket (tokens, the time they were counted at) and the slots
        that churn freed — what a replay needs to admit and refuse exactly as the run it repeats."""
        return {"tokens": self._tokens, "tokens_at": self._tokens_at, "churn": self._churn}

    def set_admission(self, saved: dict[str, Any]) -> None:
        """Restore `admission()`; SnapshotError when it holds values no table could have. Saved under another
        cap or size (the flags changed between runs), the tokens and churn are cut to this table's."""
        try:
            tokens, at, churn = float(saved["tokens"]), float(saved["tokens_at"]), saved["churn"]
        except (KeyError, TypeError, ValueError):
            raise SnapshotError("checkpoint's admission state is unreadable") from None
        if (
            type(churn) is not int
            or churn < 0
            or tokens < 0
            or not (math.isfinite(tokens) and math.isfinite(at))
        ):
            raise SnapshotError("checkpoint's admission state is out of range")
        self._tokens = min(tokens, float(self.max_new_per_s or 0.0))
        self._tokens_at, self._churn = at, min(churn, self.max_devices)

    def rows(self, slots: Array | None = None) -> dict[str, Any]:
        """ids (a list, byte-exact) and the state, steps, last_seen and last_t rows of `slots` (all used
        slots when None)."""
        if slots is None:
            slots = np.flatnonzero(self.used)
        ids = self._ids
        return {
            "ids": [ids[s] for s in slots.tolist()],
            "state": self.state[slots],
            "steps": self.steps[slots],
            "last_seen": self.last_seen[slots],
            "last_t": self.last_t[slots],
        }

    def take_changes(self) -> tuple[dict[str, Any], list[str]]:
        """(rows of the devices changed since the last call, ids removed since then and not back), and start
        counting afresh: what a changelog checkpoint writes."""
        changed = self.rows(np.flatnonzero(self.dirty & self.used))
        removed = [d for d in self.removed if d not in self._slot_of]
        self.dirty[:] = False
        self.removed = set()
        return changed, removed

    def upsert(self, rows: dict[str, Any]) -> None:
        """Set these devices' rows as given (a checkpoint being replayed), adding the ones not held; no
        admission or eviction: SnapshotError when they do not fit in max_devices."""
        ids = rows["ids"]
        slots = np.empty(len(ids), dtype=np.int64)
        for i, device in enumerate(ids):
            slot = self._slot_of.get(device)
            if slot is None:
                if not self._free and not self._grow():
                    raise SnapshotError(f"checkpoint holds more than max_devices={self.max_devices} devices")
                slot = self._free.pop()
                self._slot_of[device] = slot
                self._ids[slot] = device
                self.used[slot] = True
            slots[i] = slot
        self.state[slots] = rows["state"]
        self.steps[slots] = rows["steps"]
        self.last_seen[slots] = rows["last_seen"]
        self.last_t[slots] = rows["last_t"]
        self.dirty[slots] = True

    def compact(self) -> bool:
        """Shrink the arrays (and the id map) when at most a quarter of the slots is used, e.g. after a mass
        eviction, so memory returns to what the live devices need. Slots change: call between batches."""
        n, capacity = len(self._slot_of), self.capacity
        target = max(self.initial_capacity, 1 << max(0, (2 * n - 1).bit_length()))
        if capacity <= self.initial_capacity or n > capacity // 4 or target >= capacity:
            return False
        arrays, changed = self.to_arrays(), set(self.rows(np.flatnonzero(self.dirty & self.used))["ids"])
        removed = self.removed
        self._allocate(target)
        self._fill(arrays)
        self.dirty[np.array([self._slot_of[d] for d in changed], dtype=np.int64)] = True
        self.removed = removed
        return True

    # -- snapshots -------------------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, Array]:
        """The used part of the table as plain arrays (no pickling needed to save or load them)."""
        devices = list(self._slot_of)
        slots = np.fromiter(self._slot_of.values(), dtype=np.int64, count=len(devices))
        return {
            "devices": np.array(devices, dtype=str) if devices else np.zeros(0, dtype="<U1"),
            "state": self.state[slots],
            "steps": self.steps[slots],
            "last_seen": self.last_seen[slots],
            "last_t": self.last_t[slots],
        }

    def load_arrays(self, arrays: dict[str, Array], max_id_bytes: int | None = None) -> None:
        """Replace the table's contents with a snapshot taken by `to_arrays`, after checking every array:
        shapes, dtypes, finite state, steps >= 0, distinct device ids. Raises SnapshotError."""
        check_table_arrays(arrays, self.state_size, self.max_devices, max_id_bytes)
        self._allocate(max(self.initial_capacity, len(arrays["devices"])))
        self._fill(arrays)

    def _fill(self, arrays: dict[str, Array]) -> None:
        devices = arrays["devices"].tolist()
        n = len(devices)
        self.state[:n] = arrays["state"]
        self.steps[:n] = arrays["steps"]
        self.last_seen[:n] = arrays["last_seen"]
        self.last_t[:n] = arrays["last_t"] if "last_t" in arrays else np.nan
        self.used[:n] = True
        self._ids[:n] = devices
        self._slot_of = {d: i for i, d in enumerate(devices)}
        self._free = list(range(self.capacity - 1, n - 1, -1))


def check_rows(
    rows: dict[str, Any], state_size: int, max_devices: int, max_id_bytes: int | None = None
) -> None:
    """Raise SnapshotError unless `rows` (ids as a list of str, as `StateTable.rows` gives) could have been
    written by a worker: shapes, finite state, steps >= 0, distinct ids within the bound."""
    ids = rows["ids"]
    n = len(ids)
    arrays = {
        "devices": np.zeros(n, dtype="<U1"),
        **{k: rows[k] for k in ("state", "steps", "last_seen", "last_t")},
    }
    _check_values(arrays, state_size, max_devices)
    if len(set(ids)) != n:
        raise SnapshotError("snapshot table rejected: a device id appears twice")
    if max_id_bytes is not None and any(
        len(d.encode("utf-8", "surrogateescape")) > max_id_bytes or not d for d in ids
    ):
        raise SnapshotError(
            f"snapshot table rejected: a device id is empty or longer than {max_id_bytes} bytes"
        )


def check_table_arrays(
    arrays: dict[str, Array], state_size: int, max_devices: int, max_id_bytes: int | None = None
) -> None:
    """Raise SnapshotError unless `arrays` is a table a service could have written."""
    _check_values(arrays, state_size, max_devices)
    ids = arrays["devices"].tolist()
    if len(set(ids)) != len(ids):
        raise SnapshotError("snapshot table rejected: a device id appears twice")
    if max_id_bytes is not None and any(len(d.encode()) > max_id_bytes or not d for d in ids):
        raise SnapshotError(
            f"snapshot table rejected: a device id is empty or longer than {max_id_bytes} bytes"
        )


def _check_values(arrays: dict[str, Array], state_size: int, max_devices: int) -> None:
    def bad(why: str) -> SnapshotError:
        return SnapshotError(f"snapshot table rejected: {why}")

    devices, state, steps = arrays["devices"], arrays["state"], arrays["steps"]
    last_seen = arrays["last_seen"]
    last_t = arrays.get("last_t", np.full(len(devices), np.nan))
    if devices.ndim != 1 or devices.dtype.kind != "U":
        raise bad(f"device ids must be a 1-D string array, got {devices.dtype} {devices.shape}")
    n = len(devices)
    if n > max_devices:
        raise bad(f"{n} devices, more than max_devices={max_devices}")
    if state.ndim != 2 or state.shape != (n, state_size) or state.dtype.kind != "f":
        raise bad(f"state must be float [{n}, {state_size}], got {state.dtype} {state.shape}")
    for name, value, kind in (("steps", steps, "i"), ("last_seen", last_seen, "f"), ("last_t", last_t, "f")):
        if value.shape != (n,) or value.dtype.kind != kind:
            raise bad(f"{name} must be a 1-D {kind} array of {n}, got {value.dtype} {value.shape}")
    if not np.isfinite(state).all():
        raise bad("state holds NaN or infinity")
    if (steps < 0).any():
        raise bad("negative step counts")
    if not np.isfinite(last_seen).all() or np.isinf(last_t).any():
        raise bad("non-finite times")


def _content_tag(arrays: dict[str, Array]) -> str:
    """sha256 over every member's name, dtype, shape and bytes, in name order: any edit changes it."""
    digest = hashlib.sha256(SNAPSHOT_FORMAT.encode())
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_snapshot(
    path: str | os.PathLike, tables: dict[str, StateTable], fingerprints: dict[str, str]
) -> None:
    """Write every table to one .npz, atomically: a reader sees the old file or the new one, never a mix."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    arrays: dict[str, Array] = {"keys": np.array(list(tables), dtype=str)}
    for i, (key, table) in enumerate(tables.items()):
        for name, value in table.to_arrays().items():
            arrays[f"b{i}.{name}"] = value
        arrays[f"b{i}.fingerprint"] = np.array(fingerprints.get(key, ""))
    arrays["format"] = np.array(SNAPSHOT_FORMAT)
    arrays["tag"] = np.array(_content_tag(arrays))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".snapshot-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # fsync the directory too, so the rename itself survives a power cut.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_members(path: str, max_bytes: int) -> None:
    """Before numpy allocates anything: the file is small enough, a zip of .npy members, and no member's
    header declares more data than the member holds (a crafted header could ask for terabytes)."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise SnapshotError(f"snapshot {path!r} is {size:,} bytes, over the {max_bytes:,}-byte limit")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > max_bytes:
                    raise SnapshotError(f"snapshot member {info.filename!r} is larger than the limit")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    if dtype.hasobject:
                        raise SnapshotError(f"snapshot member {info.filename!r} holds Python objects")
                    if int(np.prod(shape, dtype=object)) * dtype.itemsize > info.file_size:
                        raise SnapshotError(
                            f"snapshot member {info.filename!r} declares more data than it holds"
                        )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        if isinstance(err, SnapshotError):
            raise
        raise SnapshotError(f"snapshot {path!r} is unreadable: {err}") from None


def load_snapshot(
    path: str | os.PathLike, max_bytes: int = 1 << 31
) -> dict[str, tuple[str, dict[str, Array]]]:
    """Read a snapshot: binding key → (model fingerprint, table arrays). Raises SnapshotError (a ValueError)
    if it is unreadable, over `max_bytes`, of another format, or its content tag does not match."""
    path = os.fspath(path)
    _check_members(path, max_bytes)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, KeyError, ValueError, EOFError) as err:
        raise SnapshotError(f"snapshot {path!r} is unreadable: {err}") from None
    tag = arrays.pop("tag", None)
    if str(arrays.get("format", "")) != SNAPSHOT_FORMAT or tag is None:
        raise SnapshotError(f"snapshot {path!r} is not a {SNAPSHOT_FORMAT} file")
    if str(tag) != _content_tag(arrays):
        raise SnapshotError(f"snapshot {path!r} does not match its content tag (edited or corrupted)")
    out = {}
    try:
        for i, key in enumerate(arrays["keys"].tolist()):
            table = {name: arrays[f"b{i}.{name}"] for name in TABLE_FIELDS}
            out[str(key)] = (str(arrays[f"b{i}.fingerprint"]), table)
    except (KeyError, AttributeError, TypeError) as err:
        raise SnapshotError(f"snapshot {path!r} is missing part of a table: {err}") from None
    return out
