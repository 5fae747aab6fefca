"""The local fallback state (GCRA buckets, breakers) and the SDK's value types."""

import asyncio
import logging
import time

import pytest

import topdeck_resilience as tr
from topdeck_resilience import client as tc
from topdeck_resilience._local import LocalBreakers, LocalLimiter
from topdeck_resilience.logging_config import ContextLogger, StructuredFormatter


def test_gcra_burst_refill_and_denials_not_charged() -> None:
    lim = LocalLimiter()
    t = 100.0
    got = [lim.acquire(t, "k", 10, 1.0, 5, 1, 0, False) for _ in range(6)]
    assert [r.allowed for r in got] == [True] * 5 + [False]
    assert [r.remaining for r in got[:5]] == [4, 3, 2, 1, 0]
    assert got[5].retry_after == pytest.approx(0.1)
    for _ in range(10):  # denials are not charged
        assert not lim.acquire(t, "k", 10, 1.0, 5, 1, 0, False).allowed
    assert lim.acquire(t + 0.1, "k", 10, 1.0, 5, 1, 0, False).allowed
    # In any interval t: admitted <= burst + rate * t.
    admitted = sum(lim.acquire(t + 0.1 + i * 0.01, "k", 10, 1.0, 5, 1, 0, False).allowed for i in range(100))
    assert admitted <= 0 + 10 * 1.0 + 1


def test_gcra_reservation_and_give_back() -> None:
    lim = LocalLimiter()
    assert lim.acquire(0.0, "k", 1, 1.0, 0, 1, 0, False).allowed
    r = lim.acquire(0.0, "k", 1, 1.0, 0, 1, 2.0, False)
    assert r.allowed and r.wait == pytest.approx(1.0) and r.reservation
    lim.give_back(r.reservation)
    assert lim.acquire(1.0, "k", 1, 1.0, 0, 1, 0, False).allowed  # the given-back slot is free again
    assert not lim.acquire(1.0, "k", 1, 1.0, 0, 1, 0.5, False).allowed  # too far for max_wait
    assert lim.acquire(1.0, "other", 1, 1.0, 0, 1, 0, True).allowed  # dry run takes nothing
    assert lim.acquire(1.0, "other", 1, 1.0, 0, 1, 0, False).allowed


def test_gcra_limit_change_never_punishes() -> None:
    lim = LocalLimiter()
    for _ in range(100):
        lim.acquire(0.0, "k", 100, 1.0, 0, 1, 0, False)
    # A smaller limit: the 100 tokens used count as at most the new burst (2): full wait of 2 tokens, not 100.
    r = lim.acquire(0.0, "k", 2, 1.0, 0, 1, 0, False)
    assert not r.allowed and r.retry_after <= 0.5 + 1e-9


def test_local_breaker_generations_and_permits() -> None:
    b = LocalBreakers()
    s = tr.BreakerSettings(failure_threshold=2, recovery_timeout=1.0, half_open_max_calls=1, success_threshold=2, probe_timeout=0.5)
    a = b.allow(0.0, "x", s)
    assert a.allowed and a.state == "closed"
    gen = a.generation
    assert b.report(0.0, "x", s, False, gen, "") == ("closed", False)
    assert b.report(0.0, "x", s, False, gen, "") == ("open", False)
    assert b.report(0.0, "x", s, False, gen, "") == ("open", True)  # an older generation: ignored
    assert not b.allow(0.5, "x", s).allowed
    p1 = b.allow(1.0, "x", s)
    assert p1.allowed and p1.state == "half_open" and p1.permit_id
    assert not b.allow(1.0, "x", s).allowed  # one probe at a time
    assert b.allow(1.6, "x", s).allowed  # the first lease expired: reclaimed
    assert b.report(1.6, "x", s, True, 0, p1.permit_id)[1]  # its late report: ignored (spent permit)
    st = b.status(1.6, "x", s)
    assert st.state == "half_open" and st.probes_in_flight == 1
    b.reset(1.6, "x", s, "closed")
    assert b.status(1.6, "x", s).state == "closed"
    b.reset(1.6, "x", s, "open")
    assert b.status(1.6, "x", s).state == "open"


def test_value_types() -> None:
    d = tr.Decision(allowed=True)
    assert d.reason == tr.Reason.ALLOWED and not d.local and isinstance(d, tc.Decision)
    assert tr.ReportResult(tr.CircuitState.OPEN).state == "open" and tc.ReportResult is tr.ReportResult
    p = tr.BreakerPolicy("p", 5, 30.0, 1, 1, 10.0)
    st = tr.BreakerStatus("b", tr.CircuitState.CLOSED, policy=p)
    assert st.policy.mode == "consecutive" and tc.BreakerStatus is st.__class__ and tc.BreakerPolicy is tr.BreakerPolicy
    assert tc.BreakerSettings().failure_threshold == 5 and tr.resilience.BreakerSettings is tc.BreakerSettings
    assert tr.resilience.BreakerStatus is tc.BreakerStatus and tr.resilience.Decision is tc.Decision
    assert tr.resilience.ReportResult is tc.ReportResult
    assert tc.DEFAULT_ADDRESS == "localhost:50051" and tc.DEFAULT_TIMEOUT == 0.25 and tc.DEFAULT_RETRY_INTERVAL == 1.0
    assert tr.RateLimit(5, 1.0).capacity == 5 and tr.RateLimit(5, 1.0, burst=2).capacity == 2
    for e in (tr.RateLimited(1), tr.CircuitOpenError(1), tr.ServiceUnavailableError("x"), tr.DeadlineExceeded("x")):
        assert isinstance(e, tr.ResilienceError) and isinstance(e, tr.errors.ResilienceError)
        assert isinstance(e, tr.resilience.ResilienceError)
    assert isinstance(tr.DeadlineExceeded("x"), TimeoutError) and isinstance(tr.errors.DeadlineExceeded("y"), TimeoutError)
    assert "local decision" in str(tr.RateLimited(1.5, key="k", local=True))


def test_formatter_and_context_logger_types() -> None:
    rec = logging.LogRecord("n", logging.INFO, __file__, 1, "m %s", ("x",), None)
    rec.extra_data = {"a": object()}
    out = StructuredFormatter().format(rec)
    assert '"message": "m x"' in out and '"a": "<object' in out
    assert isinstance(tr.get_logger("x"), ContextLogger)


async def test_deadline_shorter_than_a_hung_call(start_server) -> None:
    srv = start_server()
    c = tr.ResilienceClient(srv.addr, timeout=2.0)
    try:
        await c.acquire("k", limit=tr.RateLimit(5, 1.0))
        srv.pause()
        t0 = time.monotonic()
        with tr.deadline(0.2):
            with pytest.raises(tr.DeadlineExceeded):
                await c.acquire("k", limit=tr.RateLimit(5, 1.0))
        assert time.monotonic() - t0 < 1.0
        srv.resume()
        assert not (await c.acquire("k", limit=tr.RateLimit(5, 1.0))).local  # not marked down by our own deadline
    finally:
        srv.resume()
        await c.close()
