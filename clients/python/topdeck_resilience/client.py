"""ResilienceClient: the one connection of a process to the resilience service.

Everything else in the SDK (RateLimiter, CircuitBreaker, Cache) calls the
service through a client: the one passed as ``client=``, or the process-wide
default client (:func:`get_default_client`), whose address comes from
``TOPDECK_RESILIENCE_ADDR`` (default ``localhost:50051``).

The fallback contract is the Go SDK's (``client/doc.go``): when the service
cannot be reached (UNAVAILABLE from the channel, or the call's deadline
passing with no answer from it), limits and breakers are decided with local,
per-process state of the same semantics, and those decisions say
``degraded=True, local=True``; for ``retry_interval`` seconds the client then
decides locally without asking, and asks the service again after it. With
``fail_open=False`` it raises :class:`ServiceUnavailableError` instead. An
error the service itself answered (INVALID_ARGUMENT, NOT_FOUND for an unknown
policy, UNAVAILABLE because a limit says ``on_store_failure: deny``) is raised
as a typed :class:`ServiceError`, never replaced by a local decision: an
answer of the service carries its ``x-correlation-id`` response header, a
transport failure or a hung service does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import threading
import time
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import grpc
import grpc.aio
from google.protobuf import duration_pb2

from ._gen import cache_pb2_grpc, resilience_pb2 as pb, resilience_pb2_grpc
from ._local import CLOSED, HALF_OPEN, OPEN, BreakerSettings, LocalBreakers, LocalLimiter
from ._status import details_from_metadata, metadata_value
from .errors import (
    ClientClosedError,
    DeadlineExceeded,
    InvalidArgumentError,
    ServiceUnavailableError,
    service_error,
)
from .logging_config import correlation_id_var

__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RETRY_INTERVAL",
    "ResilienceClient",
    "RateLimit",
    "BreakerSettings",
    "CircuitState",
    "Reason",
    "Decision",
    "ReportResult",
    "BreakerPolicy",
    "BreakerStatus",
    "deadline",
    "time_left",
    "get_default_client",
    "set_default_client",
]

logger = logging.getLogger("topdeck_resilience")

T = TypeVar("T")

# A connection silent for KEEPALIVE_TIME_MS while a call is in flight is
# pinged, and closed when the ping is not answered within KEEPALIVE_TIMEOUT_MS.
KEEPALIVE_TIME_MS = 15_000
KEEPALIVE_TIMEOUT_MS = 5_000

ADDRESS_ENV = "TOPDECK_RESILIENCE_ADDR"
"""The environment variable with the service's address (host:port)."""
DEFAULT_ADDRESS = "localhost:50051"
"""The address used when neither ``address=`` nor TOPDECK_RESILIENCE_ADDR is set."""
DEFAULT_TIMEOUT = 0.25
"""Seconds each RPC may take (beyond the time it asks the service to hold it
for tokens), so that a hung service degrades quickly."""
DEFAULT_RETRY_INTERVAL = 1.0
"""Seconds the client decides locally after finding the service unreachable."""
MAX_WAIT_CHUNK = 60.0
"""The longest max_wait of one Acquire; longer waits ask again."""

CORRELATION_HEADER = "x-correlation-id"

# ---------------------------------------------------------------------------
# Deadlines


_deadline_var: ContextVar[Optional[float]] = ContextVar("topdeck_resilience_deadline", default=None)


class deadline:
    """Bounds everything the SDK does inside it (waiting for tokens, holding
    a call at the service, retry sleeps) to ``seconds`` from now, like a Go
    context deadline::

        with deadline(2.0):
            await limiter.acquire()        # never waits past the 2 s
            await fetch()                  # retry_with_backoff never sleeps past them

    Works as ``with`` and ``async with``; nested deadlines keep the earlier
    one. It lives in a ContextVar: it follows the current task or thread
    (and tasks created inside it). It does not cancel anything by itself:
    the SDK's waits end early and raise RateLimited/DeadlineExceeded.
    """

    def __init__(self, seconds: float) -> None:
        """``seconds``: the time budget from entering the block."""
        self.seconds = seconds
        self._tokens: list = []

    def __enter__(self) -> "deadline":
        at = time.monotonic() + max(self.seconds, 0.0)
        cur = _deadline_var.get()
        self._tokens.append(_deadline_var.set(at if cur is None else min(cur, at)))
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        _deadline_var.reset(self._tokens.pop())

    async def __aenter__(self) -> "deadline":
        return self.__enter__()

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.__exit__(exc_type, exc, tb)


def time_left() -> Optional[float]:
    """Seconds left before the current :class:`deadline` (>= 0), or None
    when there is none."""
    at = _deadline_var.get()
    return None if at is None else max(at - time.monotonic(), 0.0)


# ---------------------------------------------------------------------------
# Values


class CircuitState(str, enum.Enum):
    """A breaker's state. A str enum: ``state == "open"`` works, as with the
    seed's string states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Reason(str, enum.Enum):
    """Why a call was allowed or refused."""

    ALLOWED = "allowed"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    #: The upstream said to back off (a 429/503 reported by any caller):
    #: the key is paused fleet-wide for ``retry_after``.
    UPSTREAM_THROTTLED = "upstream_throttled"
    #: A concurrency limit has no free slot (``retry_after`` is a hint).
    CONCURRENCY_LIMITED = "concurrency_limited"


_STATE_FROM_PB = {
    pb.CIRCUIT_STATE_CLOSED: CircuitState.CLOSED,
    pb.CIRCUIT_STATE_OPEN: CircuitState.OPEN,
    pb.CIRCUIT_STATE_HALF_OPEN: CircuitState.HALF_OPEN,
}
_STATE_FROM_LOCAL = {CLOSED: CircuitState.CLOSED, OPEN: CircuitState.OPEN, HALF_OPEN: CircuitState.HALF_OPEN}
_REASON_FROM_PB = {
    pb.ACQUIRE_REASON_RATE_LIMITED: Reason.RATE_LIMITED,
    pb.ACQUIRE_REASON_CIRCUIT_OPEN: Reason.CIRCUIT_OPEN,
    pb.ACQUIRE_REASON_UPSTREAM_THROTTLED: Reason.UPSTREAM_THROTTLED,
    pb.ACQUIRE_REASON_CONCURRENCY_LIMITED: Reason.CONCURRENCY_LIMITED,
}


def _dur(seconds: float) -> duration_pb2.Duration:
    ns = int(round(seconds * 1e9))
    return duration_pb2.Duration(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def _secs(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos * 1e-9


@dataclass(frozen=True)
class RateLimit:
    """An inline token bucket: at most ``burst`` tokens (None or 0 means
    ``max_calls``), refilled at ``max_calls`` per ``time_window`` seconds.

    Raises InvalidArgumentError (a ValueError) when a field is out of range.
    Immutable.
    """

    max_calls: int
    time_window: float
    burst: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_calls, int) or self.max_calls <= 0:
            raise InvalidArgumentError.local("limit.max_calls", f"must be a positive int, got {self.max_calls!r}")
        if not self.time_window or self.time_window <= 0:
            raise InvalidArgumentError.local("limit.time_window", f"must be > 0 seconds, got {self.time_window!r}")
        if self.burst is not None and (not isinstance(self.burst, int) or self.burst < 0):
            raise InvalidArgumentError.local("limit.burst", f"must be an int >= 0, got {self.burst!r}")
        object.__setattr__(
            self, "_pb", pb.RateLimit(max_calls=self.max_calls, time_window=_dur(self.time_window), burst=self.burst or 0)
        )

    @property
    def capacity(self) -> int:
        """The bucket's capacity: ``burst`` or ``max_calls``."""
        return self.burst or self.max_calls


@dataclass(frozen=True, eq=False)
class Decision:
    """The answer to one Acquire (rate limit and/or breaker). Immutable.

    allowed: whether the call may go now. reason: why. remaining: whole
    tokens left. retry_after: when refused, seconds until it could be
    admitted. reset_after: seconds until the bucket is full. waited: seconds
    the call was held for reserved tokens. breaker_state: the breaker's
    state when one was asked. degraded: the decision holds for one replica
    or process only (the service decided without its store, or the SDK
    decided locally). local: the SDK decided without the service.
    permit_id, breaker_generation: what ReportOutcome needs.
    """

    allowed: bool
    reason: Reason = Reason.ALLOWED
    remaining: int = 0
    retry_after: float = 0.0
    reset_after: float = 0.0
    waited: float = 0.0
    breaker_state: Optional[CircuitState] = None
    degraded: bool = False
    local: bool = False
    permit_id: str = ""
    breaker_generation: int = 0

    def _fields(self) -> Tuple[Any, ...]:
        return (self.allowed, self.reason, self.remaining, self.retry_after, self.reset_after, self.waited,
                self.breaker_state, self.degraded, self.local, self.permit_id, self.breaker_generation)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())


class _WireDecision(Decision):
    """A Decision read from the service's AcquireResponse field by field when
    first looked at: acquire() is the hot path and most callers never look."""

    allowed = functools.cached_property(lambda self: self._r.allowed)  # type: ignore[assignment]
    reason = functools.cached_property(lambda self: _REASON_FROM_PB.get(self._r.reason, Reason.ALLOWED))  # type: ignore[assignment]
    remaining = functools.cached_property(lambda self: self._r.remaining)  # type: ignore[assignment]
    retry_after = functools.cached_property(lambda self: _secs(self._r.retry_after))  # type: ignore[assignment]
    reset_after = functools.cached_property(lambda self: _secs(self._r.reset_after))  # type: ignore[assignment]
    waited = functools.cached_property(lambda self: _secs(self._r.waited))  # type: ignore[assignment]
    breaker_state = functools.cached_property(lambda self: _STATE_FROM_PB.get(self._r.breaker_state))  # type: ignore[assignment]
    degraded = functools.cached_property(lambda self: self._r.degraded)  # type: ignore[assignment]
    local = False
    permit_id = functools.cached_property(lambda self: self._r.permit_id)  # type: ignore[assignment]
    breaker_generation = functools.cached_property(lambda self: self._r.breaker_generation)  # type: ignore[assignment]


_WireDecision.__qualname__ = _WireDecision.__name__ = "Decision"  # it prints as what it is to callers


@dataclass(frozen=True)
class ReportResult:
    """The answer to ReportOutcome: the breaker's ``state`` after it, whether
    the outcome was ``ignored`` (older generation, spent permit),
    ``degraded`` and ``local`` as in Decision. Immutable."""

    state: CircuitState
    ignored: bool = False
    degraded: bool = False
    local: bool = False


@dataclass(frozen=True)
class BreakerPolicy:
    """The policy in force for a breaker (times in seconds). Immutable."""

    name: str
    failure_threshold: int
    recovery_timeout: float
    half_open_max_calls: int
    success_threshold: int
    probe_timeout: float
    mode: str = "consecutive"
    failure_rate_threshold: float = 0.0
    window: float = 0.0
    minimum_calls: int = 0


@dataclass(frozen=True)
class BreakerStatus:
    """One breaker's status. ``opened_at``/``next_probe_at`` are UTC
    datetimes from the service, or None (local status gives them as None and
    ``retry_after`` instead). ``policy`` is None for a local status.
    Immutable."""

    name: str
    state: CircuitState
    generation: int = 0
    consecutive_failures: int = 0
    opened_at: Optional[datetime] = None
    next_probe_at: Optional[datetime] = None
    probes_in_flight: int = 0
    policy: Optional[BreakerPolicy] = None
    degraded: bool = False
    local: bool = False
    window_calls: int = 0
    window_failures: int = 0
    retry_after: float = 0.0


def _ts(t: Any) -> Optional[datetime]:
    if t.seconds == 0 and t.nanos == 0:
        return None
    return datetime.fromtimestamp(t.seconds + t.nanos * 1e-9, timezone.utc)


def _status_from_pb(st: Any) -> BreakerStatus:
    p = st.policy
    policy = None
    if st.HasField("policy"):
        policy = BreakerPolicy(
            name=p.name,
            failure_threshold=p.failure_threshold,
            recovery_timeout=_secs(p.recovery_timeout),
            half_open_max_calls=p.half_open_max_calls,
            success_threshold=p.success_threshold,
            probe_timeout=_secs(p.probe_timeout),
            mode=p.mode or "consecutive",
            failure_rate_threshold=p.failure_rate_threshold,
            window=_secs(p.window),
            minimum_calls=p.minimum_calls,
        )
    nxt = _ts(st.next_probe_at)
    return BreakerStatus(
        name=st.name,
        state=_STATE_FROM_PB.get(st.state, CircuitState.CLOSED),
        generation=st.generation,
        consecutive_failures=st.consecutive_failures,
        opened_at=_ts(st.opened_at),
        next_probe_at=nxt,
        probes_in_flight=st.probes_in_flight,
        policy=policy,
        degraded=st.degraded,
        window_calls=st.window_calls,
        window_failures=st.window_failures,
        retry_after=max((nxt - datetime.now(timezone.utc)).total_seconds(), 0.0) if nxt else 0.0,
    )


def _status_of(r: Any) -> BreakerStatus:
    """The BreakerStatus of a BreakerStateResponse."""
    return _status_from_pb(r.status)


def _report_result(r: Any) -> ReportResult:
    """The ReportResult of a ReportOutcomeResponse."""
    return ReportResult(_STATE_FROM_PB.get(r.state, CircuitState.CLOSED), r.ignored, r.degraded)


# ---------------------------------------------------------------------------
# The client


class _Stubs:
    __slots__ = ("channel", "rs", "cs")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.rs = resilience_pb2_grpc.ResilienceServiceStub(channel)
        self.cs = cache_pb2_grpc.CacheServiceStub(channel)


TLS = Union[None, bool, grpc.ChannelCredentials]


def _close_in_loop(loop: asyncio.AbstractEventLoop, stubs: _Stubs) -> None:
    """Schedules the close of an async channel in its own event loop (from
    any thread), unless that loop is closed already."""
    if not loop.is_closed():
        try:
            asyncio.run_coroutine_threadsafe(stubs.channel.close(), loop)
        except RuntimeError:
            pass


def _served(r: Any) -> Tuple[Decision, Optional[Callable[[], None]]]:
    """An Acquire the service answered: its Decision, nothing to wait for
    locally (the service held the call for any wait itself)."""
    return ResilienceClient._decision(r), None


@contextlib.contextmanager
def _undone_if_interrupted(undo: Callable[[], None]) -> Iterator[None]:
    """Calls ``undo`` when the block raises (any exception, cancellation
    and KeyboardInterrupt too), then lets the exception go on."""
    try:
        yield
    except BaseException:
        undo()
        raise


def _acquire_wait(cost: int, max_wait: float) -> float:
    """Checks an Acquire's ``cost`` and returns its ``max_wait`` cut to the
    current :class:`deadline` and to MAX_WAIT_CHUNK (at least 0), for
    ResilienceClient.acquire and a RateLimiter's several limits alike.
    Raises InvalidArgumentError."""
    if not isinstance(cost, int) or cost < 1:
        raise InvalidArgumentError.local("cost", f"must be an int >= 1, got {cost!r}")
    left = time_left()
    if left is not None:
        max_wait = min(max_wait, left)
    return min(max(max_wait, 0.0), MAX_WAIT_CHUNK)


class ResilienceClient:
    """A connection to the resilience service, shared by every RateLimiter,
    CircuitBreaker and Cache given it as ``client=``.

    Args:
        address: ``host:port`` of the service; None reads
            TOPDECK_RESILIENCE_ADDR, else ``localhost:50051``.
        tls: None/False for plaintext; True for TLS with the system's roots;
            or a ``grpc.ChannelCredentials`` (e.g.
            ``grpc.ssl_channel_credentials(root_certificates=...)`` for a
            private CA or mutual TLS).
        token: sent as ``authorization: Bearer <token>`` on every RPC.
        timeout: seconds each RPC may take (default 0.25), beyond the time it
            asks the service to hold it for tokens.
        fail_open: True (default): decide limits and breakers locally while
            the service is unreachable. False: raise ServiceUnavailableError.
        retry_interval: seconds to decide locally, without asking, after the
            service was found unreachable (default 1.0; 0 asks every time).
        local_policies: limits of named policies for local decisions
            (``{"azure-devops": RateLimit(200, 60.0)}``); a policy without
            one is admitted while the service is unreachable.
        channel_options: extra gRPC channel arguments; one named here
            replaces the SDK's default of that name (reconnect backoff
            100 ms to 1 s; keepalive pings every 15 s, 5 s to answer, while a
            call is in flight).

    The connection is one ``grpc.aio`` channel, opened lazily by the first
    call (a channel belongs to an event loop: a client used from several
    loops opens one per loop), and one synchronous channel for the SDK's
    sync twins, opened only when they are used. Every RPC carries the
    current correlation id (``x-correlation-id``) and the token, and has a
    timeout. A client starts no thread or task of its own; ``await close()``
    closes its channels. Safe across threads and tasks.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        tls: TLS = None,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        fail_open: bool = True,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        local_policies: Optional[Mapping[str, RateLimit]] = None,
        channel_options: Sequence[Tuple[str, Any]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout is None or timeout <= 0:
            raise InvalidArgumentError.local("timeout", f"must be > 0 seconds, got {timeout!r}")
        self.address: str = address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
        self.timeout = float(timeout)
        self.fail_open = fail_open
        self.retry_interval = max(float(retry_interval), 0.0)
        self.local_policies: Dict[str, RateLimit] = dict(local_policies or {})
        if tls is True:
            self._creds: Optional[grpc.ChannelCredentials] = grpc.ssl_channel_credentials()
        elif tls is None or tls is False:
            self._creds = None
        elif isinstance(tls, grpc.ChannelCredentials):
            self._creds = tls
        else:
            raise InvalidArgumentError.local("tls", f"must be None, a bool or grpc.ChannelCredentials, got {type(tls).__name__}")
        self._md: Tuple[Tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        overridden = {k for k, _ in channel_options}
        defaults = [
            # Reconnect within about the retry interval once the service is back.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # While a call is in flight (a Cache's invalidation stream always
            # is), ping a silent connection, so that a hung service ends the
            # stream instead of leaving a near cache answering without
            # invalidations. The server accepts pings every 10 s or slower.
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        self._options = [o for o in defaults if o[0] not in overridden] + list(channel_options)
        self._clock = clock
        self._mu = threading.Lock()  # protects the fields below
        self._aio: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Stubs]" = weakref.WeakKeyDictionary()
        self._sync: Optional[_Stubs] = None
        self._closed = False
        # Read without the lock on the hot path (a plain attribute read).
        self._last: Tuple[Optional[asyncio.AbstractEventLoop], Optional[_Stubs]] = (None, None)
        self._down_until = 0.0
        self._warned_down = False
        self.local_limiter = LocalLimiter()
        self.local_breakers = LocalBreakers()

    def __repr__(self) -> str:
        return f"ResilienceClient({self.address!r}, tls={self._creds is not None}, timeout={self.timeout})"

    # -- channels ---------------------------------------------------------

    def _aio_stubs(self) -> _Stubs:
        loop = asyncio.get_running_loop()
        last_loop, stubs = self._last
        if last_loop is loop and stubs is not None:
            return stubs
        with self._mu:
            if self._closed:
                raise ClientClosedError(f"{self!r} is closed")
            stubs = self._aio.get(loop)
            if stubs is None:
                if self._creds is None:
                    ch = grpc.aio.insecure_channel(self.address, options=self._options)
                else:
                    ch = grpc.aio.secure_channel(self.address, self._creds, options=self._options)
                stubs = self._aio[loop] = _Stubs(ch)
            self._last = (loop, stubs)
            return stubs

    def _sync_stubs(self) -> _Stubs:
        stubs = self._sync
        if stubs is not None:
            return stubs
        with self._mu:
            if self._closed:
                raise ClientClosedError(f"{self!r} is closed")
            if self._sync is None:
                if self._creds is None:
                    ch = grpc.insecure_channel(self.address, options=self._options)
                else:
                    ch = grpc.secure_channel(self.address, self._creds, options=self._options)
                self._sync = _Stubs(ch)
            return self._sync

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    async def close(self) -> None:
        """Closes the client's channels (in-flight RPCs are cancelled); later
        calls raise ClientClosedError. Idempotent. Channels opened in other,
        still running event loops are closed in their loops."""
        aio = self._mark_closed()
        here = asyncio.get_running_loop()
        for loop, stubs in aio:
            if loop is here:
                await stubs.channel.close()
            else:
                _close_in_loop(loop, stubs)

    def close_sync(self) -> None:
        """Closes the synchronous channel and marks the client closed, for
        code without an event loop. Async channels are closed in their loops
        when those still run."""
        for loop, stubs in self._mark_closed():
            _close_in_loop(loop, stubs)

    def _mark_closed(self) -> List[Tuple[asyncio.AbstractEventLoop, _Stubs]]:
        """Marks the client closed, forgets its channels and closes the
        synchronous one; returns the async channels (by loop) to close."""
        with self._mu:
            self._closed = True
            aio = list(self._aio.items())
            self._aio.clear()
            sync, self._sync = self._sync, None
            self._last = (None, None)
        if sync is not None:
            sync.channel.close()
        return aio

    async def __aenter__(self) -> "ResilienceClient":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()

    # -- calls ------------------------------------------------------------

    def _metadata(self) -> Optional[Tuple[Tuple[str, str], ...]]:
        # None rather than an empty tuple: grpc.aio does less for a call
        # without metadata (measurable at tens of thousands of calls/s).
        cid = correlation_id_var.get()
        if cid and len(cid) <= 128 and cid.isascii() and cid.isprintable() and " " not in cid:
            return self._md + ((CORRELATION_HEADER, cid),)
        return self._md or None

    def _skip(self) -> None:
        if self._down_until and self._clock() < self._down_until:
            raise ServiceUnavailableError(f"resilience service {self.address} unavailable: skipped for the retry interval after a failure")

    def _timeout(self, extra: float) -> Tuple[float, bool]:
        t = self.timeout + extra
        left = time_left()
        if left is not None and left < t:
            return max(left, 0.001), True
        return t, False

    def _error(self, e: grpc.RpcError, cut: bool) -> Exception:
        code = e.code()
        initial = e.initial_metadata()
        answered = metadata_value(initial, CORRELATION_HEADER)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and answered is None:
            if cut and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return DeadlineExceeded("the caller's deadline ran out waiting for the resilience service")
            if self.retry_interval > 0:
                self._down_until = self._clock() + self.retry_interval
            if not self._warned_down:
                self._warned_down = True
                logger.warning("resilience service %s unreachable (%s: %s): deciding locally", self.address, code.name, e.details())
            return ServiceUnavailableError(
                f"resilience service {self.address} unavailable: {code.name}: {e.details()}", code=code, details=e.details() or ""
            )
        return service_error(code, e.details() or "", details_from_metadata(e.trailing_metadata()), answered)

    def _ok(self) -> None:
        if self._warned_down:
            self._warned_down = False
            logger.warning("resilience service %s reachable again", self.address)

    async def _call(self, service: str, method: str, request: Any, extra: float = 0.0) -> Any:
        """Calls one RPC; raises ServiceUnavailableError, DeadlineExceeded,
        ClientClosedError or a ServiceError."""
        self._skip()
        stubs = self._aio_stubs()
        timeout, cut = self._timeout(extra)
        rpc = getattr(stubs.rs if service == "rs" else stubs.cs, method)
        try:
            resp = await rpc(request, timeout=timeout, metadata=self._metadata())
        except grpc.aio.AioRpcError as e:
            raise self._error(e, cut) from e
        except asyncio.CancelledError:
            raise
        if self._warned_down:
            self._ok()
        return resp

    def _call_sync(self, service: str, method: str, request: Any, extra: float = 0.0) -> Any:
        """The synchronous twin of _call."""
        self._skip()
        stubs = self._sync_stubs()
        timeout, cut = self._timeout(extra)
        rpc = getattr(stubs.rs if service == "rs" else stubs.cs, method)
        try:
            resp = rpc(request, timeout=timeout, metadata=self._metadata())
        except grpc.RpcError as e:
            raise self._error(e, cut) from e  # type: ignore[arg-type]
        except ValueError as e:  # the sync channel was closed under us
            if self._closed:
                raise ClientClosedError(f"{self!r} is closed") from e
            raise
        if self._warned_down:
            self._ok()
        return resp

    async def _call_or_local(self, method: str, request: Any, answer: Callable[[Any], T], local: Callable[[], T], extra: float = 0.0) -> T:
        """Calls a ResilienceService RPC and returns ``answer(response)``;
        when the service cannot be reached and the client fails open,
        returns ``local()`` (what local state decides) instead. Raises as
        :meth:`_call` (ServiceUnavailableError only with fail_open=False)."""
        try:
            r = await self._call("rs", method, request, extra)
        except ServiceUnavailableError:
            if not self.fail_open:
                raise
            return local()
        return answer(r)

    def _call_or_local_sync(self, method: str, request: Any, answer: Callable[[Any], T], local: Callable[[], T], extra: float = 0.0) -> T:
        """The synchronous twin of _call_or_local."""
        try:
            r = self._call_sync("rs", method, request, extra)
        except ServiceUnavailableError:
            if not self.fail_open:
                raise
            return local()
        return answer(r)

    # -- Acquire ----------------------------------------------------------

    def _acquire_request(
        self, key: str, limit: Optional[RateLimit], policy: Optional[str], cost: int, max_wait: float, breaker: str, dry_run: bool
    ) -> Tuple[Any, float]:
        if key:
            if (limit is None) == (not policy):
                raise InvalidArgumentError.local("limit", f"key {key!r} needs exactly one of limit= and policy=")
        elif not breaker:
            raise InvalidArgumentError.local("key", "a key or a breaker is required")
        max_wait = _acquire_wait(cost, max_wait)
        req = pb.AcquireRequest(key=key, cost=cost, breaker=breaker, dry_run=dry_run)
        if key:
            if limit is not None:
                req.limit.CopyFrom(limit._pb)  # type: ignore[attr-defined]
            else:
                req.policy = policy  # type: ignore[assignment]
        if max_wait > 0:
            req.max_wait.CopyFrom(_dur(max_wait))
        return req, max_wait

    @staticmethod
    def _decision(r: Any) -> Decision:
        d = object.__new__(_WireDecision)
        d.__dict__["_r"] = r
        return d

    async def acquire(
        self,
        key: str = "",
        *,
        limit: Optional[RateLimit] = None,
        policy: Optional[str] = None,
        cost: int = 1,
        max_wait: float = 0.0,
        breaker: str = "",
        dry_run: bool = False,
        local_breaker: Optional[BreakerSettings] = None,
    ) -> Decision:
        """Asks for one decision: tokens of ``key`` under ``limit`` (inline)
        or ``policy`` (configured), and/or admission by ``breaker``, all or
        nothing. With ``max_wait`` > 0 the service reserves tokens that will
        be there within it and holds the call until then (bounded by the
        current :class:`deadline` and 60 s). A refusal is a Decision with
        ``allowed=False``, not an exception.

        Locally (service unreachable) the breaker uses ``local_breaker``
        settings (default BreakerSettings()).

        Raises: InvalidArgumentError (bad arguments, locally or from the
        service), NotFoundError (unknown policy), StoreUnavailableError (a
        ``deny`` limit while the service's store is down), another
        ServiceError, ServiceUnavailableError (only with fail_open=False),
        DeadlineExceeded, ClientClosedError.
        """
        req, max_wait = self._acquire_request(key, limit, policy, cost, max_wait, breaker, dry_run)
        return await self._acquire(req, max_wait, key, limit, policy, cost, breaker, dry_run, local_breaker)

    async def _acquire(
        self,
        req: Any,
        max_wait: float,
        key: str,
        limit: Optional[RateLimit],
        policy: Optional[str],
        cost: int,
        breaker: str,
        dry_run: bool,
        local_breaker: Optional[BreakerSettings],
    ) -> Decision:
        """acquire() for a request already built and checked."""
        d, give_back = await self._call_or_local(
            "Acquire", req, _served, lambda: self._to_wait(self._local_acquire(key, limit, policy, cost, max_wait, breaker, dry_run, local_breaker), breaker),
            max_wait,
        )
        if give_back is not None:
            with _undone_if_interrupted(give_back):
                await asyncio.sleep(d.waited)
        return d

    def acquire_sync(
        self,
        key: str = "",
        *,
        limit: Optional[RateLimit] = None,
        policy: Optional[str] = None,
        cost: int = 1,
        max_wait: float = 0.0,
        breaker: str = "",
        dry_run: bool = False,
        local_breaker: Optional[BreakerSettings] = None,
    ) -> Decision:
        """The synchronous twin of :meth:`acquire` (blocks the thread)."""
        req, max_wait = self._acquire_request(key, limit, policy, cost, max_wait, breaker, dry_run)
        d, give_back = self._call_or_local_sync(
            "Acquire", req, _served, lambda: self._to_wait(self._local_acquire(key, limit, policy, cost, max_wait, breaker, dry_run, local_breaker), breaker),
            max_wait,
        )
        if give_back is not None:
            with _undone_if_interrupted(give_back):
                time.sleep(d.waited)
        return d

    def _give_back(self, reservation: Any, breaker: str, permit: str) -> None:
        if reservation is not None:
            self.local_limiter.give_back(reservation)
        self.local_breakers.release(breaker, permit)

    def _to_wait(self, local: Tuple[Decision, Any, str], breaker: str) -> Tuple[Decision, Optional[Callable[[], None]]]:
        """A local decision (what :meth:`_local_acquire` returns) and, when
        the caller must wait ``waited`` for its reserved tokens, what gives
        the tokens and the probe back should that wait be interrupted (None:
        no wait). acquire() and acquire_sync() differ only in how they wait."""
        d, reservation, permit = local
        if d.waited > 0:
            return d, functools.partial(self._give_back, reservation, breaker, permit)
        return d, None

    def _local_acquire(
        self,
        key: str,
        limit: Optional[RateLimit],
        policy: Optional[str],
        cost: int,
        max_wait: float,
        breaker: str,
        dry_run: bool,
        settings: Optional[BreakerSettings],
    ) -> Tuple[Decision, Any, str]:
        """Decides as the service would, with local state: the breaker
        first, then the limit; a refused call gives back its probe.
        Returns the decision (``waited`` = how long the caller must wait for
        reserved tokens), the reservation and the probe permit."""
        now = self._clock()
        settings = settings or BreakerSettings()
        state: Optional[CircuitState] = None
        permit, generation = "", 0
        if breaker:
            if dry_run:
                st = self.local_breakers.status(now, breaker, settings)
                state = _STATE_FROM_LOCAL[st.state]
                if st.state == OPEN:
                    return (
                        Decision(False, Reason.CIRCUIT_OPEN, retry_after=(st.next_probe_at or now) - now, breaker_state=state,
                                 degraded=True, local=True, breaker_generation=st.generation),
                        None,
                        "",
                    )
            else:
                adm = self.local_breakers.allow(now, breaker, settings)
                state, permit, generation = _STATE_FROM_LOCAL[adm.state], adm.permit_id, adm.generation
                if not adm.allowed:
                    return (
                        Decision(False, Reason.CIRCUIT_OPEN, retry_after=adm.retry_after, breaker_state=state,
                                 degraded=True, local=True, breaker_generation=generation),
                        None,
                        "",
                    )
        lim = limit if limit is not None else (self.local_policies.get(policy) if policy else None)
        if not key or lim is None:
            return (
                Decision(True, breaker_state=state, degraded=True, local=True, permit_id=permit, breaker_generation=generation),
                None,
                permit,
            )
        if cost > lim.capacity:
            self.local_breakers.release(breaker, permit)
            raise InvalidArgumentError.local("cost", f"{cost} exceeds the limit's burst {lim.capacity}")
        res = self.local_limiter.acquire(now, key, lim.max_calls, lim.time_window, lim.burst or 0, cost, max_wait, dry_run)
        if not res.allowed:
            self.local_breakers.release(breaker, permit)
            return (
                Decision(False, Reason.RATE_LIMITED, res.remaining, res.retry_after, res.reset_after, breaker_state=state,
                         degraded=True, local=True, breaker_generation=generation),
                None,
                "",
            )
        return (
            Decision(True, Reason.ALLOWED, res.remaining, 0.0, res.reset_after, res.wait, state, True, True, permit, generation),
            res.reservation,
            permit,
        )

    # -- ReportOutcome ----------------------------------------------------

    def _report_request(self, breaker: str, success: bool, latency: float, permit_id: str, breaker_generation: int) -> Any:
        if not breaker:
            raise InvalidArgumentError.local("breaker", "is required")
        return pb.ReportOutcomeRequest(
            breaker=breaker,
            outcome=pb.OUTCOME_SUCCESS if success else pb.OUTCOME_FAILURE,
            latency=_dur(max(latency, 0.0)),
            permit_id=permit_id,
            breaker_generation=breaker_generation,
        )

    def _local_report(self, breaker: str, success: bool, permit_id: str, generation: int, settings: Optional[BreakerSettings]) -> ReportResult:
        state, ignored = self.local_breakers.report(self._clock(), breaker, settings or BreakerSettings(), success, generation, permit_id)
        return ReportResult(_STATE_FROM_LOCAL[state], ignored, True, True)

    async def report_outcome(
        self,
        breaker: str,
        success: bool,
        *,
        latency: float = 0.0,
        permit_id: str = "",
        breaker_generation: int = 0,
        local: bool = False,
        local_breaker: Optional[BreakerSettings] = None,
    ) -> ReportResult:
        """Records the outcome of a call admitted through ``breaker``, with
        the ``permit_id`` and ``breaker_generation`` of its Decision (pass
        ``local=decision.local`` so a local admission is reported locally).
        When the service cannot hear of it, the outcome is counted in the
        local breaker at its current generation.

        Raises: InvalidArgumentError, another ServiceError,
        ServiceUnavailableError (fail_open=False), ClientClosedError.
        """
        if local:
            return self._local_report(breaker, success, permit_id, breaker_generation, local_breaker)
        req = self._report_request(breaker, success, latency, permit_id, breaker_generation)
        return await self._call_or_local(
            "ReportOutcome", req, _report_result, lambda: self._local_report(breaker, success, "", 0, local_breaker)
        )

    def report_outcome_sync(
        self,
        breaker: str,
        success: bool,
        *,
        latency: float = 0.0,
        permit_id: str = "",
        breaker_generation: int = 0,
        local: bool = False,
        local_breaker: Optional[BreakerSettings] = None,
    ) -> ReportResult:
        """The synchronous twin of :meth:`report_outcome`."""
        if local:
            return self._local_report(breaker, success, permit_id, breaker_generation, local_breaker)
        req = self._report_request(breaker, success, latency, permit_id, breaker_generation)
        return self._call_or_local_sync(
            "ReportOutcome", req, _report_result, lambda: self._local_report(breaker, success, "", 0, local_breaker)
        )

    # -- breakers ---------------------------------------------------------

    def _local_status(self, name: str, settings: Optional[BreakerSettings]) -> BreakerStatus:
        now = self._clock()
        st = self.local_breakers.status(now, name, settings or BreakerSettings())
        return BreakerStatus(
            name=name,
            state=_STATE_FROM_LOCAL[st.state],
            generation=st.generation,
            consecutive_failures=st.consecutive_failures,
            probes_in_flight=st.probes_in_flight,
            degraded=True,
            local=True,
            retry_after=max((st.next_probe_at or now) - now, 0.0),
        )

    async def breaker_status(self, name: str, *, local_breaker: Optional[BreakerSettings] = None) -> BreakerStatus:
        """Returns a breaker's status from the service (CLOSED when never
        used), or the local breaker's while the service is unreachable.

        Raises: InvalidArgumentError, another ServiceError,
        ServiceUnavailableError (fail_open=False), ClientClosedError.
        """
        if not name:
            raise InvalidArgumentError.local("breaker", "is required")
        req = pb.BreakerStateRequest(breaker=name)
        return await self._call_or_local("BreakerState", req, _status_of, lambda: self._local_status(name, local_breaker))

    def breaker_status_sync(self, name: str, *, local_breaker: Optional[BreakerSettings] = None) -> BreakerStatus:
        """The synchronous twin of :meth:`breaker_status`."""
        if not name:
            raise InvalidArgumentError.local("breaker", "is required")
        req = pb.BreakerStateRequest(breaker=name)
        return self._call_or_local_sync("BreakerState", req, _status_of, lambda: self._local_status(name, local_breaker))

    async def reset_breaker(self, name: str, state: Union[CircuitState, str] = CircuitState.CLOSED) -> BreakerStatus:
        """Forces a breaker CLOSED (default) or OPEN, fleet-wide (an operator
        action: the server may require a role for it). Raises
        InvalidArgumentError (e.g. HALF_OPEN), another ServiceError,
        ServiceUnavailableError (the service is needed: no local reset),
        ClientClosedError."""
        st = CircuitState(state)
        want = {CircuitState.CLOSED: pb.CIRCUIT_STATE_CLOSED, CircuitState.OPEN: pb.CIRCUIT_STATE_OPEN}.get(st)
        if want is None:
            raise InvalidArgumentError.local("state", "must be closed or open")
        r = await self._call("rs", "ResetBreaker", pb.ResetBreakerRequest(breaker=name, state=want))
        return _status_from_pb(r.status)

    async def list_breakers(self, prefix: str = "", *, page_size: int = 100) -> List[BreakerStatus]:
        """Returns every breaker the fleet used recently whose name starts
        with ``prefix``, by name (all pages). Raises ServiceError,
        ServiceUnavailableError, ClientClosedError."""
        out: List[BreakerStatus] = []
        token = ""
        while True:
            r = await self._call("rs", "ListBreakers", pb.ListBreakersRequest(prefix=prefix, page_size=page_size, page_token=token))
            out.extend(_status_from_pb(s) for s in r.breakers)
            token = r.next_page_token
            if not token:
                return out


# ---------------------------------------------------------------------------
# The process-wide default client

_default_mu = threading.Lock()
_default: Optional[ResilienceClient] = None


def get_default_client() -> ResilienceClient:
    """Returns the process-wide default client, creating it on first use
    (address from TOPDECK_RESILIENCE_ADDR, else localhost:50051) or when the
    previous one was closed. Safe across threads."""
    global _default
    c = _default
    if c is not None and not c.closed:
        return c
    with _default_mu:
        if _default is None or _default.closed:
            _default = ResilienceClient()
        return _default


def set_default_client(client: Optional[ResilienceClient]) -> Optional[ResilienceClient]:
    """Makes ``client`` the process-wide default (None: create one from the
    environment on next use) and returns the previous one, which the caller
    then owns (close it). Safe across threads."""
    global _default
    with _default_mu:
        prev, _default = _default, client
        return prev
