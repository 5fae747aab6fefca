"""Several limits, fleet-wide concurrency slots and upstream feedback
(issue 15) against real resilienced processes; the parsers of
topdeck_resilience.upstream as pure functions."""

import asyncio
import os
import subprocess
import sys

import grpc
import pytest

import topdeck_resilience as tr
from topdeck_resilience import upstream
from topdeck_resilience.resilience import AdmissionDecision, CircuitBreaker, LimitDecision, RateLimiter, RetryConfig
from conftest import PKG_DIR, unique
from status_encoding import status_with_details

NOW = 1735689600.0  # 2025-01-01T00:00:00Z


@pytest.mark.parametrize(
    "status,headers,want",
    [
        (200, {}, upstream.Upstream()),
        (429, {"Retry-After": "120"}, upstream.Upstream(retry_after=120.0)),
        (503, {"retry-after": "Wed, 01 Jan 2025 00:00:30 GMT"}, upstream.Upstream(retry_after=30.0)),
        (429, {"Retry-After": "Tue, 31 Dec 2024 23:00:00 GMT"}, upstream.Upstream(retry_after=0.0)),
        (200, {"Retry-After": "120"}, upstream.Upstream()),
        (429, {"Retry-After": "soon"}, upstream.Upstream()),
        (429, {"Retry-After": "-5"}, upstream.Upstream()),
        (429, {"Retry-After": "99999999999"}, upstream.Upstream(retry_after=upstream.MAX_UPSTREAM_DELAY)),
        (200, {"X-RateLimit-Remaining": "42"}, upstream.Upstream(remaining=42)),
        (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, upstream.Upstream(remaining=0, reset_after=30.0)),
        (200, {"X-RateLimit-Reset": "1735689645"}, upstream.Upstream(reset_after=45.0)),  # a Unix time
        (200, {"X-RateLimit-Reset": "1735689000"}, upstream.Upstream(reset_after=0.0)),  # in the past
        (200, {"X-RateLimit-Reset": "1735689645000"}, upstream.Upstream()),  # milliseconds: ignored
        (200, {"X-RateLimit-Reset": "nan"}, upstream.Upstream()),
        (200, {"X-RateLimit-Remaining": "10, 3;w=60"}, upstream.Upstream(remaining=3)),
        (200, {"X-RateLimit-Remaining": "-1"}, upstream.Upstream()),
        (200, {"RateLimit-Remaining": "5", "RateLimit-Reset": "12"}, upstream.Upstream(remaining=5, reset_after=12.0)),
        (200, [("x-ratelimit-remaining", "7")], upstream.Upstream(remaining=7)),
    ],
)
def test_from_headers(status, headers, want) -> None:
    assert upstream.from_headers(status, headers, NOW) == want


def test_pause() -> None:
    assert upstream.Upstream(retry_after=1.0, remaining=0, reset_after=60.0).pause == 60.0
    assert upstream.Upstream(retry_after=1.0, remaining=1, reset_after=60.0).pause == 1.0
    assert upstream.Upstream(reset_after=60.0).pause == 0.0
    assert not upstream.Upstream() and upstream.Upstream(remaining=0)


class _CIMultiDict:
    """aiohttp's header shape: getall raises KeyError for a missing name."""

    def __init__(self, pairs):
        self._pairs = pairs

    def getall(self, name):
        vs = [v for k, v in self._pairs if k.lower() == name.lower()]
        if not vs:
            raise KeyError(name)
        return vs

    def items(self):
        return list(self._pairs)


class _RpcError(grpc.RpcError):
    def __init__(self, code, delay):
        self._code, self._delay = code, delay

    def code(self):
        return self._code

    def trailing_metadata(self):
        return (("grpc-status-details-bin", status_with_details(self._code.value[0], "slow down", retry_delay=self._delay)),)


def test_from_exception_shapes() -> None:
    class Resp:  # httpx / requests
        status_code = 429
        headers = {"Retry-After": "7"}

    class HTTPStatusError(Exception):
        response = Resp()

    class ClientResponseError(Exception):  # aiohttp
        status = 503
        headers = _CIMultiDict([("Retry-After", "9"), ("X-RateLimit-Remaining", "0")])

    assert upstream.from_exception(HTTPStatusError()).retry_after == 7.0
    got = upstream.from_exception(ClientResponseError())
    assert got.retry_after == 9.0 and got.remaining == 0
    assert not upstream.from_exception(ValueError("no response"))
    assert upstream.from_exception(_RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, 4.0)).retry_after == 4.0
    assert not upstream.from_exception(_RpcError(grpc.StatusCode.INTERNAL, 4.0))


def test_feedback_drops_remaining_without_a_bucket() -> None:
    up = upstream.Upstream(remaining=5)
    assert upstream.feedback("k", up) is None  # nothing to lower without a rate limit
    fb = upstream.feedback("k", up, policy="tight")
    assert fb.remaining == 5 and fb.policy == "tight"
    fb = upstream.feedback("k", upstream.Upstream(remaining=0, reset_after=3.0))
    assert fb.remaining == 0 and fb.reset_after.seconds == 3


async def test_several_limits_all_or_nothing(client: tr.ResilienceClient) -> None:
    org = RateLimiter(1, 3600.0, key=unique("org"), client=client)
    u1 = RateLimiter(5, 3600.0, key=unique("user"), client=client, also=[org])
    u2 = RateLimiter(5, 3600.0, key=unique("user"), client=client, also=[org])
    d = await u1.check()
    assert isinstance(d, AdmissionDecision) and d.allowed and [ld.key for ld in d.limits] == [u1.key, org.key]
    assert all(isinstance(ld, LimitDecision) for ld in d.limits)
    d = await u2.check()
    assert not d.allowed and d.limited_by == org.key and d.limit_reason == "rate_limited"
    assert d.limits[0].allowed and not d.limits[1].allowed
    with pytest.raises(tr.RateLimited) as ei:
        await u2.acquire(max_wait=0.1)
    assert ei.value.key == org.key
    plain = RateLimiter(5, 3600.0, key=u2.key, client=client)
    assert (await plain.check(dry_run=True)).remaining == 4  # the refusals took none of u2's tokens


async def test_slots_released_on_exit_even_on_exceptions(client: tr.ResilienceClient) -> None:
    key = unique("slots")
    bulkhead = RateLimiter(key=key, max_in_flight=1, in_flight_lease=3600.0, client=client)
    other = RateLimiter(key=key, max_in_flight=1, in_flight_lease=3600.0, client=client)

    async def held() -> bool:
        d = await other.check()
        if d.allowed:
            await other.release(d)
        return not d.allowed

    async with bulkhead as d:
        assert d.holds_slots and await held()
    assert not await held()

    with pytest.raises(ZeroDivisionError):
        async with bulkhead:
            assert await held()
            1 / 0
    assert not await held()

    @bulkhead
    async def work() -> str:
        assert await held()
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await work()
    assert not await held()

    # Cancelled while inside: the slot still comes back.
    entered = asyncio.Event()

    async def slow() -> None:
        async with bulkhead:
            entered.set()
            await asyncio.sleep(30)

    t = asyncio.ensure_future(slow())
    await asyncio.wait_for(entered.wait(), 5)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    for _ in range(50):  # the release runs shielded; bounded wait for it
        if not await held():
            break
        await asyncio.sleep(0.02)
    assert not await held()

    # A bool cannot give a slot back.
    with pytest.raises(tr.InvalidArgumentError):
        await bulkhead.try_acquire()


def test_slots_sync(server) -> None:
    c = tr.ResilienceClient(server.addr, timeout=2.0)
    try:
        key = unique("slots-sync")
        bulkhead = RateLimiter(key=key, max_in_flight=1, in_flight_lease=3600.0, client=c)
        with pytest.raises(RuntimeError):
            with bulkhead:
                raise RuntimeError("x")
        with bulkhead as d:  # the slot came back after the exception
            assert d.allowed and d.holds_slots
        with bulkhead as d:  # the slot came back
            assert d.allowed
    finally:
        c.close_sync()


async def test_circuit_breaker_releases_slots_and_reports(client: tr.ResilienceClient) -> None:
    key = unique("cb-slots")
    bulkhead = RateLimiter(100, 60.0, key=key, max_in_flight=1, in_flight_lease=3600.0, client=client)
    br = CircuitBreaker(unique("cb"), client=client, limiter=bulkhead)

    class Resp:
        status_code = 429
        headers = {"Retry-After": "20"}

    class Throttled(Exception):
        response = Resp()

    with pytest.raises(Throttled):
        async with br:
            raise Throttled()
    # The slot came back, and the key is paused fleet-wide for the upstream's 20 s.
    d = await RateLimiter(100, 60.0, key=key, client=client).check(dry_run=True)
    assert not d.allowed and d.retry_after > 15, d
    ext = await bulkhead.check(dry_run=True)
    assert ext.limit_reason == "upstream_throttled" and ext.limits[0].in_flight == 0, ext


async def test_retrying_reports_for_the_limiter(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(100, 60.0, key=unique("retry-up"), client=client)
    calls = 0

    class Resp:
        status_code = 503
        headers = {"Retry-After": "0", "X-RateLimit-Remaining": "2"}

    class Unavailable(Exception):
        response = Resp()

    @lim.retrying(RetryConfig(max_attempts=2, initial_delay=0.01))
    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable()
        return "ok"

    assert await call() == "ok" and calls == 2
    d = await lim.check(dry_run=True)
    assert d.allowed and d.remaining == 1, d  # lowered to the upstream's 2 (a dry run shows one fewer)


async def test_a_429_in_one_process_pauses_the_others(start_server, start_redis) -> None:
    redis = start_redis()
    a = start_server("--redis-url", redis.url)
    b = start_server("--redis-url", redis.url)
    key = unique("ado")
    env = dict(os.environ, PYTHONPATH=str(PKG_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(PKG_DIR / "tests" / "upstream_worker.py"), a.addr, key],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "done", p.stderr
    async with tr.ResilienceClient(b.addr, timeout=2.0) as c:
        lim = RateLimiter(100, 60.0, key=key, client=c)
        with pytest.raises(tr.RateLimited) as ei:
            await lim.acquire(max_wait=1.0)  # paused 30 s: more than it may wait
        assert 20 < ei.value.retry_after <= 30 and not ei.value.local
        d = await lim.check()
        assert not d.allowed and not d.degraded
        slots = RateLimiter(100, 60.0, key=key, client=c, max_in_flight=5, in_flight_lease=10.0)
        ext = await slots.check()
        assert not ext.allowed and ext.limit_reason == "upstream_throttled" and ext.limited_by == key


async def test_local_fallback_several_limits_and_slots(start_server) -> None:
    s = start_server()
    addr = s.addr
    s.kill()
    c = tr.ResilienceClient(addr, timeout=0.2)
    try:
        org = RateLimiter(1, 3600.0, key="local/org", client=c)
        bulkhead = RateLimiter(10, 60.0, key="local/u", client=c, max_in_flight=1, in_flight_lease=60.0, also=[org])
        async with bulkhead as d:
            assert d.allowed and d.local and d.holds_slots
            inner = await RateLimiter(10, 60.0, key="local/u", client=c, max_in_flight=1, in_flight_lease=60.0).check()
            assert not inner.allowed and inner.limit_reason == "concurrency_limited" and inner.local
        d = await RateLimiter(10, 60.0, key="local/u2", client=c, also=[org]).check()
        assert not d.allowed and d.limited_by == "local/org" and d.local
    finally:
        await c.close()


def test_from_grpc_error() -> None:
    assert upstream.from_grpc_error(_RpcError(grpc.StatusCode.UNAVAILABLE, 2.5)).retry_after == 2.5
    assert not upstream.from_grpc_error(_RpcError(grpc.StatusCode.NOT_FOUND, 2.5))
    assert not upstream.from_grpc_error(ValueError("not a gRPC error"))
    # Longer than the service would pause for: cut to the bound.
    assert upstream.from_grpc_error(_RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, 1e9)).retry_after == upstream.MAX_UPSTREAM_DELAY


async def test_report_upstream_pauses_the_key(client: tr.ResilienceClient) -> None:
    lim = RateLimiter(100, 1.0, key=unique("rep"), client=client)
    assert await lim.try_acquire()
    res = await upstream.report_upstream(client, lim.key, upstream.Upstream(retry_after=30.0))
    assert isinstance(res, upstream.UpstreamResult) and 25.0 < res.paused_for <= 30.0 and not res.local
    d = await lim.check()
    assert not d.allowed and d.reason == tr.Reason.UPSTREAM_THROTTLED and 25.0 < d.retry_after <= 30.0
    # Nothing to say: nothing sent, an empty result.
    assert await upstream.report_upstream(client, lim.key, upstream.Upstream()) == upstream.UpstreamResult()


def test_report_upstream_sync_pauses_the_key(server) -> None:
    c = tr.ResilienceClient(server.addr, timeout=2.0)
    try:
        lim = RateLimiter(100, 1.0, key=unique("rep-sync"), client=c)
        res = upstream.report_upstream_sync(c, lim.key, upstream.Upstream(retry_after=20.0))
        assert 15.0 < res.paused_for <= 20.0
        assert not lim.try_acquire_sync()
    finally:
        c.close_sync()
