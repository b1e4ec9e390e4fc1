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

The command line — `rnnzoo worker`'s flags and running one or several worker processes — is
`streaming.worker_cli`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streaming.answers import Answers
from streaming.checkpoint import CheckpointStore
from streaming.core import (
    REJECTED_DEVICE,
    DevicePolicy,
    ModelStats,
    PredictionEncoder,
    Stats,
    table_counters,
    wave_index,
)
from streaming.endpoint import STALLED_AFTER_S, Heartbeat, readiness, start_endpoint
from streaming.jetstream import Layout, ensure_stream, token_safe
from streaming.leases import Leases, Partition
from streaming.partition import CRASH_ENV, PartitionConsumer, stream_position
from streaming.payloads import DEFAULT_MAX_BYTES
from zoo.step import one_blas_thread

if TYPE_CHECKING:
    from streaming.health import HealthServer
    from streaming.metrics import ServiceHistograms

log = logging.getLogger("streaming.worker")

__all__ = [
    "CRASH_ENV",
    "PredictionEncoder",
    "Worker",
    "WorkerSettings",
    "stream_position",
    "wave_index",
    "REJECTED_DEVICE",
]


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
    runtime: str = "numpy"  # "onnx" / "litert": the model's exported step graph, as `rnnzoo serve --runtime`
    mode: str = "step"  # "window" (or "auto": window when the model is not causal), as `rnnzoo serve --mode`
    window: int | None = None  # W of window mode
    metrics_port: int | None = None  # serve /metrics, /healthz, /readyz on this port (0: any free port)
    metrics_host: str = "127.0.0.1"
    ttl_s: float | None = 3600.0  # stream seconds a device may be idle before its state is forgotten
    max_new_devices_per_s: float | None = 1000.0  # admission cap on churn (the MQTT mode's policy)
    max_device_id_bytes: int = 128
    max_payload_bytes: int = DEFAULT_MAX_BYTES
    max_age_s: float | None = None  # readings kept in the stream (None: until the stream limits)
    output_subject: str = "predictions.{device}.{model}"
    error_subject: str = "errors.{device}"
    connect_timeout_s: float = 10.0
    max_refusals: int = 3  # start-up gives up after this many refused connections (credentials, TLS)
    connect_options: dict[str, Any] = field(default_factory=dict)  # user, password, token, tls (nats-py)

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = token_safe(f"{socket.gethostname()}-{os.getpid()}")

    @property
    def policy(self) -> DevicePolicy:
        """The device policy, shared with the MQTT service (`streaming.core`)."""
        return DevicePolicy(
            self.max_devices, self.ttl_s, self.max_new_devices_per_s, self.max_device_id_bytes
        )


class Worker:
    """A group member: claims partitions, steps their readings, checkpoints, acknowledges.

    Args:
        settings: the worker's settings.
        served: the served model (`streaming.models.serve_model`); must stream in step mode.
    """

    def __init__(self, settings: WorkerSettings, served: Any):
        self.settings = settings
        self.layout = settings.layout
        self.served = served
        self.engine = served.engine
        self.model_token = token_safe(served.name)
        self.group: Leases | None = None  # this member's leases, once connected (`streaming.leases`)
        self.answers = Answers(settings, served, self.layout)
        self.counters = self.answers.counters  # one dict: the answers count readings, the worker checkpoints
        self._log_budget = self.answers._log_budget
        self.exit_code = 0
        self._stop = asyncio.Event()
        self.nc: Any = None
        self.heartbeat = Heartbeat("the worker loop", max(STALLED_AFTER_S, settings.lease_ttl_s))
        self.histograms: ServiceHistograms | None = None  # /metrics' histograms, when a metrics port is set
        self.http: HealthServer | None = None
        if settings.metrics_port is not None:
            from streaming.metrics import ServiceHistograms

            self.histograms = ServiceHistograms()
            self.answers.step_seconds, self.answers.latency_seconds = self.histograms.for_model(served.name)
        self.last_checkpoint: float | None = None  # monotonic time of the last checkpoint written
        self.partitions = PartitionConsumer(self)  # serves each owned partition (`streaming.partition`)

    # -- setup --------------------------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Connect (bounded refusals, jittered back-off: `streaming.natsconn`) and open the streams and
        buckets; False when stop() came first."""
        from nats.js.api import KeyValueConfig
        from nats.js.errors import BucketNotFoundError

        from streaming import natsconn

        self.nc = await natsconn.connect(
            self.settings.nats_url,
            self._stop,
            self.settings.connect_timeout_s,
            self.settings.max_refusals,
            name=f"rnnzoo-worker-{self.settings.worker_id}",
            **self.settings.connect_options,
        )
        if self.nc is None:
            return False
        self.js = self.nc.jetstream(timeout=5.0)
        await ensure_stream(self.js, self.layout, self.settings.max_age_s)

        async def bucket(name: str, ttl: float | None) -> Any:
            try:
                return await self.js.key_value(name)
            except BucketNotFoundError:
                return await self.js.create_key_value(KeyValueConfig(bucket=name, history=1, ttl=ttl))

        self.leases = await bucket(self.layout.lease_bucket, self.settings.lease_ttl_s)
        self.group = Leases(
            self.leases, self.layout, self.settings.worker_id, self.settings.lease_ttl_s, self._stop
        )
        # Entries come back base64 in a JSON reply when read: 60% of the max payload leaves room for that.
        self.checkpoints = CheckpointStore(
            self.js,
            self.layout.changelog_stream,
            self.layout.changelog_subject,
            self.engine.fingerprint,
            chunk_bytes=int(self.nc.max_payload * 0.6),
            max_id_bytes=self.settings.max_device_id_bytes,
        )
        await self.checkpoints.ensure(self.layout.changelog_subjects)
        return True

    # -- run ----------------------------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until stop(): rebalance every third of the lease TTL; on stop checkpoint and release all."""
        one_blas_thread()
        self.heartbeat.running = True
        try:
            if self.settings.metrics_port is not None:
                self.http = start_endpoint(
                    self.settings.metrics_host,
                    self.settings.metrics_port,
                    self,
                    self.liveness,
                    self.readiness,
                )
            await self._run(ready)
        finally:
            self.heartbeat.running = False
            if self.http is not None:
                self.http.stop()

    async def _run(self, ready: asyncio.Event | None) -> None:
        if not await self.connect():
            return  # stopped (SIGTERM) before a connection was made
        from streaming.natsconn import ReadLoopWatch

        watch = ReadLoopWatch(self.nc)
        log.info(
            "worker %s joined group %s (%d partitions, streams %s_P*)",
            self.settings.worker_id,
            self.layout.group,
            self.layout.partitions,
            self.layout.stream,
        )
        if ready is not None:
            ready.set()
        group = self.group
        renewer = asyncio.create_task(group.renew_forever())
        try:
            while not self._stop.is_set():
                self.heartbeat.beat()
                try:
                    await group.rebalance(lambda part: asyncio.create_task(self.partitions.serve(part)))
                except Exception as err:  # noqa: BLE001 - the server may be restarting; try next turn
                    log.warning("rebalance failed: %s: %s", type(err).__name__, err)
                for p, part in list(self.owned.items()):
                    if part.task is not None and part.task.done() and not part.stopping:
                        self.owned.pop(p, None)  # ended by itself; its lease will be claimed again
                if not await watch.check():
                    log.error(
                        "the NATS client stopped reading (no PONG to %d PINGs while connected); exiting so a "
                        "supervisor restarts this worker",
                        watch.misses,
                    )
                    self.exit_code = 1
                    self._stop.set()
                    for part in list(self.owned.values()):
                        part.lost = True  # no checkpoint through a dead connection: the successor replays
                try:
                    await asyncio.wait_for(self._stop.wait(), self.settings.lease_ttl_s / 3)
                except TimeoutError:
                    pass
            for part in list(self.owned.values()):
                part.stopping = True
            tasks = [part.task for part in self.owned.values() if part.task is not None]
            await asyncio.wait(tasks, timeout=10) if tasks else None
            await renewer
            await group.leave()
        finally:
            try:
                await asyncio.wait_for(self.nc.drain(), 10)
            except Exception:  # noqa: BLE001 - a dead connection cannot drain
                await self.nc.close()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """stop() was called (or the client went deaf): every partition checkpoints and ends."""
        return self._stop.is_set()

    def liveness(self) -> tuple[bool, str]:
        """(alive, why) for /healthz: the worker's loop runs and went round lately (`Heartbeat`)."""
        return self.heartbeat.liveness()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why) for /readyz: connected to the server and a member of the group."""
        from streaming.natsconn import safe_url

        missing = []
        if not self.heartbeat.running:
            missing.append("the worker loop is not running")
        if self.nc is None or not self.nc.is_connected:
            missing.append(f"not connected to {safe_url(self.settings.nats_url)}")
        elif self.group is None:
            missing.append("not a member of the group yet")
        return readiness(missing)

    @property
    def observer(self) -> Any:
        """The live page's feed (`streaming.live.LiveFeed`, `--ui`), told of every answer; None: off."""
        return self.answers.observer

    @observer.setter
    def observer(self, feed: Any) -> None:
        self.answers.observer = feed

    @property
    def owned(self) -> dict[int, Partition]:
        """The partitions this worker holds a lease on now."""
        return self.group.owned if self.group is not None else {}

    def stats(self) -> Stats:
        """What this worker has counted over the partitions it owns now (`streaming.core.Stats`, the MQTT
        service's shape)."""
        tables = [part.table for part in list(self.owned.values()) if part.table is not None]
        model = ModelStats(
            self.served.mode,
            readings=self.counters["readings"],
            predictions=self.counters["readings"],
            resets=self.counters["resets"],
        )
        for table in tables:
            model.add_table(table)
        return Stats(
            received=self.counters["received"],
            counters=table_counters(self.counters, tables),
            errors=dict(self.answers.refusals.errors),
            models={self.served.name: model},
            connected=bool(self.nc is not None and self.nc.is_connected),
            outgoing=len(self.answers.outbox),
            snapshot_age_s=None if self.last_checkpoint is None else time.monotonic() - self.last_checkpoint,
        )
