"""retry_with_backoff and retry_after_of (local: no service needed except where noted)."""

import asyncio
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import grpc
import grpc.aio
import pytest

import topdeck_resilience as tr
from topdeck_resilience.resilience import RetryConfig, retry_after_of, retry_with_backoff
from status_encoding import status_with_details


def fast(**kw) -> RetryConfig:
    return RetryConfig(initial_delay=0.01, max_delay=0.05, **kw)


async def test_async_retries_then_succeeds() -> None:
    attempts = []

    @retry_with_backoff(config=fast(max_attempts=3))
    async def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("again")
        return "done"

    assert await flaky() == "done" and len(attempts) == 3


def test_sync_retries_then_raises_the_last() -> None:
    sleeps = []

    @retry_with_backoff(config=fast(max_attempts=4, before_sleep=lambda n, e, d: sleeps.append((n, d))))
    def always():
        raise ValueError("nope")

    with pytest.raises(ValueError):
        always()
    assert [n for n, _ in sleeps] == [1, 2, 3]
    assert all(0 <= d <= 0.05 for _, d in sleeps)


def test_full_jitter_and_exponential_caps() -> None:
    cfg = RetryConfig(initial_delay=1.0, max_delay=5.0, exponential_base=2.0)
    for attempt, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)]:
        ds = [cfg.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in ds) and max(ds) > cap * 0.5
    assert RetryConfig(jitter=False, initial_delay=1.0).backoff(2) == 4.0
    assert "max_attempts=3" in repr(RetryConfig())
    with pytest.raises(ValueError):
        RetryConfig(max_attempts=0)


@pytest.mark.parametrize(
    "retry_on, raised",
    [
        pytest.param((ConnectionError,), KeyError("not retried"), id="only-listed-exceptions-are-retried"),
        pytest.param((BaseException,), asyncio.CancelledError(), id="cancellation-is-not-retried"),
    ],
)
async def test_not_retried(retry_on, raised) -> None:
    n = 0

    @retry_with_backoff(config=fast(retry_on=retry_on))
    async def f():
        nonlocal n
        n += 1
        raise raised

    with pytest.raises(type(raised)):
        await f()
    assert n == 1

    m = 0

    @retry_with_backoff(config=fast(), exceptions=(KeyError,))  # the seed's argument overrides retry_on
    def g():
        nonlocal m
        m += 1
        raise KeyError()

    with pytest.raises(KeyError):
        g()
    assert m == 3


async def test_retry_after_of_sdk_errors_is_honoured() -> None:
    sleeps = []

    @retry_with_backoff(config=fast(max_attempts=2, before_sleep=lambda n, e, d: sleeps.append(d)))
    async def limited():
        raise tr.RateLimited(0.2, key="k")

    t0 = time.monotonic()
    with pytest.raises(tr.RateLimited):
        await limited()
    assert sleeps and sleeps[0] >= 0.2 and time.monotonic() - t0 >= 0.2
    assert retry_after_of(tr.CircuitOpenError(3.0)) == 3.0
    assert retry_after_of(tr.RateLimited(0)) is None
    assert retry_after_of(ValueError()) is None


async def test_never_sleeps_past_a_deadline() -> None:
    calls = 0

    @retry_with_backoff(config=RetryConfig(max_attempts=5, initial_delay=0.01, deadline=0.5))
    async def open_breaker():
        nonlocal calls
        calls += 1
        raise tr.CircuitOpenError(2.0, breaker="b")  # 2 s > the 0.5 s deadline: give up at once

    t0 = time.monotonic()
    with pytest.raises(tr.CircuitOpenError):
        await open_breaker()
    assert calls == 1 and time.monotonic() - t0 < 0.1

    @retry_with_backoff(config=RetryConfig(max_attempts=50, initial_delay=0.05, max_delay=0.05, jitter=False))
    def slow():
        raise ConnectionError()

    t0 = time.monotonic()
    with tr.deadline(0.3):
        with pytest.raises(ConnectionError):
            slow()
    assert time.monotonic() - t0 < 0.35


class _Resp:
    def __init__(self, status, headers, attr="status_code"):
        setattr(self, attr, status)
        self.headers = headers


class HTTPStatusError(Exception):  # httpx / requests shape: exc.response.status_code, .headers
    def __init__(self, status, headers):
        super().__init__(f"HTTP {status}")
        self.response = _Resp(status, headers)


class ClientResponseError(Exception):  # aiohttp shape: exc.status, exc.headers
    def __init__(self, status, headers):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers


def test_http_retry_after_shapes() -> None:
    assert retry_after_of(HTTPStatusError(429, {"Retry-After": "7"})) == 7.0
    assert retry_after_of(HTTPStatusError(503, {"retry-after": "2.5"})) == 2.5
    assert retry_after_of(HTTPStatusError(500, {"Retry-After": "7"})) is None
    assert retry_after_of(HTTPStatusError(429, {})) is None
    assert retry_after_of(ClientResponseError(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_of(ClientResponseError(503, None)) is None
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    v = retry_after_of(HTTPStatusError(503, {"Retry-After": when}))
    assert v is not None and 25 < v <= 30
    assert retry_after_of(HTTPStatusError(429, {"Retry-After": "garbage"})) is None


async def test_http_429_retry_after_is_waited() -> None:
    sleeps = []
    n = 0

    @retry_with_backoff(config=fast(before_sleep=lambda a, e, d: sleeps.append(d)))
    async def call():
        nonlocal n
        n += 1
        if n == 1:
            raise HTTPStatusError(429, {"Retry-After": "0.15"})
        return n

    assert await call() == 2 and sleeps[0] >= 0.15


def test_grpc_retry_info_from_an_upstream() -> None:
    trailer = (("grpc-status-details-bin", status_with_details(14, "slow down", retry_delay=1.5)),)
    err = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(*trailer), "slow down")
    assert retry_after_of(err) == 1.5
    err2 = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "x")
    assert retry_after_of(err2) is None
