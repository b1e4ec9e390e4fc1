"""Answering a JetStream partition's fetched readings (`streaming.worker`): device ids checked, then parsed and
stepped through the shared core (`streaming.core.step_payloads`: one parse pass, admission, stale time stamps,
waves, finite guard, commit) — the MQTT service's path — and one prediction or error per reading queued in
stream order for the worker to publish. Nothing here touches the connection, the leases or the checkpoints."""

from __future__ import annotations

import logging
import time
from operator import itemgetter
from typing import Any

import numpy as np

from streaming.core import (
    REJECTED_DEVICE,
    Answering,
    ErrorAnswers,
    PredictionEncoder,
    refuse_device,
    step_payloads,
)
from streaming.jetstream import Layout, token_safe
from streaming.logs import LogBudget
from streaming.state import StateTable

log = logging.getLogger("streaming.worker")

# The fields of a route (`Answers._route`), for C-level passes over a batch's routes.
_DEVICE, _REFUSED, _RESET = itemgetter(0), itemgetter(1), itemgetter(3)

# Subjects whose device and prediction subject are remembered (~250 bytes each): a partition holds up to
# 100,000 devices, and a cache that empties at the fleet's own size misses on every reading.
ROUTE_CACHE = 250_000


class Answers(Answering):
    """One worker's answering of readings: its counters, refusals by reason, the route cache and the outbox.

    Args:
        settings: the worker's settings (`streaming.worker.WorkerSettings`).
        served: the served model (step mode).
        layout: the group's subjects.
    """

    def __init__(self, settings: Any, served: Any, layout: Layout):
        self.settings = settings
        self.layout = layout
        self.served = served
        self.engine = served.engine
        self.model_token = token_safe(served.name)
        self.counters: dict[str, int] = {
            "received": 0,
            "readings": 0,
            "resets": 0,
            "skipped": 0,
            "errors": 0,
            "checkpoints": 0,
            "checkpoint_bytes": 0,
            "last_checkpoint_bytes": 0,
        }
        self.outbox: list[tuple[str, bytes]] = []  # (subject, payload), published by the worker after a batch
        window = getattr(served.engine, "window", 0) if served.mode == "window" else 0
        self.encoder = PredictionEncoder(served.engine.n_outputs, served.class_names, window)
        self._log_budget = LogBudget(log)
        self.refusals = ErrorAnswers(
            self.counters,
            self._log_budget,
            log,
            lambda subject, body: self.outbox.append((subject, body.encode())),
            lambda device: settings.error_subject.format(device=token_safe(device)),
        )
        self._routes: dict[str, tuple[str, str | None, str, bool]] = {}
        # Set when metrics are on (`streaming.metrics.Histogram`): each engine call, and stream time to publish.
        self.step_seconds: Any = None
        self.latency_seconds: Any = None

    def step(self, table: StateTable, msgs: list[Any], positions: list[tuple[int, int]]) -> None:
        """Answer one fetched batch in stream order: its readings stepped (`_step_guarded`), a reset applied
        between the readings before and after it, as the MQTT service does."""
        # The common case inline: a method call per reading costs more than the lookup.
        cached = self._routes.get
        routes = [cached(m.subject) or self._route(m.subject) for m in msgs]
        start = 0
        if self.layout.reset_subject is not None and any(map(_RESET, routes)):
            for i, route in enumerate(routes):
                if route[3]:  # a reset
                    if i > start:
                        self._step_guarded(table, msgs[start:i], positions[start:i], routes[start:i])
                    try:
                        self._reset(table, route, positions[i][0], msgs[i].subject)
                    except Exception as err:  # noqa: BLE001 - a bug must not wedge the partition
                        self.error(
                            REJECTED_DEVICE,
                            repr(msgs[i].subject)[:200],
                            positions[i][0],
                            "internal error",
                            type(err).__name__,
                        )
                    start = i + 1
        if start == 0:
            self._step_guarded(table, msgs, positions, routes)
        elif start < len(msgs):
            self._step_guarded(table, msgs[start:], positions[start:], routes[start:])

    def _reset(self, table: StateTable, route: tuple, seq: int, subject: str) -> None:
        """Drop a device's state (a message on its reset subject); a refused id is answered as a reading's."""
        device, refused = route[0], route[1]
        if refused is not None:
            shown = subject if refused != "device id is not valid UTF-8" else ascii(subject)
            self.error(REJECTED_DEVICE, shown[:200], seq, "bad device id", refused)
        elif table.remove(device):
            self.counters["resets"] += 1

    def _step_guarded(
        self, table: StateTable, msgs: list[Any], positions: list[tuple[int, int]], routes: list[tuple]
    ) -> None:
        """`_step_batch`, and should anything in it raise before a state changed: each message alone, the one
        that fails answered "internal error" — never an exception that would replay the batch for ever."""
        try:
            self._step_batch(table, msgs, positions, routes)
            return
        except Exception as err:  # noqa: BLE001 - a bug must not wedge the partition
            if self._log_budget.allow("internal error"):
                log.warning("a batch of %d readings failed (%s); stepping them one by one", len(msgs), err)
        for i, msg in enumerate(msgs):
            try:
                self._step_batch(table, [msg], [positions[i]], [routes[i]])
            except Exception as err:  # noqa: BLE001
                self.error(
                    REJECTED_DEVICE,
                    repr(msg.subject)[:200],
                    positions[i][0],
                    "internal error",
                    type(err).__name__,
                )

    def _step_batch(
        self, table: StateTable, msgs: list[Any], positions: list[tuple[int, int]], routes: list[tuple]
    ) -> None:
        """Parse and step one fetched batch (stream order; `positions` their (sequence, time in ns)) through the
        shared core (`streaming.core.step_payloads`: admission, stale time stamps, waves, finite guard, commit)
        and queue one prediction per reading, in stream order. A bad reading is answered on the error subject
        and counts as done."""

        def refuse(j: int, subject: str, reason: str, detail: str) -> None:
            self.error(routes[j][0], subject, positions[j][0], reason, detail)

        n = len(msgs)
        if any(map(_REFUSED, routes)):
            accepted = [j for j, route in enumerate(routes) if route[1] is None]  # acceptable device ids
            devices = [routes[j][0] for j in accepted]
        else:  # the common batch: every id acceptable (C-level passes, no index lists)
            accepted, devices = list(range(n)), list(map(_DEVICE, routes))
        if len(accepted) < n:
            for j, (_, refused, _, _) in enumerate(routes):
                if refused is not None:
                    subject = msgs[j].subject
                    shown = subject if refused != "device id is not valid UTF-8" else ascii(subject)
                    self.error(REJECTED_DEVICE, shown[:200], positions[j][0], "bad device id", refused)
        # The stream's timestamps, not the wall clock: a replay must see the same times (TTL and admission too).
        got = step_payloads(
            self.engine,
            table,
            devices,
            [msgs[j].data for j in accepted],
            now=positions[-1][1] / 1e9,
            max_bytes=self.settings.max_payload_bytes,
            seen=[positions[j][1] / 1e9 for j in accepted],
            step_timer=self.step_seconds.observe if self.step_seconds is not None else None,
        )
        batch, done = got.batch, got.done
        for i, err in batch.errors.items():
            refuse(accepted[i], msgs[accepted[i]].subject, err.reason, err.detail)
        whole = len(batch.source) == len(accepted) and not batch.errors  # one reading a message
        owner = accepted if whole else [accepted[i] for i in batch.source]  # the message of each reading
        for k, reason, detail in done.refusals:
            if reason == "internal error" and self._log_budget.allow("internal error"):
                log.error("stepping a wave failed (%s); the partition goes on", detail)
            refuse(owner[k], msgs[owner[k]].subject, reason, detail)
        every = not done.refusals  # every reading stepped
        keep = list(range(len(owner))) if every else np.flatnonzero(done.ok).tolist()
        if not keep:
            return
        source = owner if every else [owner[k] for k in keep]
        try:  # the states are committed: from here on nothing may raise (a retry would step them twice)
            plain = batch.t.count(None) == len(batch.t) and batch.part.count(-1) == len(batch.part)
            bodies = self.encoder.encode(
                [positions[j][0] for j in source],
                (done.steps if every else done.steps[keep]).tolist(),
                done.outputs if every else done.outputs[keep],
                None if plain else [batch.part[k] for k in keep],
                None if plain else [batch.t[k] for k in keep],
            )
        except Exception as err:  # noqa: BLE001
            for j in source:
                refuse(j, "", "internal error", type(err).__name__)
            return
        self.outbox += [(routes[j][2], body) for j, body in zip(source, bodies, strict=True)]
        if self.observer is not None:  # the live page: (devices, steps, outputs, readings) of this batch
            self.observer.predictions(
                self.served.name,
                [routes[j][0] for j in source],
                done.steps[keep],
                done.outputs[keep],
                batch.values[keep],
            )
        self.counters["readings"] += len(keep)
        if self.latency_seconds is not None:  # from the time the stream stored each reading
            stored = np.array([positions[j][1] / 1e9 for j in source], dtype=np.float64)
            self.latency_seconds.observe_latencies(stored, time.time())

    def _route(self, subject: str) -> tuple[str, str | None, str, bool]:
        """(device, why its id is refused or None, its predictions' subject, whether it is a reset) for a
        message's subject. Cached: a device sends on one subject again and again; a flood of made-up ids only
        empties the cache."""
        route = self._routes.get(subject)
        if route is None:
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            device = self.layout.device_of(subject)
            out = self.settings.output_subject.format(device=device, model=self.model_token)
            reset = self.layout.is_reset(subject)
            route = self._routes[subject] = (device, self._refuse_device(device), out, reset)
        return route

    def _refuse_device(self, device: str) -> str | None:
        return refuse_device(device, self.settings.max_device_id_bytes)

    def error(self, device: str, subject: str, seq: int, reason: str, detail: str) -> None:
        """Answer a refused reading on the error subject (`streaming.core.ErrorAnswers`, with its stream
        sequence); the reading counts as done (acknowledged with the next checkpoint), so a poison message
        never blocks its partition."""
        self.refusals.answer(device, subject, reason, detail, self.served.name, seq=seq)
