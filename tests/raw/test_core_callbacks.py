"""Callback delivery under load, on both backends: bursts of thousands of operation completions
and events from the library's threads into Python handlers.

Nothing is lost or delivered twice, events of one handle arrive in the order the library
produced them (even when many handles interleave), nothing is delivered for a handle after it
was closed, and memory returns to where it was: the registry, the native queue and the
library's live documents and operations.
"""

from __future__ import annotations

import collections
import gc
import json
import threading
import tracemalloc
from types import ModuleType
from typing import Any

import pytest

from pyhcs._native import _dispatch
from pyhcs._native._types import EventOptions, EventType, HcsEvent

from rawutil import container_config, new_id, operation, wait

N_OPERATIONS = 3000
N_SYSTEMS = 40


def _settings(hcs: ModuleType, property_type: str, settings: object) -> None:
    hcs.hcs_modify_service_settings(json.dumps({"PropertyType": property_type, "Settings": settings}))


def _emulator_stats(hcs: ModuleType) -> dict[str, Any]:
    doc = json.loads(hcs.hcs_get_service_properties(json.dumps({"PropertyTypes": ["EmulatorStatistics"]})))
    stats: dict[str, Any] = doc["Properties"][0]
    return stats


def _dispatcher(hcs: ModuleType) -> _dispatch.Dispatcher:
    d: _dispatch.Dispatcher = hcs._api._dispatcher if hasattr(hcs, "_api") else hcs._dispatcher
    return d


# A bound for a broken build, never a measurement: every wait below ends as soon as the
# awaited deliveries have happened.
BOUND_S = 60.0


def _burst(hcs: ModuleType, n: int) -> None:
    """n operations completing on library threads into one Python handler; all accounted for."""
    seen: collections.Counter[int] = collections.Counter()
    contexts: dict[int, int] = {}
    cond = threading.Condition()

    def handler(op: int, ctx: int) -> None:
        with cond:
            seen[op] += 1
            contexts[op] = ctx
            cond.notify_all()

    ops = [hcs.hcs_create_operation(i + 1, handler) for i in range(n)]
    try:
        for op in ops:
            hcs.hcs_enumerate_compute_systems(None, op)
        # The library wakes an operation's waiters before it calls the operation's callback,
        # so wait for the deliveries themselves; then flush, so a duplicate would show.
        with cond:
            cond.wait_for(lambda: len(seen) == n, BOUND_S)
        assert hcs.flush_callbacks(BOUND_S)
        assert set(seen) == set(ops), f"{len(set(ops) - set(seen))} completions lost"
        assert max(seen.values()) == 1, "a completion was delivered twice"
        assert [contexts[op] for op in ops] == list(range(1, n + 1))
    finally:
        for op in ops:
            hcs.hcs_close_operation(op)


def test_burst_of_operation_completions(hcs: ModuleType) -> None:
    # A small delay sends every operation through the library's worker threads, so the
    # completions race each other and the dispatcher.
    _settings(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsEnumerateComputeSystems", "DelayMs": 1}]})
    _burst(hcs, N_OPERATIONS)


def test_memory_returns_to_baseline_after_bursts(hcs: ModuleType) -> None:
    _settings(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsEnumerateComputeSystems", "DelayMs": 1}]})
    dispatcher = _dispatcher(hcs)
    _burst(hcs, 1000)  # warm up: threads, caches, the registry's dicts at their peak size
    entries = dispatcher.live_entries()
    stats = _emulator_stats(hcs)
    traced: list[int] = []
    tracemalloc.start()
    try:
        for _ in range(6):
            _burst(hcs, 1000)
            _burst(hcs, 1)  # the dispatcher keeps its last batch until the next one arrives
            gc.collect()
            traced.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # Bounded, not growing: the registry's dicts keep the capacity of the peak, but every
    # notification's Python objects are gone once delivered. (A leak of one small tuple per
    # notification would add about 100 kB per burst, 400 kB between the 2nd and 6th.)
    assert traced[-1] < traced[1] + 64 * 1024, traced
    assert dispatcher.live_entries() == entries
    after = _emulator_stats(hcs)
    assert after["Operations"] == stats["Operations"]
    assert after["Documents"] == stats["Documents"]
    if hasattr(hcs, "_queue_stats"):
        # The native queue holds only what is pending: nothing, now.
        q = hcs._queue_stats()
        assert q["pending"] == 0 and q["dropped"] == 0, q
        assert q["high_water"] <= q["enqueued"]


def test_events_keep_their_order_per_handle(hcs: ModuleType) -> None:
    """Crashing many systems at once: each handle gets CrashInitiated, CrashReport, Exited and
    the crash operation's completion, in that order, interleaved with the other handles'."""
    expected = [
        EventType.SYSTEM_CRASH_INITIATED,
        EventType.SYSTEM_CRASH_REPORT,
        EventType.SYSTEM_EXITED,
        EventType.OPERATION_CALLBACK,
    ]
    events: dict[int, list[HcsEvent]] = collections.defaultdict(list)
    lock = threading.Condition()

    def handler(event: HcsEvent, ctx: int) -> None:
        with lock:
            events[ctx].append(event)
            lock.notify_all()

    systems: list[tuple[int, str]] = []
    crash_ops: list[int] = []
    try:
        with operation(hcs) as op:
            for _ in range(N_SYSTEMS):
                sid = new_id("order")
                h = hcs.hcs_create_compute_system(sid, container_config(), op)
                systems.append((h, sid))
                wait(hcs, op)
                hcs.hcs_start_compute_system(h, op)
                wait(hcs, op)
        for i, (h, _) in enumerate(systems):
            hcs.hcs_set_compute_system_callback(h, EventOptions.ENABLE_OPERATION_CALLBACKS, i, handler)
        for h, _ in systems:
            crash_op = hcs.hcs_create_operation()
            crash_ops.append(crash_op)
            hcs.hcs_crash_compute_system(h, crash_op)  # runs on a library thread: they interleave
        for crash_op in crash_ops:
            wait(hcs, crash_op)
        with lock:
            lock.wait_for(lambda: sum(len(v) for v in events.values()) >= len(expected) * N_SYSTEMS, BOUND_S)
        assert hcs.flush_callbacks(BOUND_S)
        with lock:
            for i, (_, sid) in enumerate(systems):
                got = events[i]
                assert [e.type for e in got] == expected, (i, got)
                # Event data was copied while the library owned it, for the right handle.
                report = json.loads(got[1].event_data or "{}")
                assert report.get("SystemId") == sid
                assert got[3].operation == crash_ops[i]
    finally:
        for h, _ in systems:
            hcs.hcs_close_compute_system(h)
        for crash_op in crash_ops:
            hcs.hcs_close_operation(crash_op)


def test_nothing_is_delivered_after_close(hcs: ModuleType) -> None:
    _settings(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsEnumerateComputeSystems", "DelayMs": 1}]})
    closed: set[int] = set()
    late: list[int] = []
    delivered: list[int] = []
    lock = threading.Condition()

    def handler(op: int, ctx: int) -> None:
        with lock:
            if op in closed:
                late.append(op)
            delivered.append(op)
            lock.notify_all()

    ops = [hcs.hcs_create_operation(i, handler) for i in range(1000)]
    for op in ops:
        hcs.hcs_enumerate_compute_systems(None, op)
    for op in ops[::2]:
        hcs.hcs_close_operation(op)  # returns once no delivery of it is running
        with lock:
            closed.add(op)
    with lock:
        lock.wait_for(lambda: set(ops[1::2]) <= set(delivered), BOUND_S)
    assert hcs.flush_callbacks(BOUND_S)
    for op in ops[1::2]:
        hcs.hcs_close_operation(op)
    assert late == []
    assert set(ops[1::2]) <= set(delivered)


def test_a_raising_handler_does_not_stop_delivery(hcs: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    _settings(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsEnumerateComputeSystems", "DelayMs": 1}]})
    delivered: list[int] = []
    cond = threading.Condition()

    def handler(op: int, ctx: int) -> None:
        with cond:
            delivered.append(ctx)
            cond.notify_all()
        if ctx % 2:
            raise RuntimeError("handler failure")

    ops = [hcs.hcs_create_operation(i, handler) for i in range(50)]
    try:
        with caplog.at_level("ERROR", logger="pyhcs"):
            for op in ops:
                hcs.hcs_enumerate_compute_systems(None, op)
            with cond:
                cond.wait_for(lambda: len(delivered) == 50, BOUND_S)
            assert hcs.flush_callbacks(BOUND_S)
        assert sorted(delivered) == list(range(50))
        assert sum("a callback raised" in r.getMessage() for r in caplog.records) == 25
    finally:
        for op in ops:
            hcs.hcs_close_operation(op)
