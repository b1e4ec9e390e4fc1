"""Who serves which partition in a JetStream worker group: leases in a key-value bucket (`streaming.worker`).

A lease per partition, `partition.<p>`, whose entry expires after the bucket's TTL; claimed with create
(succeeds only if nobody holds it), renewed by compare-and-set every quarter of the TTL. Each member also keeps a
`member.<id>` heartbeat and takes ceil(P / members) partitions: a joining member makes the others release their
extras (they checkpoint first), a dead one's leases expire and the others claim them. A lease alone cannot stop a
paused member that does not yet know it lost its partition; the checkpoint's compare-and-set can
(`streaming.checkpoint`), so two owners never both extend a state.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streaming.jetstream import Layout

log = logging.getLogger("streaming.worker")


@dataclass
class Partition:
    """One owned partition at run time."""

    index: int
    lease_revision: int
    task: asyncio.Task | None = None
    table: Any = None  # its StateTable once loaded
    stopping: bool = False  # release asked: checkpoint, then end
    lost: bool = False  # lease lost: end at once, without a checkpoint


class Leases:
    """This member's leases and heartbeat in the group's bucket.

    Args:
        kv: the group's key-value bucket (nats-py KeyValue), entries expiring after `ttl_s`.
        layout: the group's partitions.
        worker_id: this member's id (a subject-safe token).
        ttl_s: the bucket's TTL: a lease not renewed this long is free.
        stop: set when the worker stops.
    """

    def __init__(self, kv: Any, layout: Layout, worker_id: str, ttl_s: float, stop: asyncio.Event):
        self.kv, self.layout, self.worker_id, self.ttl_s, self.stop = kv, layout, worker_id, ttl_s, stop
        self.owned: dict[int, Partition] = {}
        self.member_count = 1

    async def members(self) -> int:
        from nats.js.errors import NoKeysError

        try:
            keys = await self.kv.keys()  # NATS 2.9 ignores a key filter: filter here
        except NoKeysError:
            keys = []
        members = {k for k in keys if k.startswith("member.")}
        return len(members | {f"member.{self.worker_id}"})

    async def renew(self) -> None:
        """Renew every owned lease, concurrently; a refused renewal means another member owns it now."""
        from nats.js.errors import KeyWrongLastSequenceError

        wid = self.worker_id.encode()
        parts = [part for part in self.owned.values() if not part.stopping and not part.lost]

        async def one(part: Partition) -> None:
            try:
                part.lease_revision = await self.kv.update(
                    f"partition.{part.index}", wid, last=part.lease_revision
                )
            except KeyWrongLastSequenceError:
                log.warning("lost the lease of partition %d; dropping it without a checkpoint", part.index)
                self.drop(part.index)

        await asyncio.gather(*(one(part) for part in parts))

    async def renew_forever(self) -> None:
        """`renew` every quarter of the TTL on its own timer, so a slow membership count never makes a lease
        late."""
        while not self.stop.is_set():
            try:
                await self.renew()
            except Exception as err:  # noqa: BLE001 - the server may be restarting; try next turn
                log.warning("lease renewal failed: %s: %s", type(err).__name__, err)
            try:
                await asyncio.wait_for(self.stop.wait(), self.ttl_s / 4)
            except TimeoutError:
                pass

    async def rebalance(self, serve: Callable[[Partition], asyncio.Task]) -> None:
        """One turn: heartbeat, release extras, claim free partitions up to the fair share; `serve(part)`
        starts the task that serves a newly claimed one."""
        from nats.js.errors import KeyWrongLastSequenceError

        wid = self.worker_id.encode()
        await self.kv.put(f"member.{self.worker_id}", wid)
        try:
            self.member_count = await asyncio.wait_for(self.members(), self.ttl_s / 3)
        except TimeoutError:
            log.warning("counting the group's members timed out; keeping %d", self.member_count)
        share = math.ceil(self.layout.partitions / self.member_count)
        active = [p for p, part in self.owned.items() if not part.stopping]
        for p in sorted(active)[share:]:
            log.info("releasing partition %d (fair share is %d)", p, share)
            self.owned[p].stopping = True
        if len(active) >= share:
            return
        # Start the search at an offset of our own, so members starting together try different partitions.
        offset = hash(self.worker_id) % self.layout.partitions
        for i in range(self.layout.partitions):
            if len([x for x in self.owned.values() if not x.stopping]) >= share:
                break
            p = (offset + i) % self.layout.partitions
            if p in self.owned:
                continue
            try:
                revision = await self.kv.create(f"partition.{p}", wid)
            except KeyWrongLastSequenceError:
                continue  # held by someone else
            part = Partition(p, revision)
            self.owned[p] = part
            part.task = serve(part)
            log.info("claimed partition %d", p)

    def drop(self, p: int) -> None:
        """Forget a partition whose lease is gone: its task ends at its next turn without a checkpoint (a flag,
        not a cancel: the client swallows cancellation inside a fetch). Were it to checkpoint anyway, the
        compare-and-set would refuse it once the new owner has written."""
        part = self.owned.pop(p, None)
        if part is not None:
            part.lost = True

    async def release(self, part: Partition) -> None:
        try:
            await self.kv.delete(f"partition.{part.index}", last=part.lease_revision)
        except Exception as err:  # noqa: BLE001 - an expired lease needs no release
            log.debug("release of partition %d: %s", part.index, err)
        self.owned.pop(part.index, None)

    async def leave(self) -> None:
        """Remove this member's heartbeat (after every partition was released)."""
        try:
            await self.kv.delete(f"member.{self.worker_id}")
        except Exception:  # noqa: BLE001
            pass
