"""WorkerPool, parallel_map and ErrorTracker (local)."""

import asyncio
import threading
import time

import pytest

from topdeck_resilience.resilience import ErrorTracker
from topdeck_resilience.worker_pool import WorkerPool, WorkerPoolConfig, parallel_map


async def test_map_keeps_order_bounds_concurrency_and_tracks_failures() -> None:
    running = peak = 0

    async def work(i):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02 * (5 - i % 5))
        running -= 1
        if i % 4 == 3:
            raise ValueError(f"item {i}")
        return i * 10

    pool = WorkerPool(WorkerPoolConfig(max_workers=3))
    got = await pool.map(work, range(10))
    assert got == [i * 10 for i in range(10) if i % 4 != 3]
    assert peak == 3
    s = pool.get_summary()
    assert (s["total"], s["success"], s["failure"]) == (10, 8, 2) and pool.has_errors()
    assert {e["item_id"] for e in s["errors"]} == {"3", "7"} and s["errors"][0]["error_type"] == "ValueError"


async def test_timeout_and_task_timeout_alias() -> None:
    async def slow(x):
        await asyncio.sleep(x)
        return x

    pool = WorkerPool(WorkerPoolConfig(max_workers=5, task_timeout=0.3))
    assert pool.config.timeout == 0.3
    t0 = time.monotonic()
    assert await pool.map(slow, [0.01, 3.0, 0.02]) == [0.01, 0.02]
    assert time.monotonic() - t0 < 2.0
    assert pool.get_summary()["errors"][0]["error_type"] == "TimeoutError"
    assert await parallel_map(slow, [0.03, 0.01], max_workers=2, timeout=1) == [0.03, 0.01]
    with pytest.raises(ValueError):
        WorkerPoolConfig(timeout=1, task_timeout=2)
    with pytest.raises(ValueError):
        WorkerPoolConfig(max_workers=0)


async def test_execute_sync_callables_and_all_failed() -> None:
    pool = WorkerPool(WorkerPoolConfig(max_workers=2, continue_on_error=False))
    got = await pool.execute([lambda a, b=0: a + b, threading.get_ident], [(1,), ()], [{"b": 2}, {}])
    assert got[0] == 3 and got[1] != threading.get_ident()  # a sync callable runs in a worker thread

    async def bad(_):
        raise RuntimeError()

    with pytest.raises(RuntimeError, match="All 2 tasks failed"):
        await pool.map(bad, [1, 2])
    with pytest.raises(ValueError):
        await pool.execute([bad], [(), ()])


def test_error_tracker_across_threads() -> None:
    t = ErrorTracker()

    def work(n):
        for i in range(100):
            if i % 10 == 0:
                t.record_error(f"{n}-{i}", KeyError(i), {"n": n})
            else:
                t.record_success(f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    s = t.get_summary()
    assert (s["total"], s["success"], s["failure"]) == (400, 360, 40) and s["error_rate"] == 0.1
    assert t.has_errors() and s["errors"][0]["context"]["n"] in range(4)
    t.raise_if_all_failed()
    t.reset()
    assert not t.has_errors() and t.get_summary()["total"] == 0
    t.record_error("x", ValueError())
    with pytest.raises(RuntimeError):
        t.raise_if_all_failed()
