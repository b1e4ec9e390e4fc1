"""The transport-free core (streaming.core) that both the MQTT service and the JetStream worker step through:
device-id policy, admission, stale time stamps, waves, the finite guard and TTL — pinned here without a broker."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.core import DevicePolicy, admit, refuse_device, step_readings, wave_index
from streaming.state import StateTable


class Sum:
    """A one-feature engine whose state is the running sum and whose output is the state: easy to predict."""

    n_features, n_outputs, state_size, dtype = 1, 1, 1, np.dtype(np.float32)

    def advance(self, x: np.ndarray, state: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new = state + x
        return new.copy(), new


def run(table: StateTable, devices: list[str], values: list[float], t=None, now: float = 100.0):
    x = np.array(values, dtype=np.float32)[:, None]
    return step_readings(Sum(), table, devices, x, None if t is None else np.array(t, dtype=float), now)


def test_device_ids_refused_alike_in_both_transports() -> None:
    assert refuse_device("dev-1", 128) is None
    assert refuse_device("a\x00", 128) is None  # NUL is a valid id, kept byte for byte
    assert "too long" in refuse_device("x" * 129, 128)
    assert "reserved" in refuse_device("_batch", 128) and "reserved" in refuse_device("", 128)
    assert refuse_device("bad\udcff", 128) == "device id is not valid UTF-8"


def test_each_device_advances_in_arrival_order_in_waves() -> None:
    table = DevicePolicy(max_devices=10).table(Sum())
    done = run(table, ["a", "b", "a", "a", "b"], [1, 10, 2, 3, 20])
    assert done.ok.all() and not done.refusals
    assert done.outputs[:, 0].tolist() == [1, 10, 3, 6, 30]
    assert done.steps.tolist() == [0, 0, 1, 2, 1]
    assert wave_index(np.array([4, 4, 1])).tolist() == [0, 1, 0]


def test_stale_time_stamps_are_refused_within_a_batch_and_across_batches() -> None:
    table = DevicePolicy(max_devices=10).table(Sum())
    done = run(table, ["a", "a", "a", "b"], [1, 2, 3, 4], t=[5.0, 5.0, 6.0, np.nan])
    assert done.ok.tolist() == [True, False, True, True]
    assert [(i, r) for i, r, _ in done.refusals] == [(1, "stale timestamp")]
    later = run(table, ["a", "a"], [1, 1], t=[6.0, 7.0])
    assert later.ok.tolist() == [False, True] and later.outputs[1, 0] == 5  # 1 + 3 + 1


def test_a_fleet_fills_the_room_there_is_and_only_churn_pays_the_cap() -> None:
    table = DevicePolicy(max_devices=1000, ttl_s=None, max_new_per_s=10).table(Sum())
    fleet = [f"d{i}" for i in range(1000)]
    assert run(table, fleet, [1.0] * 1000).ok.all()  # 1,000 new devices at once, cap 10/s: all admitted
    churn = run(table, [f"new{i}" for i in range(50)], [1.0] * 50, now=101.0)
    reasons = {r for _, r, _ in churn.refusals}
    assert reasons == {"new device rate limit"} and 0 < churn.ok.sum() <= 20


def test_a_full_table_of_devices_seen_now_refuses_with_the_limit() -> None:
    table = DevicePolicy(max_devices=2, ttl_s=None, max_new_per_s=None).table(Sum())
    done = run(table, ["a", "b", "c"], [1, 1, 1])
    assert done.ok.tolist() == [True, True, False]
    assert done.refusals == [(2, "device limit reached", "max_devices=2")]


def test_a_non_finite_result_is_refused_and_the_state_kept() -> None:
    table = DevicePolicy(max_devices=10).table(Sum())
    run(table, ["a"], [1.0])
    done = run(table, ["a", "a"], [np.inf, 2.0])
    assert done.ok.tolist() == [False, True] and done.refusals[0][1] == "non-finite result"
    assert done.outputs[1, 0] == 3 and done.steps[1] == 1


def test_an_engine_failure_costs_its_wave_only() -> None:
    class Fails(Sum):
        def advance(self, x, state, steps):
            if len(x) == 1:
                raise RuntimeError("boom")
            return super().advance(x, state, steps)

    table = DevicePolicy(max_devices=10).table(Fails())
    x = np.ones((3, 1), np.float32)
    done = step_readings(Fails(), table, ["a", "b", "a"], x, None, 1.0)
    assert done.ok.tolist() == [True, True, False] and done.refusals == [
        (2, "internal error", "RuntimeError")
    ]


@pytest.mark.parametrize("sweep", [False, True])
def test_a_device_idle_past_its_ttl_restarts_whether_or_not_a_sweep_ran(sweep: bool) -> None:
    table = DevicePolicy(max_devices=10, ttl_s=10).table(Sum())
    run(table, ["a", "b"], [5, 5], now=100.0)
    run(table, ["b"], [1], now=105.0)
    if sweep:
        assert table.evict_idle(111.0) == ["a"]
    done = run(table, ["a", "b"], [1, 1], now=111.0)
    assert done.outputs[:, 0].tolist() == [1, 7] and done.steps.tolist() == [0, 2]


def test_stats_counters_add_the_tables_own_and_their_evictions() -> None:
    from streaming.core import table_counters

    a, b = StateTable(1), StateTable(1)
    a.counters.update(evicted_idle=2, refused_rate=1)
    b.counters.update(evicted_lru=3)
    merged = table_counters({"readings": 5}, [a, b])
    assert merged == {"readings": 5, "evicted_idle": 2, "refused_rate": 1, "evicted_lru": 3, "evicted": 5}


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.floats(0.0, 12.0)), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    ),
    per_row=st.booleans(),
)
def test_admission_in_vector_passes_equals_admission_row_by_row(batches, per_row: bool) -> None:
    """`admit` takes a batch of held devices in a few vector passes: the slots, seen times, dirty marks and TTL
    restarts must be exactly those of `StateTable.slot` row by row, whatever the repeats and gaps (d4 is a
    newcomer that evicts one, so some batches take the row-by-row path)."""
    fast, slow = (DevicePolicy(max_devices=4, ttl_s=10.0, max_new_per_s=None).table(Sum()) for _ in range(2))
    for table in (fast, slow):
        for d in range(4):
            table.slot(f"d{d}", 0.0)
    clock = 0.0
    for batch in batches:
        devices = [f"d{d}" for d, _ in batch]
        seen: list[float] | float = (
            sorted(clock + gap for _, gap in batch) if per_row else clock + batch[0][1]
        )
        clock = max(seen) if per_row else seen
        got, _ = admit(fast, devices, seen)
        want = [
            slow.slot(d, s) for d, s in zip(devices, seen if per_row else [seen] * len(devices), strict=True)
        ]
        assert got.tolist() == [w if w >= 0 else -1 for w in want]
        for name in ("last_seen", "dirty", "steps"):
            assert getattr(fast, name).tolist() == getattr(slow, name).tolist(), name
        assert np.array_equal(fast.last_t, slow.last_t, equal_nan=True)
        assert fast.counters == slow.counters and sorted(fast.devices()) == sorted(slow.devices())
