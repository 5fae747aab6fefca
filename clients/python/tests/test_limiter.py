"""RateLimiter and ResilienceClient.acquire against a real resilienced (embedded store)."""

import asyncio
import time

import pytest

import topdeck_resilience as tr
from topdeck_resilience.resilience import RateLimiter, with_rate_limit
from conftest import unique


async def test_acquire_until_empty_then_waits(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(max_calls=5, time_window=1.0, key=unique("lim"), client=client)
    for want in (4, 3, 2, 1, 0):
        d = await lim.acquire()
        assert d.allowed and d.remaining == want and not d.degraded and not d.local, d
    t0 = time.monotonic()
    d = await asyncio.wait_for(lim.acquire(), 5)  # the server holds the call for the next token
    took = time.monotonic() - t0
    assert d.allowed and 0.1 <= took <= 1.0 and d.waited > 0.1, (d, took)


async def test_max_wait_bounds_the_wait(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(1, 10.0, key=unique("lim"), client=client)
    assert await lim.try_acquire()
    assert not await lim.try_acquire()
    t0 = time.monotonic()
    with pytest.raises(tr.RateLimited) as ei:
        await lim.acquire(max_wait=0.2)
    assert time.monotonic() - t0 < 0.2
    assert 9 < ei.value.retry_after <= 10 and ei.value.key == lim.key and not ei.value.local
    assert ei.value.decision is not None and not ei.value.decision.allowed


async def test_deadline_bounds_an_unbounded_acquire(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(1, 10.0, key=unique("lim"), client=client)
    await lim.acquire()
    t0 = time.monotonic()
    with tr.deadline(0.3):
        assert tr.time_left() is not None
        with pytest.raises(tr.RateLimited):
            await lim.acquire()  # max_wait=None, but the deadline is 0.3 s and the token 10 s away
    assert time.monotonic() - t0 < 0.5
    assert tr.time_left() is None


async def test_unbounded_acquire_waits_in_chunks(client: tr.ResilienceClient, monkeypatch) -> None:
    # With a 0.2 s chunk, a token 0.5 s away takes a refusal and a sleep before the reservation.
    import topdeck_resilience.resilience as res

    monkeypatch.setattr(res, "_MAX_WAIT_CHUNK", 0.2)
    lim = RateLimiter(2, 1.0, key=unique("lim"), client=client)
    await lim.acquire(cost=2)
    t0 = time.monotonic()
    d = await asyncio.wait_for(lim.acquire(), 5)
    assert d.allowed and 0.3 < time.monotonic() - t0 < 1.5 and d.waited > 0.3


async def test_cancelled_acquire_cancels_the_held_call(server, client: tr.ResilienceClient) -> None:
    lim = RateLimiter(1, 1.0, key=unique("lim"), client=client)
    await lim.acquire()
    cid = unique("cancel")
    tr.set_correlation_id(cid)
    try:
        task = asyncio.ensure_future(lim.acquire(max_wait=5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        tr.set_correlation_id(None)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server saw the call end as cancelled, at once
        codes = [l.get("grpc.code") for l in server.lines() if l.get("correlation_id") == cid]
        if codes:
            break
        await asyncio.sleep(0.02)
    assert codes == ["Canceled"], codes


async def test_cancelled_acquire_gives_tokens_back(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(1, 1.0, key=unique("lim"), client=client)
    await lim.acquire()
    task = asyncio.ensure_future(lim.acquire(max_wait=5))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.0)  # the first token is back; the cancelled reservation must not hold the next
    assert await lim.try_acquire()


async def test_async_with_and_with_rate_limit(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(3, 60.0, key=unique("lim"), client=client)
    async with lim as d:
        assert d.allowed and d.remaining == 2
    assert await with_rate_limit(lim, lambda x: x * 2, 21) == 42

    async def coro(x):
        return x + 1

    assert await with_rate_limit(lim, coro, 1) == 2
    assert not await lim.try_acquire()


async def test_check_cost_and_dry_run(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(10, 60.0, key=unique("lim"), burst=4, client=client)
    d = await lim.check(cost=3, dry_run=True)
    assert d.allowed and d.remaining == 1
    d = await lim.check(cost=3)
    assert d.allowed and d.remaining == 1
    d = await lim.check(cost=2)
    assert not d.allowed and d.reason == tr.Reason.RATE_LIMITED and d.retry_after > 0
    with pytest.raises(tr.InvalidArgumentError) as ei:
        await lim.acquire(cost=5)  # above the burst: the service says so
    assert ei.value.field_violations and ei.value.field_violations[0].field == "cost"


async def test_named_policy_and_unknown_policy(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(policy="tight", key=unique("pol"), client=client)
    assert await lim.try_acquire() and await lim.try_acquire()
    assert not await lim.try_acquire()
    with pytest.raises(tr.NotFoundError) as ei:
        await RateLimiter(policy="no-such-policy", key=unique("pol"), client=client).acquire()
    assert ei.value.code.name == "NOT_FOUND" and "no-such-policy" in ei.value.message
    assert ei.value.correlation_id  # the service answered (its header came back)


async def test_invalid_arguments() -> None:
    with pytest.raises(tr.InvalidArgumentError):
        RateLimiter(0, 1.0, key="k")
    with pytest.raises(tr.InvalidArgumentError):
        RateLimiter(1, 0, key="k")
    with pytest.raises(tr.InvalidArgumentError):
        RateLimiter(1, 1.0, key="")
    with pytest.raises(tr.InvalidArgumentError):
        RateLimiter(key="k")
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        tr.RateLimit(1, 1.0, burst=-1)
    with pytest.raises(tr.InvalidArgumentError):
        tr.ResilienceClient("127.0.0.1:1", timeout=0)


async def test_service_rejects_long_key_with_field_violation(client: tr.ResilienceClient) -> None:
    with pytest.raises(tr.InvalidArgumentError) as ei:
        await client.acquire("k" * 300, limit=tr.RateLimit(1, 1.0))
    assert [v.field for v in ei.value.field_violations] == ["key"]
    assert ei.value.message.startswith("key")


def test_sync_twins(server) -> None:
    c = tr.ResilienceClient(server.addr, timeout=2.0)
    try:
        lim = RateLimiter(2, 0.5, key=unique("sync"), client=c)
        with lim as d:
            assert d.allowed and d.remaining == 1
        assert lim.try_acquire_sync()
        assert not lim.try_acquire_sync()
        d = lim.acquire_sync(max_wait=2)
        assert d.allowed and d.waited > 0
        with pytest.raises(tr.RateLimited):
            lim.acquire_sync(max_wait=0.01)
    finally:
        c.close_sync()
    with pytest.raises(tr.ClientClosedError):
        lim.try_acquire_sync()


async def test_limiter_shared_across_threads_and_tasks(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(50, 60.0, key=unique("conc"), client=client)
    results = await asyncio.gather(*(lim.try_acquire() for _ in range(40)))
    thread_results = await asyncio.gather(*(asyncio.to_thread(lim.try_acquire_sync) for _ in range(20)))
    assert sum(results) + sum(thread_results) == 50


async def test_default_client_from_environment(server, monkeypatch) -> None:
    monkeypatch.setenv(tr.client.ADDRESS_ENV, server.addr)
    prev = tr.set_default_client(None)
    try:
        c = tr.get_default_client()
        assert c.address == server.addr and tr.get_default_client() is c
        lim = RateLimiter(1, 60.0, key=unique("default"))
        assert lim.client is c
        assert await lim.try_acquire()
        await c.close()
        assert tr.get_default_client() is not c  # a closed default is replaced
        await tr.get_default_client().close()
    finally:
        tr.set_default_client(prev)


async def test_client_as_async_context_manager(server) -> None:
    async with tr.ResilienceClient(server.addr, timeout=1.0) as c:
        assert "ResilienceClient" in repr(c)
        d = await c.acquire(unique("cm"), limit=tr.RateLimit(1, 1.0))
        assert d.allowed
    assert c.closed
    with pytest.raises(tr.ClientClosedError):
        await c.acquire(unique("cm"), limit=tr.RateLimit(1, 1.0))
