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

When the service cannot be reached, limiters and breakers decide with local,
per-process state (see :mod:`topdeck_resilience.client`). Everything here is
safe across threads and tasks.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import logging
import random
import threading
import time
from contextvars import ContextVar
from datetime import datetime, timezone
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

import grpc

from ._status import details_from_metadata
from .client import (
    _deadline_var,
    BreakerSettings,
    BreakerStatus,
    CircuitState,
    Decision,
    RateLimit,
    Reason,
    ReportResult,
    ResilienceClient,
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

    Usage::

        limiter = RateLimiter(max_calls=200, time_window=60.0, key="azure-devops/org-42")
        await limiter.acquire()          # waits until admitted, as the seed's did
        async with limiter:              # the same
            ...
        if await limiter.try_acquire():  # answers at once
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
    ) -> None:
        if not key:
            raise InvalidArgumentError.local("key", "is required")
        self.max_calls = max_calls
        self.time_window = time_window
        self.key = key
        self.burst = burst
        self.policy = policy
        self._client = client
        # Requests of acquire() without a bound, by (client, cost): immutable
        # once built, shared by concurrent calls (read only).
        self._prepared: Dict[Tuple[int, int], Tuple[Any, float]] = {}
        has_limit = max_calls is not None or time_window is not None
        if has_limit:
            self.limit: Optional[RateLimit] = RateLimit(cast(int, max_calls), cast(float, time_window), burst)
        elif not policy:
            raise InvalidArgumentError.local("limit", "give max_calls and time_window, or policy")
        else:
            self.limit = None

    @property
    def client(self) -> ResilienceClient:
        """The client this limiter calls (``client=`` or the default one)."""
        return self._client or get_default_client()

    def _args(self) -> Dict[str, Any]:
        if self.policy:
            return {"policy": self.policy}
        return {"limit": self.limit}

    def _local_policy(self, c: ResilienceClient) -> None:
        if self.policy and self.limit is not None and self.policy not in c.local_policies:
            c.local_policies[self.policy] = self.limit

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
        if d.reason != Reason.RATE_LIMITED or d.retry_after <= 0 or (end is not None and d.retry_after > left):
            if d.reason == Reason.CIRCUIT_OPEN:
                raise CircuitOpenError(d.retry_after, local=d.local)
            raise RateLimited(d.retry_after, key=self.key, local=d.local, decision=d)
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
        c = self.client
        self._local_policy(c)
        end = self._bounds(max_wait)
        args = self._args()
        waited = 0.0
        while True:
            if end is None:
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
        c = self.client
        self._local_policy(c)
        end = self._bounds(max_wait)
        args = self._args()
        waited = 0.0
        while True:
            chunk = _MAX_WAIT_CHUNK if end is None else max(end - time.monotonic(), 0.0)
            d = c.acquire_sync(self.key, cost=cost, max_wait=chunk, **args)
            if d.allowed:
                return d if not waited else _with_waited(d, waited)
            pause = self._next(d, end, waited)
            time.sleep(pause)
            waited += pause

    async def try_acquire(self, cost: int = 1) -> bool:
        """Takes ``cost`` tokens if they are there now: True, else False
        (never waits). Raises as :meth:`acquire`, except RateLimited."""
        return (await self.check(cost)).allowed

    def try_acquire_sync(self, cost: int = 1) -> bool:
        """The synchronous twin of :meth:`try_acquire`."""
        c = self.client
        self._local_policy(c)
        return c.acquire_sync(self.key, cost=cost, **self._args()).allowed

    async def check(self, cost: int = 1, *, dry_run: bool = False) -> Decision:
        """Like try_acquire but returns the whole :class:`Decision`
        (remaining, retry_after, degraded...). ``dry_run`` takes nothing."""
        c = self.client
        self._local_policy(c)
        return await c.acquire(self.key, cost=cost, dry_run=dry_run, **self._args())

    async def __aenter__(self) -> Decision:
        return await self.acquire()

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        return None

    def __enter__(self) -> Decision:
        return self.acquire_sync()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        return None

    def __repr__(self) -> str:
        what = f"policy={self.policy!r}" if self.policy else f"max_calls={self.max_calls}, time_window={self.time_window}"
        return f"RateLimiter({what}, key={self.key!r})"


def _with_waited(d: Decision, waited: float) -> Decision:
    return Decision(
        d.allowed, d.reason, d.remaining, d.retry_after, d.reset_after, d.waited + waited, d.breaker_state,
        d.degraded, d.local, d.permit_id, d.breaker_generation,
    )


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
        for holder in (getattr(exc, "response", None), exc):
            if holder is None:
                continue
            status = getattr(holder, "status_code", None)
            if status is None:
                status = getattr(holder, "status", None)
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
    """
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
                    delay = plan(attempt, e, start, name)
                    if delay is None:
                        raise
                time.sleep(delay)
                attempt += 1

        return cast(F, wrapper)

    return decorator


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
            if d.reason == Reason.RATE_LIMITED:
                raise RateLimited(d.retry_after, key=self.limiter.key if self.limiter else "", local=d.local, decision=d)
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

    async def _finish(self, a: _Admitted, exc: Optional[BaseException]) -> None:
        failed = self.is_failure(exc)
        d = a.decision
        c = self.client
        if failed is None:
            if d.local:
                c.local_breakers.release(self.name, d.permit_id)
            return
        try:
            r = await c.report_outcome(
                self.name, not failed, latency=time.monotonic() - a.start, permit_id=d.permit_id,
                breaker_generation=d.breaker_generation, local=d.local, local_breaker=self.local_settings,
            )
            self._observe(r.state)
        except (ResilienceError, asyncio.TimeoutError) as e:  # the outcome is best effort; never hide the call's own result
            logger.warning("circuit breaker %r: outcome not reported: %s", self.name, e)

    def _finish_sync(self, a: _Admitted, exc: Optional[BaseException]) -> None:
        failed = self.is_failure(exc)
        d = a.decision
        c = self.client
        if failed is None:
            if d.local:
                c.local_breakers.release(self.name, d.permit_id)
            return
        try:
            r = c.report_outcome_sync(
                self.name, not failed, latency=time.monotonic() - a.start, permit_id=d.permit_id,
                breaker_generation=d.breaker_generation, local=d.local, local_breaker=self.local_settings,
            )
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
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await func(*args, **kwargs)

            return cast(F, awrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return cast(F, wrapper)

    async def __aenter__(self) -> Decision:
        d = await self.client.acquire(**self._acquire_args())
        self._admit(d)
        a = _Admitted(d, time.monotonic())
        self._entered.set(self._entered.get() + (a,))
        return d

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        stack = self._entered.get()
        a, self_stack = stack[-1], stack[:-1]
        self._entered.set(self_stack)
        await self._finish(a, exc)

    def __enter__(self) -> Decision:
        d = self.client.acquire_sync(**self._acquire_args())
        self._admit(d)
        self._entered.set(self._entered.get() + (_Admitted(d, time.monotonic()),))
        return d

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        stack = self._entered.get()
        a = stack[-1]
        self._entered.set(stack[:-1])
        self._finish_sync(a, exc)

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
