"""CircuitBreaker against a real resilienced (breaker policy: 3 failures, 300 ms recovery)."""

import asyncio
import time

import pytest

import topdeck_resilience as tr
from topdeck_resilience.resilience import CircuitBreaker
from conftest import unique


class Boom(Exception):
    pass


class NotMine(Exception):
    pass


async def test_opens_refuses_probes_and_closes(client: tr.ResilienceClient) -> None:
    changes = []
    brk = CircuitBreaker(unique("brk"), client=client, on_state_change=lambda n, a, b: changes.append((a, b)))
    calls = 0

    @brk
    async def upstream(fail: bool) -> str:
        nonlocal calls
        calls += 1
        if fail:
            raise Boom("503")
        return "ok"

    assert await upstream(False) == "ok"
    assert await brk.state() == tr.CircuitState.CLOSED == "closed"
    for _ in range(3):
        with pytest.raises(Boom):
            await upstream(True)
    assert await brk.state() == tr.CircuitState.OPEN
    with pytest.raises(tr.CircuitOpenError) as ei:
        await upstream(False)
    assert calls == 4 and 0 < ei.value.retry_after <= 0.3 and ei.value.breaker == brk.name and not ei.value.local
    st = await brk.status()
    assert st.policy is not None and st.policy.failure_threshold == 3 and st.opened_at is not None and not st.local

    await asyncio.sleep(0.35)
    # The half-open probe carries a permit; its success closes the breaker.
    async with brk as d:
        assert d.breaker_state == tr.CircuitState.HALF_OPEN and d.permit_id and d.breaker_generation
    assert await brk.state() == tr.CircuitState.CLOSED
    assert (tr.CircuitState.CLOSED, tr.CircuitState.OPEN) in changes
    assert changes[-1][1] == tr.CircuitState.CLOSED


async def test_half_open_probe_failure_reopens(client: tr.ResilienceClient) -> None:
    brk = CircuitBreaker(unique("brk"), client=client)
    for _ in range(3):
        with pytest.raises(Boom):
            async with brk:
                raise Boom()
    await asyncio.sleep(0.35)
    with pytest.raises(Boom):
        await brk.call(_raise, Boom())
    assert await brk.state() == tr.CircuitState.OPEN


def _raise(e: Exception) -> None:
    raise e


async def test_excluded_and_unexpected_exceptions_are_not_failures(client: tr.ResilienceClient) -> None:
    brk = CircuitBreaker(unique("brk"), expected_exception=(Boom,), exclude=(KeyError,), client=client)
    for exc in [KeyError("x")] * 4 + [NotMine()] * 4 + [tr.RateLimited(1.0)] * 4:
        with pytest.raises(type(exc)):
            async with brk:
                raise exc
    assert await brk.state() == tr.CircuitState.CLOSED
    assert brk.is_failure(Boom()) and brk.is_failure(None) is False and brk.is_failure(asyncio.CancelledError()) is None


async def test_cancelled_call_reports_nothing(client: tr.ResilienceClient) -> None:
    brk = CircuitBreaker(unique("brk"), client=client)

    @brk
    async def slow() -> None:
        await asyncio.sleep(10)

    for _ in range(4):
        t = asyncio.ensure_future(slow())
        await asyncio.sleep(0.05)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    st = await brk.status()
    assert st.state == tr.CircuitState.CLOSED and st.consecutive_failures == 0


async def test_call_with_sync_and_async_functions(client: tr.ResilienceClient) -> None:
    brk = CircuitBreaker(unique("brk"), client=client)

    async def coro(x, y=1):
        return x + y

    assert await brk.call(coro, 1, y=2) == 3
    assert await brk.call(lambda x: x * 2, 4) == 8


def test_sync_decorator_and_with(server) -> None:
    c = tr.ResilienceClient(server.addr, timeout=2.0)
    try:
        brk = CircuitBreaker(unique("brk"), client=c)

        @brk
        def fetch(fail: bool) -> int:
            if fail:
                raise Boom()
            return 7

        assert fetch(False) == 7
        assert brk.call_sync(lambda: 8) == 8
        for _ in range(3):
            with pytest.raises(Boom):
                with brk:
                    raise Boom()
        with pytest.raises(tr.CircuitOpenError):
            fetch(False)
        assert brk.state_sync() == tr.CircuitState.OPEN
    finally:
        c.close_sync()


async def test_stale_generation_is_ignored_and_reset(client: tr.ResilienceClient) -> None:
    name = unique("brk")
    brk = CircuitBreaker(name, client=client)
    d = await client.acquire(breaker=name)
    assert d.allowed and d.breaker_generation
    st = await brk.reset(tr.CircuitState.OPEN)  # a new generation
    assert st.state == tr.CircuitState.OPEN
    r = await client.report_outcome(name, False, permit_id=d.permit_id, breaker_generation=d.breaker_generation)
    assert r.ignored
    st = await brk.reset()
    assert st.state == tr.CircuitState.CLOSED
    listed = await client.list_breakers(prefix=name)
    assert [b.name for b in listed] == [name]
    with pytest.raises(tr.InvalidArgumentError):
        await client.reset_breaker(name, tr.CircuitState.HALF_OPEN)


async def test_breaker_with_limiter_in_one_decision(client: tr.ResilienceClient) -> None:
    lim = tr.RateLimiter(2, 60.0, key=unique("bl"), client=client)
    brk = CircuitBreaker(unique("brk"), client=client, limiter=lim)
    assert await brk.call(lambda: 1) == 1
    assert await brk.call(lambda: 2) == 2
    with pytest.raises(tr.RateLimited) as ei:
        await brk.call(lambda: 3)
    assert ei.value.key == lim.key
    assert await brk.state() == tr.CircuitState.CLOSED  # a refusal is not an upstream failure


async def test_concurrent_tasks_share_one_breaker(client: tr.ResilienceClient) -> None:
    brk = CircuitBreaker(unique("brk"), client=client)

    @brk
    async def ok(i):
        await asyncio.sleep(0.01)
        return i

    assert await asyncio.gather(*(ok(i) for i in range(30))) == list(range(30))
    assert await brk.state() == tr.CircuitState.CLOSED


def test_name_required() -> None:
    with pytest.raises(tr.InvalidArgumentError):
        CircuitBreaker("")
