"""One owned partition of a JetStream worker served (`streaming.worker`): its checkpoint loaded, its durable pull
consumer recreated right after the checkpoint's sequence (`AckPolicy.ALL`), readings fetched in stream order
and answered (`streaming.answers`), predictions published, and every `checkpoint_interval_s` the changed state
made durable with the sequence it covers (`streaming.checkpoint`) before the stream is acknowledged up to it —
written while the next readings are fetched and stepped, so a large checkpoint does not stall the partition.
A fence (another owner wrote) or a broken connection restarts the partition from its checkpoint.

Test hook: RNNZOO_WORKER_CRASH="<point>:<n>" makes a worker SIGKILL itself the n-th time it reaches <point>,
so tests can crash it at the moments hardest to survive, every run alike: "stepped" (a batch's predictions
handed to the client, its state changed, nothing checkpointed) and "checkpointed" (the checkpoint is durable,
the stream not yet acknowledged up to it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from streaming.checkpoint import Checkpoint, Fenced, Pending
from streaming.leases import Partition

log = logging.getLogger("streaming.worker")

CRASH_ENV = "RNNZOO_WORKER_CRASH"


def stream_position(reply: str) -> tuple[int, int]:
    """(stream sequence, time the stream stored it in ns) of a JetStream message, read once from its ack subject
    (cheaper than nats-py's metadata): `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`
    (9 tokens) or, from servers with domains, `$JS.ACK.<domain>.<account>.<stream>.<consumer>.…` (12 or more)."""
    tokens = reply.split(".")
    base = 4 if len(tokens) == 9 else 6
    return int(tokens[base + 1]), int(tokens[base + 3])


class PartitionConsumer:
    """Serves the partitions a worker owns, one task each (`serve`).

    Args:
        worker: the `streaming.worker.Worker` (its connection, checkpoint store, answers, counters, metrics).
    """

    def __init__(self, worker: Any):
        self.worker = worker
        point, _, count = os.environ.get(CRASH_ENV, "").partition(":")
        self._crash_point, self._crash_countdown = point, int(count or 1)

    async def serve(self, part: Partition) -> None:
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

        w = self.worker
        p, layout = part.index, w.layout
        table = w.settings.policy.table(w.engine)
        began = time.monotonic()
        point = await w.checkpoints.load(p, table)
        part.table = table
        covered = point.seq
        applied = covered
        name = layout.consumer(p)
        try:  # a fresh consumer that starts right after the checkpoint: nothing waits for an ack timeout
            await w.js.delete_consumer(layout.stream_name(p), name)
        except NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.ALL,
            ack_wait=max(30.0, 10 * w.settings.checkpoint_interval_s),
            max_ack_pending=-1,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if covered else DeliverPolicy.ALL,
            opt_start_seq=covered + 1 if covered else None,
        )
        await w.js.add_consumer(layout.stream_name(p), config)
        sub = await w.js.pull_subscribe_bind(durable=name, stream=layout.stream_name(p))
        log.info(
            "partition %d: resumed at stream sequence %d with %d devices (%d checkpoint bytes read in %.2f s)",
            p,
            covered,
            len(table),
            point.loaded_bytes,
            time.monotonic() - began,
        )
        last_msg = None
        checkpointed_at = time.monotonic()
        # The checkpoint being written, beside the fetching and stepping: its entries were taken from the table
        # when it was due (`CheckpointStore.prepare`), so what is stepped meanwhile goes into the next one.
        writing: asyncio.Task | None = None
        try:
            while not w.stopping and not part.stopping and not part.lost:
                try:
                    msgs = await sub.fetch(w.settings.max_batch, timeout=0.2)
                except (TimeoutError, NatsTimeout):
                    msgs = []
                fresh, positions = [], []
                for m in msgs:
                    position = stream_position(m.reply)
                    if position[0] <= applied:
                        w.counters["skipped"] += 1
                        continue
                    applied = position[0]
                    fresh.append(m)
                    positions.append(position)
                if fresh:
                    w.counters["received"] += len(fresh)
                    if w.histograms is not None:
                        w.histograms.batch_size.observe(len(fresh))
                    w.answers.step(table, fresh, positions)
                    await self._send()
                    last_msg = fresh[-1]
                    self._crash_test_hook("stepped")
                if writing is not None and writing.done():
                    point, writing = writing.result(), None  # a fence or a lost connection surfaces here
                if (
                    writing is None  # one at a time, each extending the last; a slow one postpones the next
                    and applied > covered
                    and time.monotonic() - checkpointed_at >= w.settings.checkpoint_interval_s
                ):
                    # Idle devices go with the checkpoint, on the stream's clock. A device past its TTL restarts
                    # from zero at its next reading whether or not this sweep ran (StateTable.slot), so sweeping
                    # at wall-clock moments never makes a replay differ.
                    table.evict_idle(stream_position(last_msg.reply)[1] / 1e9)
                    pending = w.checkpoints.prepare(table, applied, point)
                    writing = asyncio.create_task(self._checkpoint(p, pending, last_msg))
                    covered, checkpointed_at = applied, time.monotonic()
            if writing is not None:
                point, writing = await writing, None
            if applied > covered and not part.lost:  # stopping or released: durable before letting go
                await self._checkpoint(p, w.checkpoints.prepare(table, applied, point), last_msg)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone
                pass
        if part.stopping:
            await w.group.release(part)
            log.info("partition %d released at stream sequence %d", p, applied)

    async def _checkpoint(self, p: int, pending: Pending, last_msg: Any) -> Checkpoint:
        """Write a prepared checkpoint, then acknowledge the stream up to the reading it covers."""
        w = self.worker
        # Predictions first: once the state is durable their readings are never replayed.
        await w.nc.flush()
        began = time.monotonic()
        point = await w.checkpoints.write(p, pending)
        w.last_checkpoint = time.monotonic()
        if w.histograms is not None:
            w.histograms.snapshot_seconds.observe(w.last_checkpoint - began)
        w.counters["checkpoints"] += 1
        w.counters["checkpoint_bytes"] += point.last_bytes
        w.counters["last_checkpoint_bytes"] = point.last_bytes
        self._crash_test_hook("checkpointed")
        if last_msg is not None:
            await last_msg.ack()  # AckAll: every reading up to `seq` is done with
        return point

    def _crash_test_hook(self, point: str) -> None:
        if point == self._crash_point:
            self._crash_countdown -= 1
            if self._crash_countdown <= 0:
                log.warning("%s=%s: SIGKILL at %r", CRASH_ENV, os.environ.get(CRASH_ENV), point)
                os.kill(os.getpid(), signal.SIGKILL)

    async def _send(self) -> None:
        w = self.worker
        outbox, w.answers.outbox = w.answers.outbox, []
        publish = w.nc.publish
        for subject, payload in outbox:
            await publish(subject, payload)
