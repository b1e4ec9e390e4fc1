"""Partition checkpoints as a changelog on a JetStream stream: what changed, with the stream sequence it covers.

Each partition has one subject in the group's changelog stream (`Layout.changelog_subject`). A checkpoint
appends the rows of the devices that changed since the last one (state, steps, last-seen and last reading
times) and the ids of the devices removed (reset, TTL, least-recently-seen eviction), plus the readings stream
sequence the state covers and the admission cap's state (its token bucket and the slots churn freed: three
numbers, so a replay admits and refuses exactly as the run it repeats); so its cost follows the devices that changed, not the devices held: 20 changed
devices of `activity-gru-causal` are about 11 kB, whether the partition holds 20 or 100,000.
Now and then (when the deltas since the last snapshot add up to the table's own size, or after
`MAX_DELTAS` of them) a checkpoint is a full snapshot instead, and the subject is purged up to it, so
recovery reads at most one snapshot and its later deltas: about twice the table's bytes.

An entry larger than the server's max payload is split into chunks (`chunk_bytes`): the chunks of one
checkpoint share a transaction id and only the last, `final`, one commits it; chunks of a checkpoint that a
crash interrupted are skipped on load. So no partition size is bounded by the max payload (the former design,
one key-value entry per partition, wedged at ~1,800 devices of this model).

Fencing: every append carries `Nats-Expected-Last-Subject-Sequence`, the sequence of the last entry this worker
read or wrote on the subject. A worker that lost its lease but does not know it yet (paused, partitioned away)
therefore cannot extend the state after its successor did: its append fails with `Fenced` and it gives the
partition up. That chain is what makes the state exactly once: every checkpoint extends the one before it,
and the readings after its sequence are replayed on top.

Device ids are stored as their UTF-8 bytes with offsets, so every id — a trailing NUL included — comes back
byte for byte (numpy string arrays strip trailing NULs).

Entry format (`MAGIC`, then a 4-byte big-endian header length, the JSON header, then raw little-endian
arrays of the sizes the header states; nothing is unpickled and every size is checked before use).
"""

from __future__ import annotations

import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.state import SnapshotError, StateTable, check_rows

MAGIC = b"RNNZOO-CHANGELOG/1\n"
FORMAT = "rnnzoo-changelog/1"
MAX_DELTAS = 1000  # deltas after which the next checkpoint is a snapshot, bounding recovery's request count
HEADER_ROOM = 4096  # bytes kept free in a chunk for the header
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed expected-last-subject-sequence


class Fenced(RuntimeError):
    """The changelog moved on since this worker read it: another worker owns the partition now."""


@dataclass
class Checkpoint:
    """A partition's durable position: `seq` 0 for a partition never checkpointed.

    `revision` is the changelog subject's last sequence this worker knows (the next append must name it);
    `log_bytes` / `deltas` count what was appended since the last snapshot; `last_bytes` is the size of the
    last checkpoint written (all its chunks).
    """

    seq: int = 0
    revision: int = 0
    log_bytes: int = 0
    deltas: int = 0
    last_bytes: int = 0
    loaded_bytes: int = 0


def encode_ids(ids: list[str]) -> tuple[np.ndarray, bytes]:
    """(offsets int64 [n+1], the ids' UTF-8 bytes concatenated); lone surrogates (an undecodable subject)
    go back to the bytes they came from."""
    raw = [d.encode("utf-8", "surrogateescape") for d in ids]
    offsets = np.zeros(len(raw) + 1, dtype="<i8")
    np.cumsum([len(r) for r in raw], out=offsets[1:])
    return offsets, b"".join(raw)


def decode_ids(offsets: np.ndarray, blob: bytes) -> list[str]:
    ends = offsets.tolist()
    return [blob[a:b].decode("utf-8", "surrogateescape") for a, b in zip(ends[:-1], ends[1:], strict=True)]


def encode_entry(header: dict[str, Any], rows: dict[str, Any], removed: list[str]) -> bytes:
    """One changelog entry: `rows` = ids, state, steps, last_seen, last_t of upserted devices."""
    offsets, blob = encode_ids(rows["ids"])
    r_offsets, r_blob = encode_ids(removed)
    state = np.ascontiguousarray(rows["state"])
    head = dict(
        header,
        format=FORMAT,
        n=len(rows["ids"]),
        n_removed=len(removed),
        id_bytes=len(blob),
        removed_bytes=len(r_blob),
        state_size=int(state.shape[1]) if state.ndim == 2 else 0,
        dtype=state.dtype.str,
    )
    parts = [
        offsets.tobytes(),
        blob,
        state.tobytes(),
        np.asarray(rows["steps"], dtype="<i8").tobytes(),
        np.asarray(rows["last_seen"], dtype="<f8").tobytes(),
        np.asarray(rows["last_t"], dtype="<f8").tobytes(),
        r_offsets.tobytes(),
        r_blob,
    ]
    text = json.dumps(head).encode()
    return MAGIC + struct.pack(">I", len(text)) + text + b"".join(parts)


def decode_entry(
    data: bytes, fingerprint: str | None, state_size: int | None
) -> tuple[dict, dict[str, Any], list[str]]:
    """(header, rows, removed ids) of one entry; SnapshotError for anything that is not one of ours for this
    model, or whose sizes do not add up. `fingerprint` / `state_size` None: take them from the entry (tools)."""
    try:
        if not data.startswith(MAGIC):
            raise SnapshotError("checkpoint entry of another format")
        (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
        at = len(MAGIC) + 4
        head = json.loads(data[at : at + length])
        at += length
        if head.get("format") != FORMAT or head.get("fingerprint") != (
            fingerprint or head.get("fingerprint")
        ):
            raise SnapshotError("checkpoint entry written for another model or format")
        n, n_removed = int(head["n"]), int(head["n_removed"])
        state_size = int(head["state_size"]) if state_size is None else state_size
        dtype = np.dtype(head["dtype"])
        if dtype.kind != "f" or (n and int(head["state_size"]) != state_size):
            raise SnapshotError("checkpoint entry's state has another shape or type")

        def take(count: int, kind: Any) -> np.ndarray:
            nonlocal at
            size = count * np.dtype(kind).itemsize
            if count < 0 or at + size > len(data):
                raise SnapshotError("checkpoint entry is truncated")
            out = np.frombuffer(data, dtype=kind, count=count, offset=at)
            at += size
            return out

        def blob(size: int) -> bytes:
            nonlocal at
            if size < 0 or at + size > len(data):
                raise SnapshotError("checkpoint entry is truncated")
            at += size
            return data[at - size : at]

        offsets = take(n + 1, "<i8")
        id_blob = blob(int(head["id_bytes"]))
        state = take(n * state_size, dtype).reshape(n, state_size)
        rows = {
            "state": state,
            "steps": take(n, "<i8"),
            "last_seen": take(n, "<f8"),
            "last_t": take(n, "<f8"),
        }
        r_offsets = take(n_removed + 1, "<i8")
        r_blob = blob(int(head["removed_bytes"]))
        if at != len(data):
            raise SnapshotError("checkpoint entry has trailing bytes")
        for off, size in ((offsets, len(id_blob)), (r_offsets, len(r_blob))):
            if off[0] != 0 or off[-1] != size or (np.diff(off) < 0).any():
                raise SnapshotError("checkpoint entry's id offsets are inconsistent")
        rows["ids"] = decode_ids(offsets, id_blob)
        return head, rows, decode_ids(r_offsets, r_blob)
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise SnapshotError(f"checkpoint entry unreadable: {type(err).__name__}") from None


@dataclass
class Pending:
    """A checkpoint prepared (`CheckpointStore.prepare`) and not yet written: its entries cover readings up to
    `seq` and extend `point`."""

    seq: int
    point: Checkpoint
    snapshot: bool
    entries: list[bytes]


class CheckpointStore:
    """Load and append partition changelogs in one JetStream stream, fenced per partition.

    Args:
        js: a nats-py JetStream context.
        stream: the changelog stream's name (`Layout.changelog_stream`).
        subject: partition index → its changelog subject (`Layout.changelog_subject`).
        fingerprint: the served model's fingerprint, stored with every entry and checked on load.
        chunk_bytes: the most bytes one entry may have (below the server's max payload; reading an entry back
            comes base64-encoded in a JSON reply, so keep it under ~70% of the max payload).
        max_id_bytes: the longest device id accepted on load.
    """

    def __init__(
        self,
        js: Any,
        stream: str,
        subject: Any,
        fingerprint: str,
        chunk_bytes: int = 600_000,
        max_id_bytes: int | None = None,
    ):
        self.js, self.stream, self.subject = js, stream, subject
        self.fingerprint = fingerprint
        self.chunk_bytes = max(chunk_bytes, 2 * HEADER_ROOM)
        self.max_id_bytes = max_id_bytes

    async def ensure(self, subjects: str) -> None:
        """Create the changelog stream (subjects `subjects`) if it is missing."""
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(
                StreamConfig(name=self.stream, subjects=[subjects], description="rnnzoo partition changelogs")
            )

    # -- load ---------------------------------------------------------------------------------------------

    async def load(self, partition: int, table: StateTable) -> Checkpoint:
        """Fill `table` (empty) from the partition's changelog: the last snapshot, then every committed delta;
        the returned Checkpoint says which readings sequence that state covers."""
        from nats.js.errors import NotFoundError

        subject = self.subject(partition)
        try:
            last = (await self.js.get_last_msg(self.stream, subject)).seq
        except NotFoundError:
            return Checkpoint()
        point = Checkpoint(revision=last)
        pending: list[tuple[dict, dict, list[str], int]] = []
        cursor = 1
        while cursor <= last:
            try:
                msg = await self.js.get_msg(self.stream, seq=cursor, subject=subject, next=True)
            except NotFoundError:
                break
            cursor = msg.seq + 1
            data = msg.data or b""
            point.loaded_bytes += len(data)
            head, rows, removed = decode_entry(data, self.fingerprint, table.state_size)
            if pending and pending[0][0]["txn"] != head["txn"]:
                pending = []  # an interrupted checkpoint: its chunks never committed
            pending.append((head, rows, removed, len(data)))
            if not head["final"]:
                continue
            if head["kind"] == "snapshot":
                table.clear()
                point.log_bytes, point.deltas = 0, 0
            else:
                point.deltas += 1
            for _, chunk_rows, chunk_removed, size in pending:
                point.log_bytes += size if head["kind"] == "delta" else 0
                for device in chunk_removed:
                    table.remove(device)
                check_rows(chunk_rows, table.state_size, table.max_devices, self.max_id_bytes)
                table.upsert(chunk_rows)
            point.seq = int(head["seq"])
            if "admission" in head:
                table.set_admission(head["admission"])
            pending = []
        table.take_changes()  # what was just loaded is durable already
        return point

    # -- save ---------------------------------------------------------------------------------------------

    async def save(self, partition: int, table: StateTable, seq: int, point: Checkpoint) -> Checkpoint:
        """Append the changes since the last checkpoint (or a snapshot, when due) covering readings up to
        `seq`, fenced on `point.revision`; the new Checkpoint, or Fenced. `prepare` then `write`."""
        return await self.write(partition, self.prepare(table, seq, point))

    def prepare(self, table: StateTable, seq: int, point: Checkpoint) -> Pending:
        """The entries of the next checkpoint, taken from `table` now (its changes since the last one, or all
        of it when a snapshot is due): the table may change while they are written (`write`)."""
        changed, removed = table.take_changes()
        full = len(table)
        snapshot = (
            point.revision == 0
            or point.deltas > 0
            and (
                point.deltas >= MAX_DELTAS
                or point.log_bytes >= self._row_bytes(table) * max(full, 1)
                or len(changed["ids"]) * 2 > full > 1000
            )
        )
        if snapshot:
            changed, removed = table.rows(), []
        entries = self._chunks(
            "snapshot" if snapshot else "delta", seq, point.revision, changed, removed, table.admission()
        )
        return Pending(seq, point, snapshot, entries)

    async def write(self, partition: int, pending: Pending) -> Checkpoint:
        """Append a prepared checkpoint, fenced on the revision it was prepared on; the new Checkpoint, or
        Fenced. A snapshot purges what came before it."""
        point = pending.point
        revision, first, written = point.revision, 0, 0
        for entry in pending.entries:
            revision = await self._append(partition, entry, revision)
            first = first or revision
            written += len(entry)
        if pending.snapshot:
            if point.revision:  # nothing before a partition's first snapshot to purge
                await self._purge(partition, first)
            log_bytes, deltas = 0, 0
        else:
            log_bytes, deltas = point.log_bytes + written, point.deltas + 1
        return Checkpoint(pending.seq, revision, log_bytes, deltas, written)

    def _row_bytes(self, table: StateTable) -> int:
        return table.state_size * table.dtype.itemsize + 40

    def _chunks(
        self,
        kind: str,
        seq: int,
        txn: int,
        rows: dict,
        removed: list[str],
        admission: dict[str, float] | None = None,
    ) -> list[bytes]:
        """The entries of one checkpoint, each under chunk_bytes; the last one is `final`."""
        room = self.chunk_bytes - HEADER_ROOM
        row_bytes = rows["state"].shape[1] * rows["state"].dtype.itemsize + 32 if len(rows["ids"]) else 32
        spans: list[tuple[list[str], slice]] = []
        # Removals first (ids only), then the rows, each cut at the byte budget.
        ids, at, size, start = removed, 0, 0, 0
        for at, device in enumerate(ids):
            cost = len(device.encode("utf-8", "surrogateescape")) + 8
            if size + cost > room and at > start:
                spans.append((ids[start:at], slice(0, 0)))
                start, size = at, 0
            size += cost
        if len(ids) > start:
            spans.append((ids[start:], slice(0, 0)))
        n, start, size = len(rows["ids"]), 0, 0
        for i, device in enumerate(rows["ids"]):
            cost = row_bytes + len(device.encode("utf-8", "surrogateescape"))
            if size + cost > room and i > start:
                spans.append(([], slice(start, i)))
                start, size = i, 0
            size += cost
        if n > start or not spans:
            spans.append(([], slice(start, n)))
        token = secrets.randbits(62) ^ txn  # chunks of one checkpoint: the same txn, another one each time
        entries = []
        for k, (gone, span) in enumerate(spans):
            part = {key: value[span] for key, value in rows.items()}
            header = {
                "kind": kind,
                "txn": token,
                "chunk": k,
                "final": k == len(spans) - 1,
                "seq": seq,
                "fingerprint": self.fingerprint,
            }
            if admission is not None:
                header["admission"] = admission
            entries.append(encode_entry(header, part, gone))
        return entries

    async def _append(self, partition: int, entry: bytes, revision: int) -> int:
        from nats.js.errors import APIError

        headers = {"Nats-Expected-Last-Subject-Sequence": str(revision)}
        try:
            ack = await self.js.publish(self.subject(partition), entry, stream=self.stream, headers=headers)
        except APIError as err:
            if getattr(err, "err_code", None) == WRONG_LAST_SEQUENCE:
                raise Fenced(f"partition {partition}: changelog moved past sequence {revision}") from None
            raise
        return int(ack.seq)

    async def _purge(self, partition: int, keep_from: int) -> None:
        """Drop the entries before the snapshot that starts at `keep_from` (a later load starts there)."""
        try:
            await self.js.purge_stream(self.stream, subject=self.subject(partition), seq=keep_from)
        except Exception:  # noqa: BLE001 - a purge left undone costs recovery time, never correctness
            pass


async def read_partition(js: Any, layout: Any, partition: int) -> tuple[StateTable, Checkpoint]:
    """A partition's state as its next owner would resume it, whatever model wrote it (for tests and tools)."""
    from nats.js.errors import NotFoundError

    subject = layout.changelog_subject(partition)
    try:
        first = await js.get_msg(layout.changelog_stream, seq=1, subject=subject, next=True)
    except NotFoundError:
        return StateTable(1, max_devices=1), Checkpoint()
    head, _, _ = decode_entry(first.data or b"", None, None)
    table = StateTable(int(head["state_size"]) or 1, max_devices=10**7, dtype=np.dtype(head["dtype"]))
    store = CheckpointStore(js, layout.changelog_stream, layout.changelog_subject, head["fingerprint"])
    point = await store.load(partition, table)
    return table, point
