"""Local, per-process limits and breakers: the SDK's fallback when the
resilience service cannot be reached.

They follow the service's semantics (design.md): a GCRA bucket per key
(capacity ``burst``, refill ``max_calls / time_window``; a denied call is not
charged; a reservation given up is given back when nothing was taken after
it; a limit change carries the tokens used over, at most the new burst) and
a breaker per name (closed -> open -> half-open -> closed, leased probes,
generations; an outcome of another generation or a spent permit is ignored).

Time is a parameter (``now``, seconds on a monotonic clock) of every
decision; the owner passes its clock. Both types are safe across threads
(one lock each) and never block: waiting is the caller's business.
"""

from __future__ import annotations

import math
import secrets
import threading
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

_EPS = 1e-9


@dataclass(frozen=True)
class LocalResult:
    """A local rate-limit decision. ``wait`` > 0: tokens reserved, the caller
    must wait that long (``reservation`` gives them back if it gives up)."""

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float
    wait: float = 0.0
    reservation: Optional[Tuple[str, float, float]] = None


@dataclass
class _Bucket:
    tat: float  # theoretical arrival time
    interval: float
    burst: int


class LocalLimiter:
    """GCRA buckets by key, in process memory. Safe across threads."""

    _SWEEP_AT = 10_000

    def __init__(self) -> None:
        self._mu = threading.Lock()  # protects the fields below
        self._buckets: Dict[str, _Bucket] = {}

    def acquire(
        self, now: float, key: str, max_calls: int, time_window: float, burst: int, cost: int, max_wait: float, dry_run: bool
    ) -> LocalResult:
        """Takes ``cost`` tokens of ``key`` if they are there now, or reserves
        them when they will be within ``max_wait`` seconds; ``dry_run`` takes
        nothing. The limit must be valid and ``cost <= burst`` (the caller
        checks)."""
        interval = time_window / max_calls
        burst = burst or max_calls
        tau = interval * burst
        with self._mu:
            b = self._buckets.get(key)
            if b is None:
                tat = now
            elif b.interval != interval or b.burst != burst:
                used = min(max(b.tat - now, 0.0) / b.interval, float(burst))
                tat = now + used * interval
            else:
                tat = max(b.tat, now)
            new_tat = tat + interval * cost
            wait = new_tat - tau - now
            if wait <= _EPS:
                remaining = int(math.floor((tau - (new_tat - now)) / interval + _EPS))
                if not dry_run:
                    self._storeLocked(key, new_tat, interval, burst, now)
                return LocalResult(True, max(remaining, 0), 0.0, new_tat - now)
            if max_wait > 0 and wait <= max_wait and not dry_run:
                self._storeLocked(key, new_tat, interval, burst, now)
                return LocalResult(True, 0, 0.0, new_tat - now, wait, (key, new_tat, interval * cost))
            remaining = int(math.floor((tau - (tat - now)) / interval + _EPS))
            return LocalResult(False, max(remaining, 0), wait, tat - now)

    def give_back(self, reservation: Tuple[str, float, float]) -> None:
        """Returns reserved tokens whose caller gave up, when nothing was
        taken after them."""
        key, tat, amount = reservation
        with self._mu:
            b = self._buckets.get(key)
            if b is not None and b.tat == tat:
                b.tat -= amount

    def _storeLocked(self, key: str, tat: float, interval: float, burst: int, now: float) -> None:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self._SWEEP_AT:
                # Forget full buckets: a fresh one is the same.
                for k in [k for k, v in self._buckets.items() if v.tat <= now]:
                    del self._buckets[k]
            self._buckets[key] = _Bucket(tat, interval, burst)
        else:
            b.tat, b.interval, b.burst = tat, interval, burst


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    """The policy of a local breaker (used while the service is unreachable).

    failure_threshold: consecutive failures that open it (default 5).
    recovery_timeout: seconds it stays open before admitting probes (60).
    half_open_max_calls: probes at once while half-open (1).
    success_threshold: successful probes that close it (1).
    probe_timeout: seconds a probe may take before its lease is reclaimed (30).
    """

    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    probe_timeout: float = 30.0


@dataclass(frozen=True)
class LocalAdmission:
    """A local breaker decision."""

    allowed: bool
    state: str
    generation: int
    permit_id: str = ""
    retry_after: float = 0.0


@dataclass(frozen=True)
class LocalStatus:
    """A local breaker's state."""

    state: str
    generation: int
    consecutive_failures: int
    opened_at: Optional[float]
    next_probe_at: Optional[float]
    probes_in_flight: int


@dataclass
class _Breaker:
    state: str = CLOSED
    generation: int = 1
    failures: int = 0
    successes: int = 0
    opened_at: float = 0.0
    ever_opened: bool = False
    permits: Dict[str, float] = field(default_factory=dict)  # permit -> lease expiry


class LocalBreakers:
    """Circuit breakers by name, in process memory. Safe across threads."""

    def __init__(self) -> None:
        self._mu = threading.Lock()  # protects the fields below
        self._breakers: Dict[str, _Breaker] = {}

    def _getLocked(self, name: str, s: BreakerSettings, now: float) -> _Breaker:
        b = self._breakers.get(name)
        if b is None:
            b = self._breakers[name] = _Breaker()
        if b.state == OPEN and now >= b.opened_at + s.recovery_timeout:
            b.state, b.generation, b.successes, b.permits = HALF_OPEN, b.generation + 1, 0, {}
        if b.state == HALF_OPEN:
            for p in [p for p, exp in b.permits.items() if exp <= now]:
                del b.permits[p]
        return b

    def allow(self, now: float, name: str, s: BreakerSettings) -> LocalAdmission:
        """Admits one call (a leased probe while half-open) or refuses it with
        the time until it could be admitted."""
        with self._mu:
            b = self._getLocked(name, s, now)
            if b.state == CLOSED:
                return LocalAdmission(True, CLOSED, b.generation)
            if b.state == OPEN:
                return LocalAdmission(False, OPEN, b.generation, retry_after=b.opened_at + s.recovery_timeout - now)
            if len(b.permits) < max(s.half_open_max_calls, 1):
                permit = secrets.token_hex(8)
                b.permits[permit] = now + s.probe_timeout
                return LocalAdmission(True, HALF_OPEN, b.generation, permit)
            return LocalAdmission(False, HALF_OPEN, b.generation, retry_after=max(min(b.permits.values()) - now, 0.001))

    def report(self, now: float, name: str, s: BreakerSettings, success: bool, generation: int, permit_id: str) -> Tuple[str, bool]:
        """Records an outcome; returns (state after, ignored). An outcome of
        another generation (0 means the current one) or with a permit that is
        spent, reclaimed or missing while half-open is ignored."""
        with self._mu:
            b = self._getLocked(name, s, now)
            if generation and generation != b.generation:
                return b.state, True
            if b.state == HALF_OPEN:
                if not permit_id or b.permits.pop(permit_id, None) is None:
                    return b.state, True
                if success:
                    b.successes += 1
                    if b.successes >= max(s.success_threshold, 1):
                        b.state, b.generation, b.failures, b.permits = CLOSED, b.generation + 1, 0, {}
                else:
                    self._openLocked(b, now)
                return b.state, False
            if b.state == OPEN:
                return b.state, True
            if success:
                b.failures = 0
            else:
                b.failures += 1
                if b.failures >= max(s.failure_threshold, 1):
                    self._openLocked(b, now)
            return b.state, False

    @staticmethod
    def _openLocked(b: _Breaker, now: float) -> None:
        b.state, b.generation, b.opened_at, b.ever_opened, b.permits = OPEN, b.generation + 1, now, True, {}
        b.failures = 0

    def release(self, name: str, permit_id: str) -> None:
        """Gives back an unused probe lease."""
        if not permit_id:
            return
        with self._mu:
            b = self._breakers.get(name)
            if b is not None:
                b.permits.pop(permit_id, None)

    def status(self, now: float, name: str, s: BreakerSettings) -> LocalStatus:
        """Returns a breaker's state (CLOSED, generation 1 when never used)."""
        with self._mu:
            b = self._getLocked(name, s, now)
            return LocalStatus(
                b.state,
                b.generation,
                b.failures,
                b.opened_at if b.ever_opened else None,
                b.opened_at + s.recovery_timeout if b.state == OPEN else None,
                len(b.permits),
            )

    def reset(self, now: float, name: str, s: BreakerSettings, state: str) -> LocalStatus:
        """Forces a breaker CLOSED or OPEN."""
        with self._mu:
            b = self._getLocked(name, s, now)
            if state == OPEN:
                self._openLocked(b, now)
            else:
                b.state, b.generation, b.failures, b.permits = CLOSED, b.generation + 1, 0, {}
        return self.status(now, name, s)
