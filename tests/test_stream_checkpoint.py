"""Changelog checkpoints (`streaming.checkpoint`) on a real nats-server: what changed is written, fenced,
chunked past the max payload, compacted, and read back byte for byte (device ids with NUL included)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streaming.checkpoint import CheckpointStore, Fenced, decode_entry, encode_entry
from streaming.jetstream import Layout, LocalNatsServer, find_nats_server
from streaming.state import SnapshotError, StateTable

try:
    find_nats_server()
except FileNotFoundError:
    pytest.skip("no nats-server binary", allow_module_level=True)

S = 16  # state width
ODD_IDS = ["a", "a\x00", "a\x00\x00", "\x00b", "ünï-😀", "x" * 120, "s\udcff"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LocalNatsServer(str(tmp_path_factory.mktemp("nats")), Layout(2, group="ck"), mqtt=False)
    srv.start()
    yield srv
    srv.stop()


def _table(ids: list[str], seed: int = 0) -> StateTable:
    rng = np.random.default_rng(seed)
    table = StateTable(S, max_devices=10**6)
    slots = np.array([table.slot(d, 1.0) for d in ids], dtype=np.int64)
    table.commit(slots, rng.normal(size=(len(ids), S)).astype(np.float32), 2.0, rng.normal(size=len(ids)))
    return table


def _same(a: StateTable, b: StateTable) -> None:
    ra, rb = a.rows(), b.rows()
    order_a, order_b = (
        np.argsort(np.array(ra["ids"], dtype=object)),
        np.argsort(np.array(rb["ids"], dtype=object)),
    )
    assert [ra["ids"][i] for i in order_a] == [rb["ids"][i] for i in order_b]
    for key in ("state", "steps", "last_seen", "last_t"):
        np.testing.assert_array_equal(ra[key][order_a], rb[key][order_b], err_msg=key)


def test_an_entry_round_trips_ids_byte_for_byte() -> None:
    table = _table(ODD_IDS)
    head, rows, removed = decode_entry(
        encode_entry({"fingerprint": "f", "txn": 1}, table.rows(), ["gone\x00"]), "f", S
    )
    assert rows["ids"] == ODD_IDS and removed == ["gone\x00"]
    np.testing.assert_array_equal(rows["state"], table.rows()["state"])
    with pytest.raises(SnapshotError):
        decode_entry(encode_entry({"fingerprint": "other", "txn": 1}, table.rows(), []), "f", S)
    data = encode_entry({"fingerprint": "f", "txn": 1}, table.rows(), [])
    for bad in (data[:-1], data + b"x", b"garbage", data[:30]):
        with pytest.raises(SnapshotError):
            decode_entry(bad, "f", S)


async def _store(url: str, **kw) -> tuple[object, CheckpointStore]:
    import nats

    layout = Layout(2, group="ck")
    nc = await nats.connect(url)
    store = CheckpointStore(nc.jetstream(), layout.changelog_stream, layout.changelog_subject, "fp", **kw)
    await store.ensure(layout.changelog_subjects)
    return nc, store


def test_checkpoints_write_what_changed_fenced_and_load_back(server) -> None:
    async def scenario() -> None:
        nc, store = await _store(server.url)
        table = _table([f"dev{i}" for i in range(2000)] + ODD_IDS)
        point = await store.save(0, table, 10, await store.load(0, StateTable(S)))
        full = point.last_bytes
        # Three devices step, one is reset (removed): the next checkpoint holds those alone.
        slots = np.array([table.slot(d, 3.0) for d in ("dev1", "dev2", "a\x00")])
        table.commit(slots, np.ones((3, S), np.float32), 3.0)
        table.remove("dev3")
        point = await store.save(0, table, 20, point)
        assert point.last_bytes < 2000 < full / 10, (point.last_bytes, full)
        loaded = StateTable(S, max_devices=10**6)
        resumed = await store.load(0, loaded)
        assert resumed.seq == 20 and "dev3" not in loaded and len(loaded) == len(table)
        _same(loaded, table)
        # A second owner that loaded the same changelog writes first: the first is fenced off.
        other = await store.save(0, loaded, 25, resumed)
        with pytest.raises(Fenced):
            await store.save(0, table, 30, point)
        assert other.seq == 25
        await nc.close()

    asyncio.run(scenario())


def test_a_table_larger_than_one_message_is_chunked_and_an_interrupted_checkpoint_is_ignored(server) -> None:
    async def scenario() -> None:
        nc, store = await _store(server.url, chunk_bytes=20_000)
        table = _table([f"d{i}\x00" for i in range(1500)])  # ~130 kB: several chunks
        point = await store.save(1, table, 7, await store.load(1, StateTable(S)))
        # A crash in the middle of the next (chunked) checkpoint: its first chunks are there, no final one.
        table.commit(np.arange(1500), np.full((1500, S), 2.0, np.float32), 9.0)
        entries = store._chunks("delta", 99, point.revision, table.take_changes()[0], [])
        assert len(entries) > 2
        await store._append(1, entries[0], point.revision)
        loaded = StateTable(S, max_devices=10**6)
        resumed = await store.load(1, loaded)
        assert resumed.seq == 7
        _same(loaded, _table([f"d{i}\x00" for i in range(1500)]))
        # The next owner goes on from there: its checkpoint extends the committed state only.
        loaded.commit(np.array([loaded.slot("d0\x00", 10.0)]), np.zeros((1, S), np.float32), 10.0)
        point = await store.save(1, loaded, 12, resumed)
        again = StateTable(S, max_devices=10**6)
        assert (await store.load(1, again)).seq == 12
        _same(again, loaded)
        await nc.close()

    asyncio.run(scenario())


def test_deltas_are_compacted_into_a_snapshot_and_recovery_reads_only_from_it(server) -> None:
    async def scenario() -> None:
        nc, store = await _store(server.url)
        layout = Layout(2, group="ck")
        await store.js.purge_stream(layout.changelog_stream, subject=layout.changelog_subject(0))
        table = _table([f"c{i}" for i in range(300)])
        point = await store.load(0, StateTable(S))
        rng = np.random.default_rng(3)
        for k in range(40):  # every device changes each time: the deltas soon add up to a table
            table.commit(np.arange(300), rng.normal(size=(300, S)).astype(np.float32), 4.0 + k)
            point = await store.save(0, table, 100 + k, point)
        info = await store.js.stream_info(layout.changelog_stream)
        loaded = StateTable(S, max_devices=10**6)
        resumed = await store.load(0, loaded)
        assert resumed.seq == 139
        _same(loaded, table)
        # Compaction bounded what recovery reads: at most about two tables' worth, not 40 deltas.
        assert resumed.loaded_bytes <= 2.5 * point.last_bytes + 300 * (S * 4 + 80), resumed
        assert info.state.messages < 40
        await nc.close()

    asyncio.run(scenario())


def test_the_admission_cap_resumes_where_it_was_so_a_replay_admits_the_same_devices(server) -> None:
    """A full table under churn: the token bucket and the slots churn freed come back with the checkpoint, so
    the next owner refuses and admits newcomers exactly as the owner before it would have."""

    def capped() -> StateTable:
        return StateTable(S, max_devices=50, ttl_s=None, max_new_per_s=5.0)

    async def scenario() -> None:
        nc, store = await _store(server.url)
        layout = Layout(2, group="ck")
        await store.js.purge_stream(layout.changelog_stream, subject=layout.changelog_subject(1))
        table = capped()
        for i in range(50):
            table.slot(f"fleet{i}", 10.0)  # a fleet fills the room: no tokens spent
        churn = [table.slot(f"new{i}", 20.0 + i / 100) for i in range(8)]  # 5 admitted, then rate-limited
        assert sum(s >= 0 for s in churn) == 5
        point = await store.save(1, table, 30, await store.load(1, StateTable(S)))
        loaded = capped()
        resumed = await store.load(1, loaded)
        assert resumed.seq == 30 and loaded.admission() == table.admission()
        later = [(f"late{i}", 20.3 + i / 10) for i in range(20)]  # tokens come back at 5 a second
        admitted = [table.slot(d, t) >= 0 for d, t in later]
        assert [loaded.slot(d, t) >= 0 for d, t in later] == admitted
        assert 0 < sum(admitted) < len(admitted)  # some refused: a bucket restarted full would admit them
        assert point.seq == 30
        await nc.close()

    asyncio.run(scenario())


def test_an_impossible_admission_state_is_refused_and_another_cap_cuts_it() -> None:
    table = StateTable(S, max_devices=10, max_new_per_s=5.0)
    for bad in (
        {"tokens": -1.0, "tokens_at": 1.0, "churn": 0},
        {"tokens": 1.0, "tokens_at": float("nan"), "churn": 0},
        {"tokens": 1.0, "tokens_at": 1.0, "churn": 1.5},
        {"tokens": 1.0},
    ):
        with pytest.raises(SnapshotError):
            table.set_admission(bad)
    table.set_admission({"tokens": 900.0, "tokens_at": 3.0, "churn": 40})  # saved under a cap of 1000
    assert table.admission() == {"tokens": 5.0, "tokens_at": 3.0, "churn": 10}
