"""Partition checkpoints in a JetStream key-value bucket: a state table together with the stream sequence it covers.

One key per partition (`p<p>`), its value an .npz of the table's arrays (`StateTable.to_arrays`), the last
stream sequence whose reading is in that state, and the model's fingerprint. Writes are compare-and-set on the
key's revision: a worker only replaces the checkpoint it loaded (or wrote) itself. A worker that lost its lease
but does not know it yet (paused, partitioned away) therefore cannot overwrite its successor's checkpoint: its
write fails with `Fenced` and it gives the partition up. That revision chain is what makes the state exactly
once: every checkpoint extends the one before it, and the readings after its sequence are replayed on top.

The key-value store is replicated and fsynced by JetStream like the stream itself; the server's max payload
(1 MB by default) bounds one partition's checkpoint, about 10,000 devices of a 20-float state.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.state import TABLE_FIELDS, SnapshotError, StateTable

FORMAT = "rnnzoo-checkpoint/1"


class Fenced(RuntimeError):
    """The checkpoint changed since this worker read it: another worker owns the partition now."""


@dataclass
class Checkpoint:
    """A partition's state as last made durable: `seq` 0 and no arrays for a partition never checkpointed."""

    seq: int = 0
    arrays: dict[str, np.ndarray] | None = None
    revision: int = 0  # the key's revision (0: no key yet); the next write must name it


def encode(table: StateTable, seq: int, fingerprint: str) -> bytes:
    """The checkpoint bytes for `table` covering the readings up to stream sequence `seq`."""
    buf = io.BytesIO()
    arrays = table.to_arrays()
    np.savez(
        buf,
        format=np.array(FORMAT),
        seq=np.array(seq, dtype=np.int64),
        fingerprint=np.array(fingerprint),
        **arrays,
    )
    return buf.getvalue()


def decode(data: bytes, fingerprint: str) -> tuple[int, dict[str, np.ndarray]]:
    """(sequence, table arrays) from checkpoint bytes; SnapshotError when they are not one of ours for this
    model. The arrays are checked again by `StateTable.load_arrays` before they are used."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            values = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise SnapshotError(f"checkpoint unreadable: {err}") from None
    if str(values.get("format", "")) != FORMAT:
        raise SnapshotError("checkpoint of another format")
    if str(values.get("fingerprint", "")) != fingerprint:
        raise SnapshotError("checkpoint was written for another model (fingerprint differs)")
    try:
        return int(values["seq"]), {name: values[name] for name in TABLE_FIELDS}
    except KeyError as err:
        raise SnapshotError(f"checkpoint lacks {err}") from None


class CheckpointStore:
    """Load and compare-and-set partition checkpoints in one key-value bucket.

    Args:
        kv: a nats-py KeyValue bucket.
        fingerprint: the served model's fingerprint, stored with every checkpoint and checked on load.
    """

    def __init__(self, kv: Any, fingerprint: str):
        self.kv = kv
        self.fingerprint = fingerprint

    async def load(self, partition: int) -> Checkpoint:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self.kv.get(f"p{partition}")
        except KeyNotFoundError:  # KeyDeletedError is one too
            return Checkpoint()
        seq, arrays = decode(entry.value or b"", self.fingerprint)
        return Checkpoint(seq, arrays, entry.revision)

    async def save(self, partition: int, table: StateTable, seq: int, revision: int) -> int:
        """Write the checkpoint if the key is still at `revision`; the new revision, or Fenced."""
        from nats.js.errors import KeyWrongLastSequenceError

        data = encode(table, seq, self.fingerprint)
        try:
            if revision:
                return await self.kv.update(f"p{partition}", data, last=revision)
            return await self.kv.create(f"p{partition}", data)
        except KeyWrongLastSequenceError:
            raise Fenced(f"partition {partition}: checkpoint moved past revision {revision}") from None
