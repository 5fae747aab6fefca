"""The service killed, hung or without its store: local fallback decisions
marked degraded, cache misses, typed errors for what the service answered;
nothing raises that should not, nothing hangs (every step bounded)."""

import asyncio
import time

import pytest

import topdeck_resilience as tr
from topdeck_resilience.cache import Cache
from topdeck_resilience.resilience import CircuitBreaker, RateLimiter
from conftest import unique

BOUND = 2.0  # seconds any single SDK call may take with the service gone


async def bounded(aw, limit=BOUND):
    t0 = time.monotonic()
    r = await asyncio.wait_for(aw, limit + 3)
    took = time.monotonic() - t0
    assert took < limit, f"took {took:.2f}s, want < {limit}s"
    return r


async def test_service_killed_everything_degrades(start_server) -> None:
    srv = start_server()
    c = tr.ResilienceClient(srv.addr, timeout=1.0, retry_interval=0.5)
    cache = Cache(client=c)
    lim = RateLimiter(3, 60.0, key=unique("down"), client=c)
    brk = CircuitBreaker(unique("down"), failure_threshold=2, recovery_timeout=0.3, client=c)
    try:
        assert not (await lim.check()).local
        assert await cache.set("k", {"v": 1}) and await cache.get("k") == {"v": 1}
        srv.kill()

        # Limits: a local GCRA bucket, same semantics (2 tokens left of a fresh 3? no: a fresh local bucket of 3).
        decisions = [await bounded(lim.check()) for _ in range(4)]
        assert all(d.local and d.degraded for d in decisions), decisions
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[-1].reason == tr.Reason.RATE_LIMITED and decisions[-1].retry_after > 0
        with pytest.raises(tr.RateLimited) as ei:
            await bounded(lim.acquire(max_wait=0.1))
        assert ei.value.local

        # Breakers: a local breaker with the breaker's own settings.
        calls = 0

        @brk
        async def upstream():
            nonlocal calls
            calls += 1
            raise ConnectionError("upstream down")

        for _ in range(2):
            with pytest.raises(ConnectionError):
                await bounded(upstream())
        with pytest.raises(tr.CircuitOpenError) as ei2:
            await bounded(upstream())
        assert ei2.value.local and calls == 2 and 0 < ei2.value.retry_after <= 0.3
        st = await bounded(brk.status())
        assert st.local and st.degraded and st.state == tr.CircuitState.OPEN
        await asyncio.sleep(0.35)
        ok = brk(lambda: "fine")  # a sync function through the same breaker: the half-open probe
        assert await asyncio.to_thread(ok) == "fine"
        assert await bounded(brk.state()) == tr.CircuitState.CLOSED

        # The cache: misses, writes refused, the loader still runs; nothing raises.
        assert await bounded(cache.get("k")) is None
        assert await bounded(cache.set("k", 1)) is False
        assert await bounded(cache.delete("k")) is False
        assert await bounded(cache.exists("k")) is False
        assert await bounded(cache.delete_pattern("*")) == 0
        stats = await bounded(cache.stats())
        assert stats["degraded"] and stats["enabled"]
        assert await bounded(cache.get_or_load("k", lambda: {"fresh": True})) == {"fresh": True}
        assert await bounded(cache.connect()) is False
    finally:
        await bounded(cache.close())
        await c.close()


async def test_service_killed_fail_closed_refuses(start_server) -> None:
    srv = start_server()
    c = tr.ResilienceClient(srv.addr, timeout=1.0, fail_open=False)
    try:
        lim = RateLimiter(3, 60.0, key=unique("fc"), client=c)
        assert await lim.try_acquire()
        srv.kill()
        with pytest.raises(tr.ServiceUnavailableError) as ei:
            await bounded(lim.acquire())
        assert ei.value.code is not None
        with pytest.raises(tr.ServiceUnavailableError):  # within the retry interval: not even asked
            await bounded(lim.try_acquire(), 0.05)
        with pytest.raises(tr.ServiceUnavailableError):
            await bounded(CircuitBreaker(unique("fc"), client=c).call(lambda: 1))
    finally:
        await c.close()


async def test_hung_service_times_out_and_decides_locally(start_server) -> None:
    srv = start_server()
    c = tr.ResilienceClient(srv.addr, timeout=0.5, retry_interval=0.3)
    lim = RateLimiter(100, 1.0, key=unique("hung"), client=c)
    try:
        assert not (await lim.check()).local
        srv.pause()  # accepts connections, never answers
        d = await bounded(lim.check(), 1.5)  # one timeout, then local
        assert d.allowed and d.local and d.degraded
        d = await bounded(lim.check(), 0.1)  # the retry interval: local at once
        assert d.local
        srv.resume()
        await asyncio.sleep(0.35)
        d = await bounded(lim.check())
        assert d.allowed and not d.local, d  # the service is asked again after the interval
    finally:
        srv.resume()
        await c.close()


async def test_service_back_after_restart(start_server) -> None:
    srv = start_server()
    c = tr.ResilienceClient(srv.addr, timeout=1.0, retry_interval=0.2)
    lim = RateLimiter(100, 1.0, key=unique("back"), client=c)
    try:
        srv.kill()
        assert (await bounded(lim.check())).local
        # A new server on the same port.
        srv2 = start_server("--listen", srv.addr)
        assert srv2.addr == srv.addr
        deadline = time.monotonic() + 5
        while (await bounded(lim.check())).local:
            assert time.monotonic() < deadline, "still local 5 s after the service came back"
            await asyncio.sleep(0.1)
    finally:
        await c.close()


DENY_CONFIG = """
limits:
  strict:
    max_calls: 5
    time_window: 1s
    on_store_failure: deny
  lenient:
    max_calls: 5
    time_window: 1s
"""


async def test_store_down_deny_policy_is_a_typed_error_not_a_local_decision(start_server, start_redis) -> None:
    redis = start_redis()
    srv = start_server("--redis-url", redis.url, config=DENY_CONFIG)
    c = tr.ResilienceClient(srv.addr, timeout=2.0)
    try:
        strict = RateLimiter(policy="strict", key=unique("deny"), client=c)
        lenient = RateLimiter(policy="lenient", key=unique("deny"), client=c)
        assert await strict.try_acquire() and await lenient.try_acquire()
        redis.kill()
        deadline = time.monotonic() + 10
        while True:
            try:
                await bounded(strict.acquire(), 3)
            except tr.StoreUnavailableError as e:
                assert e.code.name == "UNAVAILABLE" and "on_store_failure: deny" in e.message
                assert e.correlation_id
                break
            assert time.monotonic() < deadline, "no UNAVAILABLE from the deny policy 10 s after Redis died"
            await asyncio.sleep(0.1)
        # The lenient policy: the service decides on its own, degraded; not a local SDK decision.
        d = await bounded(lenient.check(), 3)
        assert d.allowed and d.degraded and not d.local
        # The cache says degraded: a miss, nothing raises.
        cache = Cache(client=c)
        assert await bounded(cache.get("x"), 3) is None
        assert await bounded(cache.set("x", 1), 3) is False
        await bounded(cache.close())
    finally:
        await c.close()
