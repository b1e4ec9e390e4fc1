"""`rnnzoo worker`: serve a model on NATS JetStream, partitioned across workers, with exactly-once device state.

A worker process joins a group (one per model), owns some of its P partitions, and for each owned partition
reads the partition's readings in stream order, steps every device's state (`StateTable` + the zoo's step
engine, in waves as the MQTT service does), publishes one prediction per reading, and every
`checkpoint_interval_s` makes the partition's state durable together with the last stream sequence it covers
(`streaming.checkpoint`), and only then acknowledges the stream up to that sequence.

Guarantees:
- state: exactly once. A partition's state only ever moves from one checkpoint to the next by replaying the
  readings after the checkpoint's sequence, in stream order; readings at or below it are skipped. The clock the
  state table sees is the stream's own timestamp of each reading, so a replay is bit-for-bit the same run.
- predictions: at least once. A reading between the last checkpoint and a crash is stepped again by the next
  owner and its prediction published again, identical, with the same `seq` (stream sequence) and `step`:
  a consumer drops a duplicate by (device, seq).

Ownership: a lease per partition in a key-value bucket whose entries expire after `lease_ttl_s`; claimed with
create (succeeds only if nobody holds it), renewed by compare-and-set every third of the TTL. Each worker also
keeps a `member.<id>` heartbeat there and takes ceil(P / members) partitions: a joining worker makes the others
release their extras (checkpoint first), a dead one's leases expire and the others claim them. A lease alone
cannot stop a paused worker that does not yet know it lost its partition; the checkpoint's compare-and-set can
(see `streaming.checkpoint`), so two owners never both extend the state.

Why leases and not one consumer per worker with the server balancing: JetStream spreads one consumer's
messages over its pullers without regard to the device, which would split a device's readings between two
states (the same fault as MQTT shared subscriptions). A stream and consumer per partition, owned through a lease,
keeps each device on one state and lets the owner restart the consumer at exactly its checkpoint's sequence.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming.checkpoint import CheckpointStore, Fenced
from streaming.jetstream import Layout, LayoutError, ensure_stream, mapping_config, token_safe
from streaming.payloads import DEFAULT_MAX_BYTES, parse_many
from streaming.state import FULL, SnapshotError, StateTable
from zoo.step import one_blas_thread

log = logging.getLogger("streaming.worker")

REJECTED_DEVICE = "_rejected"
ROUTE_CACHE = 100_000  # subjects whose device and prediction subject are remembered
# Test hook: RNNZOO_WORKER_CRASH="<point>:<n>" makes a worker SIGKILL itself the n-th time it reaches <point>,
# so tests can crash it at the moments hardest to survive, every run alike: "stepped" (a batch's predictions
# handed to the client, its state changed, nothing checkpointed) and "checkpointed" (the checkpoint is durable,
# the stream not yet acknowledged up to it).
CRASH_ENV = "RNNZOO_WORKER_CRASH"


def stream_position(reply: str) -> tuple[int, int]:
    """(stream sequence, time the stream stored it in ns) of a JetStream message, read once from its ack subject
    (cheaper than nats-py's metadata): `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`
    (9 tokens) or, from servers with domains, `$JS.ACK.<domain>.<account>.<stream>.<consumer>.…` (12 or more)."""
    tokens = reply.split(".")
    base = 4 if len(tokens) == 9 else 6
    return int(tokens[base + 1]), int(tokens[base + 3])


class PredictionEncoder:
    """Prediction messages, byte for byte what `json.dumps` makes of {"seq", "step", "outputs", ["reading"],
    ["label"], ["t"]}, from one %-template per output width: a dict and the generic encoder per reading cost
    more than the step itself. Floats go through `%r`, which is `float.__repr__`, as in `json.dumps`.

    Args:
        n_outputs: K, the width of one output row.
        class_names: the label of each output (None: no "label" key).
    """

    def __init__(self, n_outputs: int, class_names: list[str] | None = None):
        self.head = '{"seq": %d, "step": %d, "outputs": [' + ", ".join(["%r"] * n_outputs) + "]"
        self.labels = [', "label": ' + json.dumps(name) for name in class_names] if class_names else None

    def encode(
        self,
        seqs: list[int],
        steps: list[int],
        outputs: np.ndarray,
        parts: list[int] | None = None,
        times: list[float | None] | None = None,
    ) -> list[bytes]:
        """One message per row of `outputs` (finite, [n, K]): outputs rounded to 8 decimals; `parts[i]` >= 0
        adds "reading" (the i-th reading of a SenML pack), a `times[i]` that is not None adds "t"."""
        rows = np.round(outputs.astype(np.float64), 8).tolist()
        labels = np.argmax(outputs, axis=1).tolist() if self.labels else None
        head, names = self.head, self.labels
        out = []
        for i, row in enumerate(rows):
            text = head % (seqs[i], steps[i], *row)
            if parts is not None and parts[i] >= 0:
                text += f', "reading": {parts[i]}'
            if names is not None:
                text += names[labels[i]]  # type: ignore[index]
            if times is not None and times[i] is not None:
                text += f', "t": {times[i]!r}'
            out.append((text + "}").encode())
        return out


def wave_index(slots: np.ndarray) -> np.ndarray:
    """For each reading of a batch (its device's slot, in stream order): how many readings of the same device
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
class WorkerSettings:
    """Everything one worker needs; the command line fills it."""

    nats_url: str
    model: str
    layout: Layout = field(default_factory=Layout)
    worker_id: str = ""
    lease_ttl_s: float = 6.0
    checkpoint_interval_s: float = 1.0
    max_batch: int = 1024  # readings fetched at once: 1024 over 512 cut the CPU per reading ~15% (measured)
    max_devices: int = 100_000
    max_device_id_bytes: int = 128
    max_payload_bytes: int = DEFAULT_MAX_BYTES
    max_age_s: float | None = None  # readings kept in the stream (None: until the stream limits)
    output_subject: str = "predictions.{device}.{model}"
    error_subject: str = "errors.{device}"
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = token_safe(f"{socket.gethostname()}-{os.getpid()}")


@dataclass
class Partition:
    """One owned partition at run time."""

    index: int
    lease_revision: int
    task: asyncio.Task | None = None
    table: StateTable | None = None
    stopping: bool = False  # release asked: checkpoint, then end
    lost: bool = False  # lease lost: end at once, without a checkpoint


class Worker:
    """A group member: claims partitions, steps their readings, checkpoints, acknowledges.

    Args:
        settings: the worker's settings.
        served: the served model (`streaming.models.serve_model`); must stream in step mode.
    """

    def __init__(self, settings: WorkerSettings, served: Any):
        if served.mode != "step":
            raise ValueError(
                f"model {served.name!r} streams in window mode; the JetStream mode needs step mode"
            )
        self.settings = settings
        self.layout = settings.layout
        self.served = served
        self.engine = served.engine
        self.model_token = token_safe(served.name)
        self.owned: dict[int, Partition] = {}
        self.counters: dict[str, int] = {"readings": 0, "skipped": 0, "errors": 0, "checkpoints": 0}
        self._stop = asyncio.Event()
        self._outbox: list[tuple[str, bytes]] = []
        self._routes: dict[str, tuple[str, str | None, str]] = {}
        self.encoder = PredictionEncoder(served.engine.n_outputs, served.class_names)
        self._member_count = 1
        self.nc: Any = None
        point, _, count = os.environ.get(CRASH_ENV, "").partition(":")
        self._crash_point, self._crash_countdown = point, int(count or 1)

    # -- setup --------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        import nats
        from nats.js.api import KeyValueConfig
        from nats.js.errors import BucketNotFoundError

        self.nc = await nats.connect(
            self.settings.nats_url,
            connect_timeout=self.settings.connect_timeout_s,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            allow_reconnect=True,
            name=f"rnnzoo-worker-{self.settings.worker_id}",
        )
        self.js = self.nc.jetstream(timeout=5.0)
        await ensure_stream(self.js, self.layout, self.settings.max_age_s)

        async def bucket(name: str, ttl: float | None) -> Any:
            try:
                return await self.js.key_value(name)
            except BucketNotFoundError:
                return await self.js.create_key_value(KeyValueConfig(bucket=name, history=1, ttl=ttl))

        self.leases = await bucket(self.layout.lease_bucket, self.settings.lease_ttl_s)
        self.checkpoints = CheckpointStore(
            await bucket(self.layout.checkpoint_bucket, None), self.engine.fingerprint
        )

    # -- ownership ----------------------------------------------------------------------------------------

    async def _members(self) -> int:
        from nats.js.errors import NoKeysError

        try:
            keys = await self.leases.keys()  # NATS 2.9 ignores a key filter: filter here
        except NoKeysError:
            keys = []
        members = {k for k in keys if k.startswith("member.")}
        return len(members | {f"member.{self.settings.worker_id}"})

    async def _renew(self) -> None:
        """Renew every owned lease, concurrently; a refused renewal means another worker owns it now. Runs on
        its own timer (every quarter of the TTL), so a slow membership count never makes a lease late."""
        from nats.js.errors import KeyWrongLastSequenceError

        wid = self.settings.worker_id.encode()
        parts = [part for part in self.owned.values() if not part.stopping and not part.lost]

        async def one(part: Partition) -> None:
            try:
                part.lease_revision = await self.leases.update(
                    f"partition.{part.index}", wid, last=part.lease_revision
                )
            except KeyWrongLastSequenceError:
                log.warning("lost the lease of partition %d; dropping it without a checkpoint", part.index)
                self._drop(part.index)

        await asyncio.gather(*(one(part) for part in parts))

    async def _renew_forever(self) -> None:
        while not self._stop.is_set():
            try:
                await self._renew()
            except Exception as err:  # noqa: BLE001 - the server may be restarting; try next turn
                log.warning("lease renewal failed: %s: %s", type(err).__name__, err)
            try:
                await asyncio.wait_for(self._stop.wait(), self.settings.lease_ttl_s / 4)
            except TimeoutError:
                pass

    async def _rebalance(self) -> None:
        """One turn: heartbeat, release extras, claim free partitions up to the fair share."""
        from nats.js.errors import KeyWrongLastSequenceError

        wid = self.settings.worker_id.encode()
        await self.leases.put(f"member.{self.settings.worker_id}", wid)
        try:
            self._member_count = await asyncio.wait_for(self._members(), self.settings.lease_ttl_s / 3)
        except TimeoutError:
            log.warning("counting the group's members timed out; keeping %d", self._member_count)
        share = math.ceil(self.layout.partitions / self._member_count)
        active = [p for p, part in self.owned.items() if not part.stopping]
        for p in sorted(active)[share:]:
            log.info("releasing partition %d (fair share is %d)", p, share)
            self.owned[p].stopping = True
        if len(active) >= share:
            return
        # Start the search at an offset of our own, so workers starting together try different partitions.
        offset = hash(self.settings.worker_id) % self.layout.partitions
        for i in range(self.layout.partitions):
            if len([x for x in self.owned.values() if not x.stopping]) >= share:
                break
            p = (offset + i) % self.layout.partitions
            if p in self.owned:
                continue
            try:
                revision = await self.leases.create(f"partition.{p}", wid)
            except KeyWrongLastSequenceError:
                continue  # held by someone else
            part = Partition(p, revision)
            self.owned[p] = part
            part.task = asyncio.create_task(self._serve_partition(part))
            log.info("claimed partition %d", p)

    def _drop(self, p: int) -> None:
        """Forget a partition whose lease is gone: its task ends at its next turn without a checkpoint (a flag,
        not a cancel: the client swallows cancellation inside a fetch). Were it to checkpoint anyway, the
        compare-and-set would refuse it once the new owner has written."""
        part = self.owned.pop(p, None)
        if part is not None:
            part.lost = True

    async def _release(self, part: Partition) -> None:
        try:
            await self.leases.delete(f"partition.{part.index}", last=part.lease_revision)
        except Exception as err:  # noqa: BLE001 - an expired lease needs no release
            log.debug("release of partition %d: %s", part.index, err)
        self.owned.pop(part.index, None)

    # -- one partition --------------------------------------------------------------------------------------

    async def _serve_partition(self, part: Partition) -> None:
        """Own `part` until asked to release it (or cancelled): restart from its checkpoint after a fence."""
        while not part.lost:
            try:
                await self._consume(part)
                return
            except Fenced as err:
                log.warning("%s; reloading", err)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a broken connection: start again from the checkpoint
                log.warning(
                    "partition %d: %s: %s; restarting from its checkpoint",
                    part.index,
                    type(err).__name__,
                    err,
                )
                await asyncio.sleep(0.5)

    async def _consume(self, part: Partition) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        p, layout = part.index, self.layout
        checkpoint = await self.checkpoints.load(p)
        table = StateTable(self.engine.state_size, self.settings.max_devices, dtype=self.engine.dtype)
        if checkpoint.arrays is not None:
            table.load_arrays(checkpoint.arrays, self.settings.max_device_id_bytes)
        part.table = table
        revision, covered = checkpoint.revision, checkpoint.seq
        applied = covered
        name = layout.consumer(p)
        try:  # a fresh consumer that starts right after the checkpoint: nothing waits for an ack timeout
            await self.js.delete_consumer(layout.stream_name(p), name)
        except NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.ALL,
            ack_wait=max(30.0, 10 * self.settings.checkpoint_interval_s),
            max_ack_pending=-1,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if covered else DeliverPolicy.ALL,
            opt_start_seq=covered + 1 if covered else None,
        )
        await self.js.add_consumer(layout.stream_name(p), config)
        sub = await self.js.pull_subscribe_bind(durable=name, stream=layout.stream_name(p))
        log.info("partition %d: resumed at stream sequence %d with %d devices", p, covered, len(table))
        last_msg = None
        checkpointed_at = time.monotonic()
        try:
            while not self._stop.is_set() and not part.stopping and not part.lost:
                try:
                    msgs = await sub.fetch(self.settings.max_batch, timeout=0.2)
                except (TimeoutError, NatsTimeout):
                    msgs = []
                fresh, positions = [], []
                for m in msgs:
                    position = stream_position(m.reply)
                    if position[0] <= applied:
                        self.counters["skipped"] += 1
                        continue
                    applied = position[0]
                    fresh.append(m)
                    positions.append(position)
                if fresh:
                    self._step_batch(table, fresh, positions)
                    await self._send()
                    last_msg = fresh[-1]
                    self._crash_test_hook("stepped")
                if (
                    applied > covered
                    and time.monotonic() - checkpointed_at >= self.settings.checkpoint_interval_s
                ):
                    revision = await self._checkpoint(p, table, applied, revision, last_msg)
                    covered, checkpointed_at = applied, time.monotonic()
            if applied > covered and not part.lost:  # stopping or released: durable before letting go
                await self._checkpoint(p, table, applied, revision, last_msg)
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone
                pass
        if part.stopping:
            await self._release(part)
            log.info("partition %d released at stream sequence %d", p, applied)

    async def _checkpoint(self, p: int, table: StateTable, seq: int, revision: int, last_msg: Any) -> int:
        # Predictions first: once the state is durable their readings are never replayed.
        await self.nc.flush()
        revision = await self.checkpoints.save(p, table, seq, revision)
        self.counters["checkpoints"] += 1
        self._crash_test_hook("checkpointed")
        if last_msg is not None:
            await last_msg.ack()  # AckAll: every reading up to `seq` is done with
        return revision

    def _crash_test_hook(self, point: str) -> None:
        if point == self._crash_point:
            self._crash_countdown -= 1
            if self._crash_countdown <= 0:
                log.warning("%s=%s: SIGKILL at %r", CRASH_ENV, os.environ.get(CRASH_ENV), point)
                os.kill(os.getpid(), signal.SIGKILL)

    # -- stepping -----------------------------------------------------------------------------------------

    def _step_batch(self, table: StateTable, msgs: list[Any], positions: list[tuple[int, int]]) -> None:
        """Parse and step one fetched batch (stream order; `positions` their (sequence, time in ns)) in waves —
        each device's k-th reading of the batch in wave k, one engine call per wave — and queue one prediction
        per reading, in stream order. A bad reading is answered on the error subject and counts as done."""

        routes = [self._route(m.subject) for m in msgs]

        def refuse(j: int, subject: str, reason: str, detail: str) -> None:
            self._error(routes[j][0], subject, positions[j][0], reason, detail)

        accepted = [j for j, route in enumerate(routes) if route[1] is None]  # acceptable device ids
        if len(accepted) < len(msgs):
            for j, (_, refused, _) in enumerate(routes):
                if refused is not None:
                    self._error(
                        REJECTED_DEVICE, msgs[j].subject[:200], positions[j][0], "bad device id", refused
                    )
        batch = parse_many(
            [msgs[j].data for j in accepted], self.engine.n_features, self.settings.max_payload_bytes
        )
        for i, err in batch.errors.items():
            refuse(accepted[i], msgs[accepted[i]].subject, err.reason, err.detail)
        owner = [accepted[i] for i in batch.source]  # the message of each reading
        slot = table.slot
        # The stream's timestamps, not the wall clock: a replay must see the same times.
        slots = [slot(routes[j][0], positions[j][1] / 1e9) for j in owner]
        rows = list(range(len(owner)))  # readings (rows of batch.values) that got a slot
        if FULL in slots:
            for r in [r for r in rows if slots[r] == FULL]:
                refuse(
                    owner[r],
                    msgs[owner[r]].subject,
                    "device limit reached",
                    f"max_devices={table.max_devices}",
                )
            rows = [r for r in rows if slots[r] != FULL]
            owner, slots = [owner[r] for r in rows], [slots[r] for r in rows]
        if not rows:
            return
        now = positions[-1][1] / 1e9
        slot_of = np.array(slots, dtype=np.int64)
        values = batch.values if len(rows) == len(batch.values) else batch.values[rows]
        x = values.astype(np.float32)  # what the device sent, as the float32 Keras reads
        outputs = np.zeros((len(rows), self.engine.n_outputs), dtype=np.float32)
        steps = np.zeros(len(rows), dtype=np.int64)  # -1: refused as non-finite
        done = np.zeros(len(rows), dtype=bool)
        waves = wave_index(slot_of)
        for w in range(int(waves.max()) + 1):
            idx = np.flatnonzero(waves == w)
            try:
                self._step_wave(table, slot_of[idx], x[idx], now, idx, outputs, steps, done)
            except Exception as err:  # noqa: BLE001 - a replay would fail the same way: answer, move on
                log.exception("stepping a wave of %d readings failed (the partition goes on)", len(idx))
                for k in idx.tolist():
                    refuse(owner[k], "", "internal error", type(err).__name__)
        for k in np.flatnonzero(steps < 0).tolist():
            refuse(owner[k], "", "non-finite result", "the reading drives the model out of range")
        keep = np.flatnonzero(done).tolist()
        if not keep:
            return
        source = [owner[k] for k in keep]
        bodies = self.encoder.encode(
            [positions[j][0] for j in source],
            steps[keep].tolist(),
            outputs[keep],
            [batch.part[rows[k]] for k in keep],
            [batch.t[rows[k]] for k in keep],
        )
        self._outbox += [(routes[j][2], body) for j, body in zip(source, bodies, strict=True)]
        self.counters["readings"] += len(keep)

    def _step_wave(
        self,
        table: StateTable,
        slots: np.ndarray,
        x: np.ndarray,
        now: float,
        idx: np.ndarray,
        outputs: np.ndarray,
        steps: np.ndarray,
        done: np.ndarray,
    ) -> None:
        """Step one wave (distinct slots) and commit the rows whose result is finite; fill `outputs`, `steps`
        and `done` at `idx` for those, and mark the others with step -1 (refused, state kept)."""
        before = table.steps[slots]
        out, new_state = self.engine.advance(x, table.state[slots], before)
        finite = np.isfinite(new_state).all(axis=1) & np.isfinite(out).all(axis=1)
        table.commit(slots[finite], new_state[finite], now)
        outputs[idx[finite]] = out[finite]
        steps[idx] = np.where(finite, before, -1)
        done[idx[finite]] = True

    def _publish(self, subject: str, payload: bytes) -> None:
        # Stepping is plain code; the answers wait here and `_send` hands them to the client after each batch.
        self._outbox.append((subject, payload))

    def _route(self, subject: str) -> tuple[str, str | None, str]:
        """(device, why its id is refused or None, its predictions' subject) for a reading's subject. Cached:
        a device sends on one subject again and again; a flood of made-up ids only empties the cache."""
        route = self._routes.get(subject)
        if route is None:
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            device = self.layout.device_of(subject)
            out = self.settings.output_subject.format(device=device, model=self.model_token)
            route = self._routes[subject] = (device, self._refuse_device(device), out)
        return route

    async def _send(self) -> None:
        outbox, self._outbox = self._outbox, []
        publish = self.nc.publish
        for subject, payload in outbox:
            await publish(subject, payload)

    def _refuse_device(self, device: str) -> str | None:
        limit = self.settings.max_device_id_bytes
        if len(device.encode()) > limit:
            return f"device id too long: {len(device.encode())} bytes > {limit}"
        if not device or device.startswith("_"):
            return f"reserved device id {device[:40]!r}: ids may not be empty or start with '_'"
        return None

    def _error(self, device: str, subject: str, seq: int, reason: str, detail: str) -> None:
        """Answer a refused reading on the error subject and log it; the reading counts as done (acknowledged
        with the next checkpoint), so a poison message never blocks its partition."""
        self.counters["errors"] += 1
        payload = json.dumps({"reason": reason, "detail": detail[:200], "subject": subject, "seq": seq})
        self._publish(self.settings.error_subject.format(device=token_safe(device)), payload.encode())
        log.warning("refused reading %d from device %r: %s: %s", seq, device[:200], reason, detail[:200])

    # -- run ----------------------------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until stop(): rebalance every third of the lease TTL; on stop checkpoint and release all."""
        one_blas_thread()
        await self.connect()
        log.info(
            "worker %s joined group %s (%d partitions, streams %s_P*)",
            self.settings.worker_id,
            self.layout.group,
            self.layout.partitions,
            self.layout.stream,
        )
        if ready is not None:
            ready.set()
        renewer = asyncio.create_task(self._renew_forever())
        try:
            while not self._stop.is_set():
                try:
                    await self._rebalance()
                except Exception as err:  # noqa: BLE001 - the server may be restarting; try next turn
                    log.warning("rebalance failed: %s: %s", type(err).__name__, err)
                for p, part in list(self.owned.items()):
                    if part.task is not None and part.task.done() and not part.stopping:
                        self.owned.pop(p, None)  # ended by itself; its lease will be claimed again
                try:
                    await asyncio.wait_for(self._stop.wait(), self.settings.lease_ttl_s / 3)
                except TimeoutError:
                    pass
            for part in list(self.owned.values()):
                part.stopping = True
            tasks = [part.task for part in self.owned.values() if part.task is not None]
            await asyncio.wait(tasks, timeout=10) if tasks else None
            await renewer
            try:
                await self.leases.delete(f"member.{self.settings.worker_id}")
            except Exception:  # noqa: BLE001
                pass
        finally:
            await self.nc.drain()

    def stop(self) -> None:
        self._stop.set()


def load_served(spec: str) -> Any:
    from streaming.models import serve_model

    return serve_model(spec, mode="step", isolate=True)


def run_worker(settings: WorkerSettings) -> None:
    """Run one worker in this process until SIGTERM or SIGINT."""
    served = load_served(settings.model)
    worker = Worker(settings, served)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


def run_workers(n: int, argv: list[str]) -> int:
    """Start `n` worker processes with the same arguments and wait; SIGTERM/SIGINT are passed on."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "streaming", "worker", *argv, "--workers", "1"])
        for _ in range(n)
    ]

    def forward(signum: int, frame: Any) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes, default=0)


# -- command line ---------------------------------------------------------------------------------------------


def default_group(model: str | None) -> str:
    """The group of a model's workers: its name (a file's base name), in the characters a bucket allows."""
    base = os.path.splitext(os.path.basename(model or "model"))[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", base)[:64] or "model"


def _fail(message: str) -> int:
    print(f"rnnzoo worker: error: {message}", file=sys.stderr)
    return 2


def cmd_worker(args: argparse.Namespace) -> int:
    from streaming.logs import configure

    configure(args.log_level, "text")
    try:
        layout = Layout(args.partitions, args.subject, args.stream, args.group or default_group(args.model))
    except LayoutError as err:
        return _fail(str(err))
    if args.print_mapping:
        print(mapping_config(layout))
        return 0
    if not args.nats.startswith(("nats://", "tls://")):
        return _fail(f"--nats must be nats://HOST:PORT, got {args.nats!r}")
    if not args.model:
        return _fail("give --model NAME (a zoo model or a .keras file)")
    if args.workers > 1:
        argv = sys.argv[1:]
        if "worker" in argv:
            argv = argv[argv.index("worker") + 1 :]
        argv = _without_workers(argv)
        return run_workers(args.workers, argv)
    from streaming.models import ModelError
    from zoo.step import NotStepable

    settings = WorkerSettings(
        nats_url=args.nats,
        model=args.model,
        layout=layout,
        worker_id=token_safe(args.worker_id) if args.worker_id else "",
        lease_ttl_s=args.lease_ttl,
        checkpoint_interval_s=args.checkpoint_interval,
        max_batch=args.max_batch,
        max_devices=args.max_devices,
        max_age_s=args.max_age,
    )
    try:
        run_worker(settings)
    except (ModelError, NotStepable, LayoutError, SnapshotError, ValueError, OSError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return 130
    return 0


def _without_workers(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        out.append(a)
    return out


def _positive(kind: type) -> Any:
    def parse_value(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse_value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `worker` to the rnnzoo command line."""
    p = subparsers.add_parser(
        "worker",
        help="serve a model on NATS JetStream, partitioned across workers, exactly-once state",
        description="Join a worker group on NATS JetStream: own partitions of the devices, step their readings, "
        "checkpoint state with the stream sequence (see docs/streaming.md, 'Scale out').",
    )
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="nats://HOST:PORT")
    p.add_argument("--model", help="zoo model name or .keras file (step mode)")
    p.add_argument("--partitions", type=_positive(int), default=8, help="P, fixed for the stream's life (8)")
    p.add_argument("--subject", default="sensors.*.imu", help="readings subject; its '*' is the device id")
    p.add_argument(
        "--stream", default="RNNZOO_READINGS", help="prefix of the partitions' streams (<stream>_P<p>)"
    )
    p.add_argument("--group", help="worker group (consumers and buckets); default: the model name")
    p.add_argument("--workers", type=_positive(int), default=1, help="worker processes to start here")
    p.add_argument("--worker-id", help="this worker's id (default host-pid)")
    p.add_argument(
        "--lease-ttl", type=_positive(float), default=6.0, help="seconds a dead worker's partitions wait"
    )
    p.add_argument(
        "--checkpoint-interval", type=_positive(float), default=1.0, help="seconds between checkpoints"
    )
    p.add_argument("--max-batch", type=_positive(int), default=1024, help="readings fetched at once")
    p.add_argument("--max-devices", type=_positive(int), default=100_000, help="device states per partition")
    p.add_argument(
        "--max-age", type=_positive(float), help="seconds the stream keeps readings (new stream only)"
    )
    p.add_argument(
        "--print-mapping", action="store_true", help="print the nats-server mappings block and exit"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_worker)
