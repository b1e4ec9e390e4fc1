"""The per-model state table: device id → slot in one `[capacity, S]` array, plus step counts and last-seen times.

Keeping every device's state in one contiguous array lets a micro-batch gather its devices' states with one
fancy-index, step them together, and scatter them back. Devices are added on their first reading (zero state),
removed by a reset or after `ttl_s` idle, and refused (the caller answers with an error) beyond `max_devices`.
Snapshots are written atomically (temp file, fsync, rename) so a crash never leaves a half-written file.

Example:
    >>> table = StateTable(state_size=64, max_devices=10_000, ttl_s=3600)
    >>> slots = np.array([table.slot("dev1", now), table.slot("dev2", now)])
    >>> y, new = step_model.step(x, table.state[slots])
    >>> table.commit(slots, new, now)
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

Array = np.ndarray

FULL = -1  # slot() returns this when a new device would exceed max_devices


class StateTable:
    """Device → slot map over preallocated state arrays that grow by doubling up to `max_devices`.

    Args:
        state_size: S, the width of one device's flattened state.
        max_devices: the most devices held at once; new devices beyond it are refused.
        ttl_s: idle seconds after which `evict_idle` removes a device (None: never).
        dtype: state dtype.
        initial_capacity: slots allocated up front.
    """

    def __init__(
        self,
        state_size: int,
        max_devices: int = 100_000,
        ttl_s: float | None = None,
        dtype: Any = np.float32,
        initial_capacity: int = 1024,
    ):
        self.state_size = int(state_size)
        self.max_devices = int(max_devices)
        self.ttl_s = ttl_s
        self.dtype = np.dtype(dtype)
        capacity = max(1, min(initial_capacity, self.max_devices))
        self.state = np.zeros((capacity, self.state_size), dtype=self.dtype)
        self.steps = np.zeros(capacity, dtype=np.int64)
        self.last_seen = np.zeros(capacity, dtype=np.float64)
        self.used = np.zeros(capacity, dtype=bool)  # mirrors _ids, so TTL scans are one vector op
        self._ids: list[str | None] = [None] * capacity
        self._slot_of: dict[str, int] = {}
        # Free slots as a stack; popping from the end hands out low slots first, keeping the array dense.
        self._free: list[int] = list(range(capacity - 1, -1, -1))

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
        self.state = np.concatenate([self.state, np.zeros((new - old, self.state_size), dtype=self.dtype)])
        self.steps = np.concatenate([self.steps, np.zeros(new - old, dtype=np.int64)])
        self.last_seen = np.concatenate([self.last_seen, np.zeros(new - old, dtype=np.float64)])
        self.used = np.concatenate([self.used, np.zeros(new - old, dtype=bool)])
        self._ids.extend([None] * (new - old))
        self._free.extend(range(new - 1, old - 1, -1))
        return True

    def slot(self, device: str, now: float) -> int:
        """The device's slot, adding it with zero state if new; FULL if the table is at max_devices."""
        found = self._slot_of.get(device)
        if found is not None:
            return found
        if not self._free and not self._grow():
            # At the cap: idle devices past their TTL make room before a new device is refused.
            if not self.evict_idle(now):
                return FULL
        slot = self._free.pop()
        self._slot_of[device] = slot
        self._ids[slot] = device
        self.used[slot] = True
        self.state[slot] = 0
        self.steps[slot] = 0
        self.last_seen[slot] = now
        return slot

    def commit(self, slots: Array, new_state: Array, now: float) -> None:
        """Store the stepped state of `slots` (all distinct) and count one more reading for each."""
        self.state[slots] = new_state
        self.steps[slots] += 1
        self.last_seen[slots] = now

    def remove(self, device: str) -> bool:
        """Forget a device (a reset): its next reading starts from zero state at step 0."""
        slot = self._slot_of.pop(device, None)
        if slot is None:
            return False
        self._ids[slot] = None
        self.used[slot] = False
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
        return evicted  # type: ignore[return-value]

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
        }

    def load_arrays(self, arrays: dict[str, Array]) -> None:
        """Replace the table's contents with a snapshot taken by `to_arrays`."""
        devices = arrays["devices"].tolist()
        if arrays["state"].shape[1:] != (self.state_size,):
            raise ValueError(f"snapshot state width {arrays['state'].shape[1:]} != model's {self.state_size}")
        if len(devices) > self.max_devices:
            raise ValueError(
                f"snapshot holds {len(devices)} devices, more than max_devices={self.max_devices}"
            )
        capacity = max(self.capacity, len(devices))
        self.state = np.zeros((capacity, self.state_size), dtype=self.dtype)
        self.steps = np.zeros(capacity, dtype=np.int64)
        self.last_seen = np.zeros(capacity, dtype=np.float64)
        n = len(devices)
        self.state[:n] = arrays["state"]
        self.steps[:n] = arrays["steps"]
        self.last_seen[:n] = arrays["last_seen"]
        self.used = np.zeros(capacity, dtype=bool)
        self.used[:n] = True
        self._ids = devices + [None] * (capacity - n)
        self._slot_of = {d: i for i, d in enumerate(devices)}
        self._free = list(range(capacity - 1, n - 1, -1))


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


def load_snapshot(path: str | os.PathLike) -> dict[str, tuple[str, dict[str, Array]]]:
    """Read a snapshot: binding key → (model fingerprint, table arrays). Raises ValueError if unreadable."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            out = {}
            for i, key in enumerate(data["keys"].tolist()):
                arrays = {name: data[f"b{i}.{name}"] for name in ("devices", "state", "steps", "last_seen")}
                out[key] = (str(data[f"b{i}.fingerprint"]), arrays)
            return out
    except (OSError, KeyError, ValueError, EOFError) as err:
        raise ValueError(f"snapshot {os.fspath(path)!r} is unreadable: {err}") from err
