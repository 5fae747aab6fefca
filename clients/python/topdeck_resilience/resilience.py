"""Rate limits, retries, circuit breakers and error tracking (the seed's
``topdeck.common.resilience``, same names), backed by the fleet-wide
resilience service.

* :class:`RateLimiter`: a token bucket shared by every process and replica
  that uses the same ``key`` (Acquire). ``await limiter.acquire()``.
* :func:`retry_with_backoff` / :class:`RetryConfig`: exponential backoff with
  full jitter for async and sync functions, honouring the server's
  retry-after hints.
* :class:`CircuitBreaker`: a fleet-wide breaker (Acquire, ReportOutcome,
  BreakerState) as a decorator, ``async with``/``with``, or ``call()``.
* :class:`ErrorTracker`: counts and records the outcomes of a batch (local).

Beyond the seed: a RateLimiter can bound the calls in flight fleet-wide
(``max_in_flight``, a distributed bulkhead) and take several limits in one
all-or-nothing decision (``also=``); its slots are given back when an
``async with``/``with`` block or a decorated call ends, even on an
exception. What an upstream says of its own limits (a 429's
``Retry-After``, ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset``, gRPC
RetryInfo) found on an exception leaving a RateLimiter or CircuitBreaker
block, or retried by ``limiter.retrying()``, is reported to the
service for the limiter's key (:mod:`topdeck_resilience.upstream`): the key
is paused fleet-wide, and every process's limiter backs off.

When the service cannot be reached, limiters and breakers decide with local,
per-process state (see :mod:`topdeck_resilience.client`). Everything here is
safe across threads and tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import inspect
import logging
import random
import secrets
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

import grpc

from ._gen import resilience_pb2 as pb
from ._status import details_from_metadata
from . import upstream as _up
from .client import (
    _acquire_wait,
    _deadline_var,
    BreakerSettings,
    BreakerStatus,
    CircuitState,
    Decision,
    RateLimit,
    Reason,
    ReportResult,
    ResilienceClient,
    _dur,
    _secs,
    deadline,
    get_default_client,
    set_default_client,
    time_left,
)
from .errors import (
    CircuitOpenError,
    InvalidArgumentError,
    RateLimited,
    ResilienceError,
    ServiceError,
    ServiceUnavailableError,
    StoreUnavailableError,
)

__all__ = [
    "ResilienceClient",
    "RateLimiter",
    "RateLimit",
    "RetryConfig",
    "retry_with_backoff",
    "retry_after_of",
    "with_rate_limit",
    "CircuitBreaker",
    "CircuitState",
    "BreakerSettings",
    "BreakerStatus",
    "Decision",
    "Reason",
    "ReportResult",
    "ErrorTracker",
    "LimitDecision",
    "AdmissionDecision",
    "RateLimited",
    "CircuitOpenError",
    "ResilienceError",
    "ServiceError",
    "ServiceUnavailableError",
    "StoreUnavailableError",
    "InvalidArgumentError",
    "deadline",
    "time_left",
    "get_default_client",
    "set_default_client",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_MAX_WAIT_CHUNK = 60.0


# ---------------------------------------------------------------------------
# RateLimiter


class RateLimiter:
    """A token bucket of ``max_calls`` per ``time_window`` seconds (capacity
    ``burst``, default ``max_calls``), shared fleet-wide by everything that
    uses the same ``key``: every process and every replica of the service
    give one exact limit (GCRA in the service's store).

    ``policy="name"`` uses a limit from the server's configuration instead;
    ``max_calls``/``time_window`` are then optional and, when given, are the
    limit of local decisions while the service is unreachable (else the
    client's ``local_policies``, else such calls are admitted).

    ``max_in_flight=N, in_flight_lease=seconds`` also (or, without
    ``max_calls``, only) bounds the calls in flight on ``key`` fleet-wide:
    each admitted call holds a slot until its ``async with``/``with`` block
    or decorated call ends (even on an exception), or until the lease
    (choose it longer than the slowest call) has passed. ``also=[other,
    ...]`` adds the limits of other RateLimiters (their key and limit or
    policy; the call's ``cost`` for each) to the same decision, all or
    nothing: when any refuses none is charged, and the Decision (an
    :class:`AdmissionDecision`) says which one (``limited_by``). At most 8
    limits in all. While the service is unreachable such a limiter is
    decided per process: every limit is checked, then taken, and the slots
    are counted in this process only.

    An exception leaving an ``async with``/``with`` block or a decorated
    call that carries an upstream's answer (a 429 with ``Retry-After``,
    ``X-RateLimit-*``, gRPC RetryInfo: :func:`upstream.from_exception`) is
    reported for ``key``: the service pauses it fleet-wide, so that every
    process's limiter on it waits (or refuses) until the upstream's time.

    Usage::

        limiter = RateLimiter(max_calls=200, time_window=60.0, key="azure-devops/org-42")
        await limiter.acquire()          # waits until admitted, as the seed's did
        async with limiter:              # the same
            ...
        if await limiter.try_acquire():  # answers at once
            ...

        bulkhead = RateLimiter(key="azure-devops", max_in_flight=20, in_flight_lease=60.0)
        async with bulkhead:             # at most 20 in flight across the fleet
            ...

    Raises InvalidArgumentError (a ValueError) for a bad limit or key. Safe
    across threads and tasks; one instance may serve any number of callers.
    """

    def __init__(
        self,
        max_calls: Optional[int] = None,
        time_window: Optional[float] = None,
        *,
        key: str,
        burst: Optional[int] = None,
        policy: Optional[str] = None,
        client: Optional[ResilienceClient] = None,
        max_in_flight: Optional[int] = None,
        in_flight_lease: Optional[float] = None,
        also: Sequence["RateLimiter"] = (),
    ) -> None:
        if not key:
            raise InvalidArgumentError.local("key", "is required")
        self.max_calls = max_calls
        self.time_window = time_window
        self.key = key
        self.burst = burst
        self.policy = policy
        self.max_in_flight = max_in_flight
        self.in_flight_lease = in_flight_lease
        self.also: Tuple[RateLimiter, ...] = tuple(also)
        self._client = client
        # Requests of acquire() without a bound, by (client, cost): immutable
        # once built, shared by concurrent calls (read only).
        self._prepared: Dict[Tuple[int, int], Tuple[Any, float]] = {}
        self._held: ContextVar[Tuple[Decision, ...]] = ContextVar(f"topdeck_limiter_{key}", default=())
        has_limit = max_calls is not None or time_window is not None
        has_slots = max_in_flight is not None or in_flight_lease is not None
        if has_slots:
            if not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or not 1 <= max_in_flight <= 1_000_000:
                raise InvalidArgumentError.local("max_in_flight", f"must be an int from 1 to 1000000, got {max_in_flight!r}")
            if in_flight_lease is None or not 0 < in_flight_lease <= 3600:
                raise InvalidArgumentError.local("in_flight_lease", f"must be > 0 and at most 3600 seconds with max_in_flight, got {in_flight_lease!r}")
        if has_limit:
            self.limit: Optional[RateLimit] = RateLimit(cast(int, max_calls), cast(float, time_window), burst)
        elif not policy and not has_slots:
            raise InvalidArgumentError.local("limit", "give max_calls and time_window, policy, or max_in_flight")
        else:
            self.limit = None
        if len(self.also) + 1 > 8:
            raise InvalidArgumentError.local("also", f"at most 8 limits per call, got {len(self.also) + 1}")
        keys = [self.key] + [o.key for o in self.also]
        if len(set(keys)) != len(keys):
            raise InvalidArgumentError.local("also", f"keys must be distinct, got {keys}")
        # The limit as the API carries it (rate and/or concurrency).
        self._pb = pb.RateLimit()
        if self.limit is not None:
            self._pb.CopyFrom(self.limit._pb)  # type: ignore[attr-defined]
        if has_slots:
            self._pb.max_in_flight = cast(int, max_in_flight)
            self._pb.in_flight_lease.CopyFrom(_dur(cast(float, in_flight_lease)))
        self._extended = has_slots or bool(self.also)

    @property
    def client(self) -> ResilienceClient:
        """The client this limiter calls (``client=`` or the default one)."""
        return self._client or get_default_client()

    def _args(self) -> Dict[str, Any]:
        if self.policy:
            return {"policy": self.policy}
        return {"limit": self.limit}

    @property
    def has_slots(self) -> bool:
        """Whether this limiter (or one of ``also``) bounds calls in flight."""
        return any(lim.max_in_flight is not None for lim in (self,) + self.also)

    def _client_with_policy(self) -> ResilienceClient:
        """The client to call, which knows this limiter's limit as the local
        policy of its ``policy`` (what local decisions of it use)."""
        c = self.client
        if self.policy and self.limit is not None and self.policy not in c.local_policies:
            c.local_policies[self.policy] = self.limit
        return c

    @staticmethod
    def _bounds(max_wait: Optional[float]) -> Optional[float]:
        """The monotonic time past which acquire must not wait, or None."""
        if max_wait is None and _deadline_var.get() is None:
            return None
        now = time.monotonic()
        ends = []
        if max_wait is not None:
            ends.append(now + max(max_wait, 0.0))
        left = time_left()
        if left is not None:
            ends.append(now + left)
        return min(ends) if ends else None

    def _next(self, d: Decision, end: Optional[float], waited: float) -> float:
        """After a refusal: how long to sleep before asking again, or raises
        RateLimited when the tokens cannot be there within the bound."""
        left = _MAX_WAIT_CHUNK if end is None else max(end - time.monotonic(), 0.0)
        if getattr(d, "limit_reason", "") == "concurrency_limited" or d.reason == Reason.CONCURRENCY_LIMITED:
            # The service queued the call for a slot within the chunk and none
            # came: ask again (its retry_after is only a hint) unless bounded.
            if end is not None and left <= 0:
                raise RateLimited(d.retry_after, key=getattr(d, "limited_by", "") or self.key, local=d.local, decision=d)
            return min(max(d.retry_after, 0.01), 1.0, left if end is not None else 1.0)
        # A paused key (the upstream said to back off) is waited out like
        # missing tokens: its retry_after is exact.
        waitable = d.reason in (Reason.RATE_LIMITED, Reason.UPSTREAM_THROTTLED)
        if not waitable or d.retry_after <= 0 or (end is not None and d.retry_after > left):
            if d.reason == Reason.CIRCUIT_OPEN:
                raise CircuitOpenError(d.retry_after, local=d.local)
            raise RateLimited(d.retry_after, key=getattr(d, "limited_by", "") or self.key, local=d.local, decision=d)
        # Unbounded (or promised within the bound but not reserved: a racing
        # caller took them): sleep until a wait of one chunk would cover it.
        return d.retry_after - left if d.retry_after > left else d.retry_after

    async def acquire(self, cost: int = 1, max_wait: Optional[float] = None) -> Decision:
        """Returns once ``cost`` tokens are taken. The service reserves tokens
        that will be there within ``max_wait`` seconds (and the current
        :func:`deadline`) and holds the call until then; ``max_wait=None``
        waits until admitted, as the seed's limiter did, asking again every
        60 s at most. Never waits past ``max_wait`` or the deadline.

        Returns the :class:`Decision` (``degraded``/``local`` tell a local
        decision). Raises RateLimited (``retry_after``) when the tokens
        cannot be there in time, InvalidArgumentError (e.g. ``cost`` above
        the burst), NotFoundError (unknown policy), StoreUnavailableError
        (a ``deny`` policy while the service's store is down),
        ServiceUnavailableError (client ``fail_open=False``). Cancelling it
        gives reserved tokens back.
        """
        c = self._client_with_policy()
        end = self._bounds(max_wait)
        args = self._args()
        waited = 0.0
        while True:
            if self._extended:
                chunk = _MAX_WAIT_CHUNK if end is None else max(end - time.monotonic(), 0.0)
                d = await _ext_acquire(c, self, cost, chunk, "", None, False)
            elif end is None:
                # The common case (wait until admitted): one prepared request per cost.
                prepared = self._prepared.get((id(c), cost))
                if prepared is None:
                    prepared = self._prepared[(id(c), cost)] = c._acquire_request(
                        self.key, self.limit if not self.policy else None, self.policy, cost, _MAX_WAIT_CHUNK, "", False
                    )
                req, chunk = prepared
                d = await c._acquire(req, chunk, self.key, self.limit if not self.policy else None, self.policy, cost, "", False, None)
            else:
                chunk = max(end - time.monotonic(), 0.0)
                d = await c.acquire(self.key, cost=cost, max_wait=chunk, **args)
            if d.allowed:
                return d if not waited else _with_waited(d, waited)
            pause = self._next(d, end, waited)
            await asyncio.sleep(pause)
            waited += pause

    def acquire_sync(self, cost: int = 1, max_wait: Optional[float] = None) -> Decision:
        """The synchronous twin of :meth:`acquire` (blocks the thread)."""
        c = self._client_with_policy()
        end = self._bounds(max_wait)
        args = self._args()
        waited = 0.0
        while True:
            chunk = _MAX_WAIT_CHUNK if end is None else max(end - time.monotonic(), 0.0)
            if self._extended:
                d = _ext_acquire_sync(c, self, cost, chunk, "", None, False)
            else:
                d = c.acquire_sync(self.key, cost=cost, max_wait=chunk, **args)
            if d.allowed:
                return d if not waited else _with_waited(d, waited)
            pause = self._next(d, end, waited)
            time.sleep(pause)
            waited += pause

    async def try_acquire(self, cost: int = 1) -> bool:
        """Takes ``cost`` tokens if they are there now: True, else False
        (never waits). Raises as :meth:`acquire`, except RateLimited; and
        InvalidArgumentError for a limiter with ``max_in_flight`` (a bool
        cannot give its slot back: use ``async with`` or :meth:`check` and
        :meth:`release`)."""
        self._no_bool_with_slots()
        return (await self.check(cost)).allowed

    def try_acquire_sync(self, cost: int = 1) -> bool:
        """The synchronous twin of :meth:`try_acquire`."""
        self._no_bool_with_slots()
        c = self._client_with_policy()
        if self._extended:
            return _ext_acquire_sync(c, self, cost, 0.0, "", None, False).allowed
        return c.acquire_sync(self.key, cost=cost, **self._args()).allowed

    def _no_bool_with_slots(self) -> None:
        if self.has_slots:
            raise InvalidArgumentError.local("max_in_flight", "try_acquire cannot give a slot back: use async with, or check() and release()")

    async def check(self, cost: int = 1, *, dry_run: bool = False) -> Decision:
        """Like try_acquire but returns the whole :class:`Decision`
        (remaining, retry_after, degraded...; an :class:`AdmissionDecision`
        with every limit's answer for a limiter with ``also`` or
        ``max_in_flight``). ``dry_run`` takes nothing. An allowed Decision
        that holds slots must be given back with :meth:`release`."""
        c = self._client_with_policy()
        if self._extended:
            return await _ext_acquire(c, self, cost, 0.0, "", None, dry_run)
        return await c.acquire(self.key, cost=cost, dry_run=dry_run, **self._args())

    async def release(self, decision: Decision) -> int:
        """Gives back the concurrency slots ``decision`` holds (from
        :meth:`check` or :meth:`acquire`) and returns how many: 0 when it
        holds none, they were released already or their lease ended. Never
        raises for the service's absence (the lease is the backstop)."""
        return await _release(self.client, decision)

    def release_sync(self, decision: Decision) -> int:
        """The synchronous twin of :meth:`release`."""
        return _release_sync(self.client, decision)

    def retrying(
        self, config: Optional["RetryConfig"] = None, exceptions: Optional[Tuple[Type[BaseException], ...]] = None
    ) -> Callable[[F], F]:
        """:func:`retry_with_backoff` that also reports, before each sleep,
        what the failed attempt's exception says of the upstream's limits (a
        429's or 503's ``Retry-After``, ``X-RateLimit-Remaining`` /
        ``X-RateLimit-Reset`` on ``exc.response``, gRPC RetryInfo:
        :func:`upstream.from_exception`) for this limiter's key: the service
        pauses the key fleet-wide, so every process using it backs off too.
        It does not take tokens (decorate with the limiter for that, where
        the report happens on the block's exit). A failed report is logged,
        never raised."""
        return _retry(config, exceptions, self)

    async def report_upstream(self, up: "_up.Upstream") -> "_up.UpstreamResult":
        """Reports what the upstream said (:mod:`topdeck_resilience.upstream`)
        for this limiter's key: the service pauses it fleet-wide and lowers
        its bucket. Raises as :func:`upstream.report_upstream`."""
        return await _up.report_upstream(self.client, self.key, up, limit=self._pb if self.limit is not None else None, policy=self.policy)

    def report_upstream_sync(self, up: "_up.Upstream") -> "_up.UpstreamResult":
        """The synchronous twin of :meth:`report_upstream`."""
        return _up.report_upstream_sync(self.client, self.key, up, limit=self._pb if self.limit is not None else None, policy=self.policy)

    def _feedback(self, exc: Optional[BaseException]) -> Optional[Any]:
        """The UpstreamFeedback of an exception leaving a block, or None."""
        if exc is None:
            return None
        up = _up.from_exception(exc)
        if not up:
            return None
        return _up.feedback(self.key, up, limit=self._pb if self.limit is not None else None, policy=self.policy)

    async def __aenter__(self) -> Decision:
        d = await self.acquire()
        _push(self._held, d)
        return d

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await _end(self.client, _pop(self._held), self._feedback(exc))

    def __enter__(self) -> Decision:
        d = self.acquire_sync()
        _push(self._held, d)
        return d

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        _end_sync(self.client, _pop(self._held), self._feedback(exc))

    def __call__(self, func: F) -> F:
        """Decorates an async or sync function to run inside the limiter
        (``async with``/``with``): admitted first, its slots given back and
        its upstream's answer reported when it returns or raises."""
        return _run_inside(self, func)

    def __repr__(self) -> str:
        what = f"policy={self.policy!r}" if self.policy else f"max_calls={self.max_calls}, time_window={self.time_window}"
        return f"RateLimiter({what}, key={self.key!r})"


def _with_waited(d: Decision, waited: float) -> Decision:
    if isinstance(d, AdmissionDecision):
        return dataclasses.replace(d, waited=d.waited + waited)
    return Decision(
        d.allowed, d.reason, d.remaining, d.retry_after, d.reset_after, d.waited + waited, d.breaker_state,
        d.degraded, d.local, d.permit_id, d.breaker_generation,
    )


# ---------------------------------------------------------------------------
# Several limits and concurrency slots (AcquireRequest.limits, slot_token)


_REASON_NAMES = {
    pb.ACQUIRE_REASON_ALLOWED: "allowed",
    pb.ACQUIRE_REASON_RATE_LIMITED: "rate_limited",
    pb.ACQUIRE_REASON_CIRCUIT_OPEN: "circuit_open",
    pb.ACQUIRE_REASON_UPSTREAM_THROTTLED: "upstream_throttled",
    pb.ACQUIRE_REASON_CONCURRENCY_LIMITED: "concurrency_limited",
}
_STATES = {pb.CIRCUIT_STATE_CLOSED: CircuitState.CLOSED, pb.CIRCUIT_STATE_OPEN: CircuitState.OPEN, pb.CIRCUIT_STATE_HALF_OPEN: CircuitState.HALF_OPEN}


@dataclass(frozen=True)
class LimitDecision:
    """One limit's answer within an :class:`AdmissionDecision` ("why was I
    limited"). ``reason`` is "allowed", "rate_limited",
    "upstream_throttled" or "concurrency_limited"; ``in_flight`` the slots
    held on a concurrency limit's key after the decision; ``shadow`` a
    limit in shadow mode (never enforced). Times in seconds. Immutable."""

    key: str
    allowed: bool
    reason: str = "allowed"
    remaining: int = 0
    retry_after: float = 0.0
    reset_after: float = 0.0
    in_flight: int = 0
    shadow: bool = False


@dataclass(frozen=True, eq=False)
class AdmissionDecision(Decision):
    """The Decision of a RateLimiter with ``also`` or ``max_in_flight``.

    Beyond :class:`Decision`: ``limits`` (every limit's answer, the
    limiter's own key first), ``limited_by`` (the refusing key with the
    longest retry_after), ``limit_reason`` (the service's reason:
    "allowed", "rate_limited", "upstream_throttled", "concurrency_limited",
    "circuit_open"; ``reason`` says RATE_LIMITED for any limit's refusal),
    ``shadow_reason`` (what a shadow-mode policy would have answered) and
    ``slot_token`` (the slots an admitted call holds on the service).
    Immutable.
    """

    limits: Tuple[LimitDecision, ...] = ()
    limited_by: str = ""
    limit_reason: str = "allowed"
    shadow_reason: str = ""
    slot_token: str = ""
    local_slots: Optional[Tuple[str, Tuple[str, ...]]] = None

    @property
    def holds_slots(self) -> bool:
        """Whether the admitted call holds concurrency slots to give back."""
        return bool(self.slot_token) or self.local_slots is not None


def _members(lim: "RateLimiter") -> Tuple["RateLimiter", ...]:
    return (lim,) + lim.also


def _ext_request(lim: "RateLimiter", cost: int, max_wait: float, breaker: str, dry_run: bool) -> Tuple[Any, float]:
    max_wait = _acquire_wait(cost, max_wait)
    req = pb.AcquireRequest(key=lim.key, cost=cost, breaker=breaker, dry_run=dry_run)
    if lim.policy:
        req.policy = lim.policy
    else:
        req.limit.CopyFrom(lim._pb)
    for o in lim.also:
        lr = req.limits.add(key=o.key, cost=cost)
        if o.policy:
            lr.policy = o.policy
        else:
            lr.limit.CopyFrom(o._pb)
    if max_wait > 0:
        req.max_wait.CopyFrom(_dur(max_wait))
    return req, max_wait


def _ext_decision(r: Any) -> AdmissionDecision:
    why = _REASON_NAMES.get(r.reason, "allowed")
    reason = {"circuit_open": Reason.CIRCUIT_OPEN, "allowed": Reason.ALLOWED}.get(why, Reason.RATE_LIMITED)
    return AdmissionDecision(
        r.allowed, reason, r.remaining, _secs(r.retry_after), _secs(r.reset_after), _secs(r.waited),
        _STATES.get(r.breaker_state), r.degraded, False, r.permit_id, r.breaker_generation,
        limits=tuple(
            LimitDecision(ld.key, ld.allowed, _REASON_NAMES.get(ld.reason, "allowed"), ld.remaining, _secs(ld.retry_after),
                          _secs(ld.reset_after), ld.in_flight, ld.shadow)
            for ld in r.limits
        ),
        limited_by=r.limited_by,
        limit_reason=why,
        shadow_reason=_REASON_NAMES.get(r.shadow_reason, "") if r.shadow_reason else "",
        slot_token=r.slot_token,
    )


class _LocalSlots:
    """Concurrency slots of local decisions (the service unreachable), per
    client and key, with their leases. Safe across threads."""

    def __init__(self) -> None:
        self._mu = threading.Lock()  # protects _held
        self._held: Dict[Tuple[int, str], Dict[str, float]] = {}

    def take(self, owner: int, now: float, wants: Sequence[Tuple[str, int, float]]) -> Tuple[Optional[str], Optional[str], float]:
        """Takes one slot of each (key, max_in_flight, lease) all or nothing:
        (slot id, None, 0) or (None, the full key, seconds to its oldest
        lease's end)."""
        with self._mu:
            for key, most, _ in wants:
                held = self._held.setdefault((owner, key), {})
                for sid in [sid for sid, exp in held.items() if exp <= now]:
                    del held[sid]
                if len(held) >= most:
                    return None, key, max(min(held.values()) - now, 0.0)
            sid = secrets.token_hex(16)
            for key, _, lease in wants:
                self._held[(owner, key)][sid] = now + lease
            return sid, None, 0.0

    def release(self, owner: int, sid: str, keys: Sequence[str]) -> int:
        n = 0
        with self._mu:
            for key in keys:
                held = self._held.get((owner, key))
                if held is not None and held.pop(sid, None) is not None:
                    n += 1
        return n


_local_slots = _LocalSlots()


def _ext_local(c: ResilienceClient, lim: "RateLimiter", cost: int, breaker: str, settings: Optional[BreakerSettings], dry_run: bool) -> AdmissionDecision:
    """Decides an extended limiter locally, per process: the breaker, then
    every rate limit checked and, when all admit, taken; then one local slot
    of each concurrency limit. No wait (max_wait is not honoured locally
    for several limits)."""
    base, _, permit = c._local_acquire("", None, None, cost, 0.0, breaker, dry_run, settings)
    common = dict(breaker_state=base.breaker_state, degraded=True, local=True, breaker_generation=base.breaker_generation)
    if not base.allowed:
        return AdmissionDecision(False, Reason.CIRCUIT_OPEN, retry_after=base.retry_after, limit_reason="circuit_open", **common)  # type: ignore[arg-type]
    now = c._clock()
    rates = []
    for m in _members(lim):
        rl = m.limit if m.limit is not None else (c.local_policies.get(m.policy) if m.policy else None)
        if rl is not None:
            if cost > rl.capacity:
                c.local_breakers.release(breaker, permit)
                raise InvalidArgumentError.local("cost", f"{cost} exceeds the burst {rl.capacity} of {m.key!r}")
            rates.append((m.key, rl))
    answers: Dict[str, LimitDecision] = {}
    refused: Optional[LimitDecision] = None
    for key, rl in rates:
        res = c.local_limiter.acquire(now, key, rl.max_calls, rl.time_window, rl.burst or 0, cost, 0.0, True)
        answers[key] = LimitDecision(key, res.allowed, "allowed" if res.allowed else "rate_limited", res.remaining, res.retry_after, res.reset_after)
        if not res.allowed and (refused is None or res.retry_after > refused.retry_after):
            refused = answers[key]
    wants = [(m.key, cast(int, m.max_in_flight), cast(float, m.in_flight_lease)) for m in _members(lim) if m.max_in_flight is not None]
    sid = None
    if refused is None and wants and not dry_run:
        sid, full, wait = _local_slots.take(id(c), now, wants)
        if sid is None:
            refused = answers[cast(str, full)] = LimitDecision(cast(str, full), False, "concurrency_limited", retry_after=wait)
    limits = tuple(answers.get(m.key, LimitDecision(m.key, True)) for m in _members(lim))
    if refused is not None:
        c.local_breakers.release(breaker, permit)
        return AdmissionDecision(False, Reason.RATE_LIMITED, retry_after=refused.retry_after, limits=limits, limited_by=refused.key,
                                 limit_reason=refused.reason, **common)  # type: ignore[arg-type]
    if not dry_run:
        for key, rl in rates:
            c.local_limiter.acquire(now, key, rl.max_calls, rl.time_window, rl.burst or 0, cost, 0.0, False)
    first = limits[0]
    return AdmissionDecision(True, Reason.ALLOWED, first.remaining, 0.0, first.reset_after, permit_id=permit, limits=limits,
                             local_slots=(sid, tuple(w[0] for w in wants)) if sid else None, **common)  # type: ignore[arg-type]


async def _ext_acquire(c: ResilienceClient, lim: "RateLimiter", cost: int, max_wait: float, breaker: str,
                       settings: Optional[BreakerSettings], dry_run: bool) -> AdmissionDecision:
    req, max_wait = _ext_request(lim, cost, max_wait, breaker, dry_run)
    return await c._call_or_local("Acquire", req, _ext_decision, lambda: _ext_local(c, lim, cost, breaker, settings, dry_run), max_wait)


def _ext_acquire_sync(c: ResilienceClient, lim: "RateLimiter", cost: int, max_wait: float, breaker: str,
                      settings: Optional[BreakerSettings], dry_run: bool) -> AdmissionDecision:
    req, max_wait = _ext_request(lim, cost, max_wait, breaker, dry_run)
    return c._call_or_local_sync("Acquire", req, _ext_decision, lambda: _ext_local(c, lim, cost, breaker, settings, dry_run), max_wait)


def _release_locally(c: ResilienceClient, d: Decision) -> Optional[int]:
    """Gives back the local slots d holds and returns how many (0 when it
    holds no slots at all), or None when its slots are the service's (a
    Release with its slot_token is needed)."""
    ls = getattr(d, "local_slots", None)
    if ls is not None:
        return _local_slots.release(id(c), ls[0], ls[1])
    return None if getattr(d, "slot_token", "") else 0


async def _release(c: ResilienceClient, d: Decision) -> int:
    n = _release_locally(c, d)
    if n is not None:
        return n
    tok = cast(AdmissionDecision, d).slot_token
    try:
        r = await asyncio.shield(c._call("rs", "Release", pb.ReleaseRequest(slot_token=tok)))
    except (ResilienceError, asyncio.TimeoutError) as e:
        logger.warning("concurrency slots not released (their lease will end): %s", e)
        return 0
    return int(r.released)


def _release_sync(c: ResilienceClient, d: Decision) -> int:
    n = _release_locally(c, d)
    if n is not None:
        return n
    tok = cast(AdmissionDecision, d).slot_token
    try:
        r = c._call_sync("rs", "Release", pb.ReleaseRequest(slot_token=tok))
    except (ResilienceError, TimeoutError) as e:
        logger.warning("concurrency slots not released (their lease will end): %s", e)
        return 0
    return int(r.released)


def _extras_request(d: Decision, fb: Optional[Any]) -> Optional[Any]:
    """A ReportOutcome without a breaker that releases d's slots and passes
    on fb, or None when a Release (or nothing) is enough; logs fb of a
    local decision as not reported."""
    if fb is None:
        return None
    if d.local:
        logger.warning("upstream feedback for %r not reported: decided locally", fb.key)
        return None
    req = pb.ReportOutcomeRequest(slot_token=getattr(d, "slot_token", ""))
    req.upstream.append(fb)
    return req


async def _end(c: ResilienceClient, d: Decision, fb: Optional[Any]) -> None:
    """Ends a call admitted by a RateLimiter: its slots back, fb passed on,
    in one ReportOutcome (or a Release). Never raises (best effort)."""
    req = _extras_request(d, fb)
    if req is None:
        await _release(c, d)
        return
    try:
        await asyncio.shield(c._call("rs", "ReportOutcome", req))
    except (ResilienceError, asyncio.TimeoutError) as e:
        logger.warning("upstream feedback for %r not reported: %s", fb.key if fb is not None else "", e)
        await _release(c, d)


def _end_sync(c: ResilienceClient, d: Decision, fb: Optional[Any]) -> None:
    """The synchronous twin of :func:`_end`."""
    req = _extras_request(d, fb)
    if req is None:
        _release_sync(c, d)
        return
    try:
        c._call_sync("rs", "ReportOutcome", req)
    except (ResilienceError, TimeoutError) as e:
        logger.warning("upstream feedback for %r not reported: %s", fb.key if fb is not None else "", e)
        _release_sync(c, d)


async def with_rate_limit(rate_limiter: RateLimiter, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Acquires a token of ``rate_limiter``, then calls ``func`` (awaiting it
    when it is a coroutine function) and returns its result. Raises what
    ``acquire()`` raises, or ``func``'s exception."""
    await rate_limiter.acquire()
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


# ---------------------------------------------------------------------------
# Retry


class RetryConfig:
    """How :func:`retry_with_backoff` retries.

    Args:
        max_attempts: attempts in all, the first included (default 3).
        initial_delay: the backoff cap of the first retry, seconds (1.0).
        max_delay: the largest backoff cap, seconds (60.0).
        exponential_base: the cap grows by this factor per attempt (2.0).
        jitter: full jitter (default True): sleep a uniform random time in
            [0, cap]; False sleeps the cap.
        retry_on: exception types that are retried (default (Exception,)).
        deadline: seconds from the first attempt after which no sleep may end
            (None: only the ambient :func:`deadline`, if any).
        before_sleep: called as ``before_sleep(attempt, exception, delay)``
            before each sleep (attempt counts from 1).

    A retry-after hint on the exception (:func:`retry_after_of`) raises the
    sleep to at least that hint, even above max_delay; a sleep that would end
    past the deadline is not taken and the exception is raised at once.
    A plain value; do not mutate it while it is in use.
    """

    def __init__(
        self,
        max_attempts: int = 3,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        exponential_base: float = 2.0,
        jitter: bool = True,
        retry_on: Tuple[Type[BaseException], ...] = (Exception,),
        *,
        deadline: Optional[float] = None,
        before_sleep: Optional[Callable[[int, BaseException, float], None]] = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"RetryConfig: max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.exponential_base = exponential_base
        self.jitter = jitter
        self.retry_on = tuple(retry_on)
        self.deadline = deadline
        self.before_sleep = before_sleep

    def backoff(self, attempt: int) -> float:
        """The sleep before retry number ``attempt`` (0 = first retry),
        without hints: full jitter over ``min(max_delay, initial_delay *
        exponential_base ** attempt)``."""
        cap = min(self.max_delay, self.initial_delay * (self.exponential_base ** attempt))
        return random.uniform(0.0, cap) if self.jitter else cap

    def __repr__(self) -> str:
        return (
            f"RetryConfig(max_attempts={self.max_attempts}, initial_delay={self.initial_delay}, max_delay={self.max_delay}, "
            f"exponential_base={self.exponential_base}, jitter={self.jitter}, retry_on={self.retry_on})"
        )


def _parse_retry_after(value: Any) -> Optional[float]:
    if value is None:
        return None
    s = str(value).strip()
    try:
        return max(float(s), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _header(headers: Any, name: str) -> Any:
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    v = get(name)
    if v is None:
        v = get(name.lower())
    return v


def retry_after_of(exc: BaseException) -> Optional[float]:
    """The retry-after hint carried by an exception, in seconds, or None:

    * ``retry_after`` of RateLimited, CircuitOpenError and ServiceError
      (the service's RetryInfo);
    * a RetryInfo detail of a ``grpc.RpcError`` from any gRPC upstream;
    * the ``Retry-After`` header (seconds or an HTTP date) of an HTTP 429 or
      503 response on the exception: ``exc.response`` with ``status_code``
      (httpx.HTTPStatusError, requests.HTTPError) or ``status``, or the
      exception's own ``status``/``headers`` (aiohttp.ClientResponseError).

    Duck-typed: none of those libraries is imported. Raises nothing.
    """
    try:
        ra = getattr(exc, "retry_after", None)
        if isinstance(ra, (int, float)) and not isinstance(ra, bool):
            return max(float(ra), 0.0) if ra > 0 else None
        if isinstance(exc, grpc.RpcError):
            tm = getattr(exc, "trailing_metadata", None)
            if callable(tm):
                d = details_from_metadata(tm())
                if d.retry_after is not None:
                    return d.retry_after
            return None
        for holder, status in _up._http_answers(exc):
            if status in (429, 503):
                v = _parse_retry_after(_header(getattr(holder, "headers", None), "Retry-After"))
                if v is not None:
                    return v
    except Exception:  # a hint must never break the retry
        return None
    return None


def retry_with_backoff(
    config: Optional[RetryConfig] = None,
    exceptions: Optional[Tuple[Type[BaseException], ...]] = None,
) -> Callable[[F], F]:
    """Decorates an async or a sync function to retry it with exponential
    backoff and full jitter (:class:`RetryConfig`)::

        @retry_with_backoff(config=RetryConfig(max_attempts=3))
        async def risky_api_call(): ...

    ``exceptions`` (the seed's argument) overrides ``config.retry_on``.
    Every sleep is at least the exception's retry-after hint
    (:func:`retry_after_of`: RateLimited/CircuitOpenError ``retry_after``,
    gRPC RetryInfo, HTTP 429/503 Retry-After); none ends past
    ``config.deadline`` or the ambient :func:`deadline`: then the last
    exception is raised at once. Raises the last exception when attempts run
    out, and at once an exception not retried. Cancellation is never
    retried. The wrapper is as thread/task safe as the function.

    To report what a failed attempt's upstream said of its limits to the
    service (so that every process backs off), run the function inside a
    RateLimiter (``@retry_with_backoff(...)`` over ``@limiter``) or use
    :meth:`RateLimiter.retrying`.
    """
    return _retry(config, exceptions, None)


def _retry(
    config: Optional[RetryConfig], exceptions: Optional[Tuple[Type[BaseException], ...]], limiter: Optional["RateLimiter"]
) -> Callable[[F], F]:
    """retry_with_backoff, reporting each failed attempt's upstream
    feedback for ``limiter``'s key when it is given."""
    cfg = config or RetryConfig()
    retry_on = tuple(exceptions) if exceptions is not None else cfg.retry_on

    def plan(attempt: int, exc: BaseException, start: float, name: str) -> Optional[float]:
        """The sleep before the next attempt, or None to give up."""
        if attempt + 1 >= cfg.max_attempts or not isinstance(exc, retry_on) or isinstance(exc, asyncio.CancelledError):
            return None
        delay = cfg.backoff(attempt)
        hint = retry_after_of(exc)
        if hint is not None:
            delay = max(delay, hint)
        now = time.monotonic()
        ends = []
        if cfg.deadline is not None:
            ends.append(start + cfg.deadline)
        left = time_left()
        if left is not None:
            ends.append(now + left)
        if ends and now + delay > min(ends):
            logger.warning("%s failed (attempt %d/%d); not retrying: the next try would pass the deadline: %s",
                           name, attempt + 1, cfg.max_attempts, exc)
            return None
        logger.warning("%s failed (attempt %d/%d), retrying in %.2fs: %s", name, attempt + 1, cfg.max_attempts, delay, exc)
        if cfg.before_sleep is not None:
            cfg.before_sleep(attempt + 1, exc, delay)
        return delay

    def decorator(func: F) -> F:
        name = getattr(func, "__qualname__", repr(func))
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.monotonic()
                attempt = 0
                while True:
                    try:
                        return await func(*args, **kwargs)
                    except BaseException as e:
                        if limiter is not None and not isinstance(e, asyncio.CancelledError):
                            await _report_exc(limiter, e)
                        delay = plan(attempt, e, start, name)
                        if delay is None:
                            raise
                    await asyncio.sleep(delay)
                    attempt += 1

            return cast(F, awrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            attempt = 0
            while True:
                try:
                    return func(*args, **kwargs)
                except BaseException as e:
                    if limiter is not None:
                        _report_exc_sync(limiter, e)
                    delay = plan(attempt, e, start, name)
                    if delay is None:
                        raise
                time.sleep(delay)
                attempt += 1

        return cast(F, wrapper)

    return decorator


async def _report_exc(limiter: RateLimiter, exc: BaseException) -> None:
    """Reports the upstream feedback on exc for limiter's key; never raises."""
    up = _up.from_exception(exc)
    if not up:
        return
    try:
        await limiter.report_upstream(up)
    except (ResilienceError, asyncio.TimeoutError) as e:
        logger.warning("upstream feedback for %r not reported: %s", limiter.key, e)


def _report_exc_sync(limiter: RateLimiter, exc: BaseException) -> None:
    """The synchronous twin of :func:`_report_exc`."""
    up = _up.from_exception(exc)
    if not up:
        return
    try:
        limiter.report_upstream_sync(up)
    except (ResilienceError, TimeoutError) as e:
        logger.warning("upstream feedback for %r not reported: %s", limiter.key, e)


# ---------------------------------------------------------------------------
# CircuitBreaker


class _Admitted:
    __slots__ = ("decision", "start")

    def __init__(self, decision: Decision, start: float) -> None:
        self.decision = decision
        self.start = start


class CircuitBreaker:
    """A circuit breaker shared fleet-wide by everything that uses the same
    ``name``: closed -> open after failures -> half-open probes after the
    recovery timeout -> closed. The policy (thresholds, timeouts) is the
    server's (``breakers:`` in its configuration); ``failure_threshold`` and
    ``recovery_timeout`` (the seed's arguments) are the policy of local
    decisions while the service is unreachable.

    Each call: Acquire with the breaker (and ``limiter``'s key, in the same
    decision), the call, then ReportOutcome with the admission's
    ``permit_id`` and ``breaker_generation`` (so an outcome from before a
    state change is ignored). A refused call raises
    ``CircuitOpenError(retry_after)`` without calling the function.

    An exception of the call is a failure when it is an instance of
    ``expected_exception`` (default Exception) and not of ``exclude``;
    cancellation (and KeyboardInterrupt, SystemExit) reports nothing; the
    SDK's own RateLimited/CircuitOpenError from a nested call are not
    failures. Usage::

        breaker = CircuitBreaker("azure-devops")

        @breaker                       # async or sync functions
        async def list_projects(): ...

        async with breaker:            # or `with breaker:` in sync code
            ...

        await breaker.call(fetch, url)   # the seed's form
        await breaker.state()            # CircuitState.CLOSED / OPEN / HALF_OPEN

    With a ``limiter`` that has ``max_in_flight`` (or ``also``), its limits
    are in the same decision and its slots are given back in the outcome's
    ReportOutcome, even when the call raises or is cancelled. An exception
    carrying an upstream's answer (a 429's ``Retry-After``,
    ``X-RateLimit-*``, gRPC RetryInfo) is reported with the outcome for the
    limiter's key, which the service pauses fleet-wide.

    Safe across threads and tasks: each ``async with``/``with`` keeps its
    admission in the current context (task or thread).
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        expected_exception: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = Exception,
        *,
        client: Optional[ResilienceClient] = None,
        exclude: Tuple[Type[BaseException], ...] = (),
        limiter: Optional[RateLimiter] = None,
        on_state_change: Optional[Callable[[str, CircuitState, CircuitState], None]] = None,
    ) -> None:
        if not name:
            raise InvalidArgumentError.local("breaker", "a name is required")
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.expected_exception = expected_exception
        self.exclude = tuple(exclude)
        self.limiter = limiter
        self.on_state_change = on_state_change
        self.local_settings = BreakerSettings(failure_threshold=failure_threshold, recovery_timeout=recovery_timeout)
        self._client = client
        self._entered: ContextVar[Tuple[_Admitted, ...]] = ContextVar(f"topdeck_breaker_{name}", default=())
        self._mu = threading.Lock()  # protects _last_state
        self._last_state: Optional[CircuitState] = None

    @property
    def client(self) -> ResilienceClient:
        """The client this breaker calls (``client=`` or the default one)."""
        return self._client or get_default_client()

    def _acquire_args(self) -> Dict[str, Any]:
        args: Dict[str, Any] = {"breaker": self.name, "local_breaker": self.local_settings}
        if self.limiter is not None:
            args["key"] = self.limiter.key
            args.update(self.limiter._args())
        return args

    def _admit(self, d: Decision) -> None:
        if d.breaker_state is not None:
            self._observe(d.breaker_state)
        if not d.allowed:
            # Any refusal but the breaker's is a limit's (client.py reads the
            # service's newer reasons, upstream_throttled and
            # concurrency_limited, as ALLOWED on a refused Decision).
            if d.reason != Reason.CIRCUIT_OPEN:
                key = getattr(d, "limited_by", "") or (self.limiter.key if self.limiter else "")
                raise RateLimited(d.retry_after, key=key, local=d.local, decision=d)
            raise CircuitOpenError(d.retry_after, breaker=self.name, local=d.local)

    def _observe(self, state: CircuitState) -> None:
        with self._mu:
            prev, self._last_state = self._last_state, state
        if prev is not None and prev != state:
            logger.info("circuit breaker %r: %s -> %s", self.name, prev.value, state.value)
            if self.on_state_change is not None:
                try:
                    self.on_state_change(self.name, prev, state)
                except Exception:
                    logger.exception("circuit breaker %r: on_state_change failed", self.name)

    def is_failure(self, exc: Optional[BaseException]) -> Optional[bool]:
        """Classifies a call's exception: None (report nothing: cancelled or
        interrupted), False (a success: no exception, excluded, the SDK's own
        refusal) or True (a failure)."""
        if exc is None:
            return False
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)):
            return None
        if isinstance(exc, (RateLimited, CircuitOpenError)) or (self.exclude and isinstance(exc, self.exclude)):
            return False
        return isinstance(exc, self.expected_exception)

    def _outcome_request(self, a: _Admitted, failed: Optional[bool], fb: Optional[Any]) -> Any:
        d = a.decision
        req = pb.ReportOutcomeRequest(slot_token=getattr(d, "slot_token", ""))
        if fb is not None:
            req.upstream.append(fb)
        if failed is not None:
            req.breaker = self.name
            req.outcome = pb.OUTCOME_FAILURE if failed else pb.OUTCOME_SUCCESS
            req.latency.CopyFrom(_dur(max(time.monotonic() - a.start, 0.0)))
            req.permit_id = d.permit_id
            req.breaker_generation = d.breaker_generation
        return req

    def _extras(self, a: _Admitted, exc: Optional[BaseException]) -> Tuple[Optional[Any], bool]:
        """The upstream feedback of exc for the limiter's key, and whether
        the outcome must carry extras (slots or feedback)."""
        fb = self.limiter._feedback(exc) if self.limiter is not None else None
        d = a.decision
        return fb, not d.local and (fb is not None or bool(getattr(d, "slot_token", "")))

    def _extras_reported(self, r: Any, failed: Optional[bool]) -> None:
        """Observes the breaker state of a ReportOutcome with extras that
        carried an outcome."""
        if failed is not None:
            self._observe(_STATES.get(r.state, CircuitState.CLOSED))

    def _extras_not_reported(self, c: ResilienceClient, e: BaseException, failed: Optional[bool]) -> None:
        """After a ReportOutcome with extras failed: logs it and, the
        service being unreachable and the client failing open, counts the
        outcome in the local breaker."""
        logger.warning("circuit breaker %r: outcome not reported (slots come back with their lease): %s", self.name, e)
        if failed is not None and isinstance(e, ServiceUnavailableError) and c.fail_open:
            c._local_report(self.name, not failed, "", 0, self.local_settings)

    def _outcome_args(self, a: _Admitted) -> Dict[str, Any]:
        """The keyword arguments of report_outcome for the call admitted by a."""
        d = a.decision
        return dict(latency=time.monotonic() - a.start, permit_id=d.permit_id, breaker_generation=d.breaker_generation,
                    local=d.local, local_breaker=self.local_settings)

    def _outcome_plan(self, c: ResilienceClient, a: _Admitted, exc: Optional[BaseException]) -> Tuple[Optional[bool], Optional[Any]]:
        """What ending the call admitted by ``a`` with ``exc`` leaves to the
        service, for _finish and _finish_sync: ``failed`` (as
        :meth:`is_failure` says; None: report nothing) and the ReportOutcome
        with extras to send (None: report_outcome, when failed is not None).
        Without extras, what is local is done here: a local decision's slots
        given back, and its probe when nothing is reported."""
        failed = self.is_failure(exc)
        d = a.decision
        fb, extras = self._extras(a, exc)
        if extras:
            # One ReportOutcome: the outcome (unless cancelled), the slots back, the upstream's word.
            return failed, self._outcome_request(a, failed, fb)
        if d.local and getattr(d, "local_slots", None) is not None:
            _release_locally(c, d)
        if failed is None and d.local:
            c.local_breakers.release(self.name, d.permit_id)
        return failed, None

    async def _finish(self, a: _Admitted, exc: Optional[BaseException]) -> None:
        c = self.client
        failed, req = self._outcome_plan(c, a, exc)
        if req is not None:
            try:
                r = await asyncio.shield(c._call("rs", "ReportOutcome", req))
                self._extras_reported(r, failed)
            except (ResilienceError, asyncio.TimeoutError) as e:
                self._extras_not_reported(c, e, failed)
        elif failed is not None:
            try:
                r = await c.report_outcome(self.name, not failed, **self._outcome_args(a))
                self._observe(r.state)
            except (ResilienceError, asyncio.TimeoutError) as e:  # the outcome is best effort; never hide the call's own result
                logger.warning("circuit breaker %r: outcome not reported: %s", self.name, e)

    def _finish_sync(self, a: _Admitted, exc: Optional[BaseException]) -> None:
        c = self.client
        failed, req = self._outcome_plan(c, a, exc)
        if req is not None:
            try:
                r = c._call_sync("rs", "ReportOutcome", req)
                self._extras_reported(r, failed)
            except (ResilienceError, TimeoutError) as e:
                self._extras_not_reported(c, e, failed)
        elif failed is not None:
            try:
                r = c.report_outcome_sync(self.name, not failed, **self._outcome_args(a))
                self._observe(r.state)
            except (ResilienceError, TimeoutError) as e:
                logger.warning("circuit breaker %r: outcome not reported: %s", self.name, e)

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs ``func(*args, **kwargs)`` through the breaker (awaiting it
        when it returns an awaitable) and returns its result. Raises
        CircuitOpenError (or RateLimited with ``limiter``) without calling
        it, func's own exception, or the client's errors (ServiceError,
        ServiceUnavailableError with fail_open=False)."""
        async with self:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

    def call_sync(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The synchronous twin of :meth:`call` (blocks the thread)."""
        with self:
            return func(*args, **kwargs)

    def __call__(self, func: F) -> F:
        """Decorates an async or sync function to run through the breaker."""
        return _run_inside(self, func)

    async def __aenter__(self) -> Decision:
        if self.limiter is not None and self.limiter._extended:
            d: Decision = await _ext_acquire(self.client, self.limiter, 1, 0.0, self.name, self.local_settings, False)
        else:
            d = await self.client.acquire(**self._acquire_args())
        self._admit(d)
        _push(self._entered, _Admitted(d, time.monotonic()))
        return d

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self._finish(_pop(self._entered), exc)

    def __enter__(self) -> Decision:
        if self.limiter is not None and self.limiter._extended:
            d: Decision = _ext_acquire_sync(self.client, self.limiter, 1, 0.0, self.name, self.local_settings, False)
        else:
            d = self.client.acquire_sync(**self._acquire_args())
        self._admit(d)
        _push(self._entered, _Admitted(d, time.monotonic()))
        return d

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._finish_sync(_pop(self._entered), exc)

    async def status(self) -> BreakerStatus:
        """The breaker's full status (the service's, or the local breaker's
        while the service is unreachable: ``local=True``)."""
        st = await self.client.breaker_status(self.name, local_breaker=self.local_settings)
        self._observe(st.state)
        return st

    async def state(self) -> CircuitState:
        """The breaker's state: CircuitState.CLOSED, OPEN or HALF_OPEN (str
        values "closed", "open", "half_open")."""
        return (await self.status()).state

    def state_sync(self) -> CircuitState:
        """The synchronous twin of :meth:`state`."""
        st = self.client.breaker_status_sync(self.name, local_breaker=self.local_settings)
        self._observe(st.state)
        return st.state

    async def reset(self, state: Union[CircuitState, str] = CircuitState.CLOSED) -> BreakerStatus:
        """Forces the breaker CLOSED (default) or OPEN fleet-wide (an
        operator action; the server may require a role). Raises ServiceError,
        ServiceUnavailableError (a reset needs the service)."""
        st = await self.client.reset_breaker(self.name, state)
        self._observe(st.state)
        return st

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r})"


# ---------------------------------------------------------------------------
# ErrorTracker


class ErrorTracker:
    """Counts the successes and failures of a batch and records each failure
    with its context, so that a batch goes on despite partial failures.

    ``errors`` is a list of ``{"item_id", "error_type", "error_message",
    "context"}``. Safe across threads and tasks (one lock).
    """

    def __init__(self) -> None:
        self._mu = threading.Lock()  # protects the fields below
        self.errors: List[Dict[str, Any]] = []
        self.success_count = 0
        self.failure_count = 0

    def record_success(self, item_id: str) -> None:
        """Counts one success."""
        with self._mu:
            self.success_count += 1

    def record_error(self, item_id: str, error: BaseException, context: Optional[Dict[str, Any]] = None) -> None:
        """Counts one failure and records it (and logs it at ERROR)."""
        rec = {
            "item_id": item_id,
            "error_type": type(error).__name__,
            "error_message": str(error),
            "context": dict(context or {}),
        }
        with self._mu:
            self.failure_count += 1
            self.errors.append(rec)
        logger.error("Error processing %s: %s", item_id, error)

    def get_summary(self) -> Dict[str, Any]:
        """Returns ``{"total", "success", "failure", "error_rate", "errors"}``
        (error_rate = failure / max(1, total); errors is a copy)."""
        with self._mu:
            total = self.success_count + self.failure_count
            return {
                "total": total,
                "success": self.success_count,
                "failure": self.failure_count,
                "error_rate": self.failure_count / max(1, total),
                "errors": list(self.errors),
            }

    def has_errors(self) -> bool:
        """Whether any failure was recorded."""
        with self._mu:
            return bool(self.errors)

    def raise_if_all_failed(self) -> None:
        """Raises RuntimeError when there were failures and no success."""
        with self._mu:
            if self.failure_count > 0 and self.success_count == 0:
                raise RuntimeError(f"All operations failed: {len(self.errors)} errors")

    def reset(self) -> None:
        """Forgets everything recorded."""
        with self._mu:
            self.errors = []
            self.success_count = self.failure_count = 0


def _push(stack: "ContextVar[Tuple[T, ...]]", item: T) -> None:
    """Pushes ``item`` on a stack kept per context (task or thread): what
    each nested ``async with``/``with`` of a RateLimiter or CircuitBreaker
    was admitted with, for its exit."""
    stack.set(stack.get() + (item,))


def _pop(stack: "ContextVar[Tuple[T, ...]]") -> T:
    """Pops the item last pushed with :func:`_push` in this context."""
    items = stack.get()
    item = items[-1]
    stack.set(items[:-1])
    return item


def _run_inside(cm: Any, func: F) -> F:
    """``func`` (async or sync) wrapped to run inside ``cm`` (``async with``
    for a coroutine function, ``with`` otherwise): the decorator form of
    RateLimiter and CircuitBreaker."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            async with cm:
                return await func(*args, **kwargs)

        return cast(F, awrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with cm:
            return func(*args, **kwargs)

    return cast(F, wrapper)
