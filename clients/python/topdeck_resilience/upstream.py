"""Upstream feedback: what an upstream said about its own limits, parsed from
its answer and reported to the resilience service for a limit key, so that
one process's 429 makes the whole fleet back off at once.

* :func:`from_headers`: ``Retry-After`` (seconds or an HTTP date) on a 429 or
  503, ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (or the IETF draft's
  ``RateLimit-Remaining`` / ``RateLimit-Reset``) on any answer. A reset of
  1e9 or more (September 2001 as a Unix time) is a Unix time in seconds,
  read relative to now; a smaller one is a delay in seconds; from 1e11 on
  (milliseconds since the epoch, garbage) it is ignored. Pure.
* :func:`from_grpc_error`: the RetryInfo of a RESOURCE_EXHAUSTED or
  UNAVAILABLE ``grpc.RpcError``. Pure.
* :func:`from_exception`: either of them, from an exception raised by an
  HTTP library (``exc.response`` with ``status_code`` and ``headers``:
  httpx.HTTPStatusError, requests.HTTPError; or the exception's own
  ``status``/``headers``: aiohttp.ClientResponseError) or by gRPC.
  Duck-typed: none of those libraries is imported. Never raises.
* :func:`report_upstream` / :func:`report_upstream_sync`: ReportUpstream.
  The service pauses the key fleet-wide (every Acquire on it is refused
  with reason ``upstream_throttled`` until then, at most 15 minutes) and
  lowers its bucket to the upstream's remaining quota (never raises it).

:class:`~topdeck_resilience.resilience.RateLimiter`,
:class:`~topdeck_resilience.resilience.CircuitBreaker` and
:func:`~topdeck_resilience.resilience.retry_with_backoff` call these
without caller code. Everything here is safe across threads and tasks.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import grpc

from ._gen import resilience_pb2 as pb
from ._status import details_from_metadata
from .client import _dur, _secs

__all__ = [
    "MAX_UPSTREAM_DELAY",
    "Upstream",
    "UpstreamResult",
    "from_headers",
    "from_grpc_error",
    "from_exception",
    "report_upstream",
    "report_upstream_sync",
]

logger = logging.getLogger("topdeck_resilience")

MAX_UPSTREAM_DELAY = 86400.0
"""Every parsed delay is cut to a day, so that an absurd header stays a
number; the service pauses a key for at most 15 minutes anyway."""

_EPOCH_FROM = 1e9  # September 2001: a delay that long (31 years) is no delay
_EPOCH_TO = 1e11  # the year 5138: larger values are milliseconds or garbage


@dataclass(frozen=True)
class Upstream:
    """What one answer of an upstream said about its limits (seconds).

    ``retry_after``: how long it asked not to be called (None: it did not
    say). ``remaining``: its remaining quota (None: unknown).
    ``reset_after``: when that quota is reset (None: unknown). Immutable.
    """

    retry_after: Optional[float] = None
    remaining: Optional[int] = None
    reset_after: Optional[float] = None

    @property
    def pause(self) -> float:
        """How long the key should be left alone: the longer of
        ``retry_after`` and, when ``remaining`` is 0, ``reset_after``."""
        d = self.retry_after or 0.0
        if self.remaining == 0 and self.reset_after is not None:
            d = max(d, self.reset_after)
        return d

    def __bool__(self) -> bool:
        return self.retry_after is not None or self.remaining is not None or self.reset_after is not None


@dataclass(frozen=True)
class UpstreamResult:
    """What the service did with a report: ``paused_for`` seconds from now
    (longer than reported when an earlier report paused the key for longer),
    ``clamped`` (cut to 15 minutes), ``remaining`` tokens after it,
    ``degraded`` (one replica only) and ``local`` (not sent: the service was
    unreachable). Immutable."""

    paused_for: float = 0.0
    clamped: bool = False
    remaining: int = 0
    degraded: bool = False
    local: bool = False


def _values(headers: Any, *names: str) -> List[str]:
    """Every value of the first of ``names`` that ``headers`` has, looked up
    case-insensitively (httpx.Headers, requests' CaseInsensitiveDict,
    aiohttp's CIMultiDict, a plain dict or a list of pairs)."""
    if headers is None:
        return []
    for name in names:
        getall = getattr(headers, "get_list", None) or getattr(headers, "getall", None)
        if callable(getall):
            try:
                vs = getall(name)
            except (KeyError, TypeError):
                vs = []
            if vs:
                return [str(v) for v in vs]
        items: Iterable[Any]
        if hasattr(headers, "items"):
            items = headers.items()
        else:
            items = headers
        out = []
        low = name.lower()
        try:
            for k, v in items:
                if str(k).lower() == low:
                    out.append(str(v))
        except (TypeError, ValueError):
            return []
        if out:
            return out
    return []


def _retry_after(value: str, now: float) -> Optional[float]:
    s = value.strip()
    if not s:
        return None
    if s.isdigit():
        return min(float(int(s)), MAX_UPSTREAM_DELAY)
    if s[:1] in "+-" or s[:1].isdigit():
        return None  # a signed or fractional number is not a Retry-After
    try:
        when = email.utils.parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(max(when.timestamp() - now, 0.0), MAX_UPSTREAM_DELAY)


def _remaining(values: List[str]) -> Optional[int]:
    best: Optional[int] = None
    for v in values:
        for f in v.split(","):
            f = f.split(";", 1)[0].strip()
            if not f or not (f.isdigit() and f.isascii()):
                continue
            n = int(f)
            if best is None or n < best:
                best = n
    return best


def _reset(value: str, now: float) -> Optional[float]:
    s = value.split(",", 1)[0].split(";", 1)[0].strip()
    if not s:
        return None
    try:
        f = float(s)
    except ValueError:
        return None
    if math.isnan(f) or math.isinf(f) or f < 0 or f >= _EPOCH_TO:
        return None
    d = f - now if f >= _EPOCH_FROM else f
    return min(max(d, 0.0), MAX_UPSTREAM_DELAY)


def from_headers(status: int, headers: Any, now: Optional[float] = None) -> Upstream:
    """Reads what an HTTP answer (status code ``status``, ``headers``) says
    about the upstream's limits; ``now`` is the Unix time to read dates and
    epoch resets against (default: the current time). Malformed or negative
    values are ignored; delays are cut to MAX_UPSTREAM_DELAY. Pure; raises
    nothing."""
    now = time.time() if now is None else now
    retry_after = None
    if status in (429, 503):
        vs = _values(headers, "Retry-After")
        if vs:
            retry_after = _retry_after(vs[0], now)
    remaining = _remaining(_values(headers, "X-RateLimit-Remaining", "RateLimit-Remaining"))
    reset_after = None
    vs = _values(headers, "X-RateLimit-Reset", "RateLimit-Reset")
    if vs:
        reset_after = _reset(vs[0], now)
    return Upstream(retry_after, remaining, reset_after)


def from_grpc_error(exc: BaseException) -> Upstream:
    """The RetryInfo delay of a RESOURCE_EXHAUSTED or UNAVAILABLE
    ``grpc.RpcError`` (an empty Upstream otherwise). Raises nothing."""
    try:
        if not isinstance(exc, grpc.RpcError):
            return Upstream()
        code = exc.code() if callable(getattr(exc, "code", None)) else None  # type: ignore[attr-defined]
        if code not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
            return Upstream()
        tm = getattr(exc, "trailing_metadata", None)
        if not callable(tm):
            return Upstream()
        d = details_from_metadata(tm()).retry_after
        if d is None or d <= 0:
            return Upstream()
        return Upstream(retry_after=min(d, MAX_UPSTREAM_DELAY))
    except Exception:
        return Upstream()


def _http_answers(exc: BaseException) -> Iterator[Tuple[Any, Any]]:
    """Yields (holder, status) for what may carry an HTTP answer on an
    exception: ``exc.response``, then the exception itself; status is the
    holder's ``status_code`` (httpx, requests), else its ``status``
    (aiohttp), else None. The retry-after hint of
    :func:`~topdeck_resilience.resilience.retry_after_of` reads them too."""
    for holder in (getattr(exc, "response", None), exc):
        if holder is None:
            continue
        status = getattr(holder, "status_code", None)
        if status is None:
            status = getattr(holder, "status", None)
        yield holder, status


def from_exception(exc: BaseException, now: Optional[float] = None) -> Upstream:
    """What the answer behind ``exc`` said about the upstream's limits: a
    gRPC error (:func:`from_grpc_error`) or an HTTP error whose response is
    ``exc.response`` (``status_code``/``status`` and ``headers``) or the
    exception itself (aiohttp.ClientResponseError). An empty Upstream when
    there is none. Raises nothing."""
    try:
        if isinstance(exc, grpc.RpcError):
            return from_grpc_error(exc)
        for holder, status in _http_answers(exc):
            if isinstance(status, int) and not isinstance(status, bool):
                return from_headers(status, getattr(holder, "headers", None), now)
    except Exception:
        pass
    return Upstream()


def feedback(key: str, up: Upstream, *, limit: Any = None, policy: Optional[str] = None) -> Optional[Any]:
    """``up`` as the API's UpstreamFeedback for ``key`` (None when there is
    nothing to report). ``limit`` is the key's ``pb.RateLimit`` (or an
    object with ``_pb``), ``policy`` its configured name: a remaining quota
    above 0 needs one of them to lower the bucket and is dropped without."""
    if not key or not up:
        return None
    fb = pb.UpstreamFeedback(key=key)
    sent = False
    if up.retry_after is not None and up.retry_after > 0:
        fb.retry_after.CopyFrom(_dur(up.retry_after))
        sent = True
    lim = getattr(limit, "_pb", limit)
    has_rate = policy or (lim is not None and lim.max_calls > 0)
    if up.remaining is not None and (up.remaining == 0 or has_rate):
        fb.remaining = up.remaining
        if up.reset_after:
            fb.reset_after.CopyFrom(_dur(up.reset_after))
        if up.remaining > 0:
            if policy:
                fb.policy = policy
            else:
                fb.limit.CopyFrom(lim)
        sent = True
    return fb if sent else None


def _request(key: str, up: Upstream, limit: Any, policy: Optional[str]) -> Optional[Any]:
    fb = feedback(key, up, limit=limit, policy=policy)
    return None if fb is None else pb.ReportUpstreamRequest(feedback=[fb])


def _unreported(key: str) -> UpstreamResult:
    logger.warning("upstream feedback for %r not reported: the resilience service is unreachable", key)
    return UpstreamResult(local=True, degraded=True)


def _result(r: Any) -> UpstreamResult:
    res = r.results[0] if len(r.results) else pb.UpstreamResult()
    return UpstreamResult(_secs(res.paused_for), res.clamped, res.remaining, res.degraded)


async def report_upstream(
    client: Any, key: str, up: Upstream, *, limit: Any = None, policy: Optional[str] = None
) -> UpstreamResult:
    """Reports ``up`` for ``key`` (with its ``limit`` or ``policy``, needed
    for a remaining quota above 0) through ``client`` (a ResilienceClient).
    Returns what the service did; an empty result when ``up`` says nothing.
    When the service is unreachable and the client fails open, nothing is
    paused (local decisions do not know upstream pauses) and the result
    says ``local=True``. Raises a ServiceError (e.g. InvalidArgumentError),
    ServiceUnavailableError (fail_open=False), ClientClosedError."""
    req = _request(key, up, limit, policy)
    if req is None:
        return UpstreamResult()
    return await client._call_or_local("ReportUpstream", req, _result, lambda: _unreported(key))


def report_upstream_sync(
    client: Any, key: str, up: Upstream, *, limit: Any = None, policy: Optional[str] = None
) -> UpstreamResult:
    """The synchronous twin of :func:`report_upstream`."""
    req = _request(key, up, limit, policy)
    if req is None:
        return UpstreamResult()
    return client._call_or_local_sync("ReportUpstream", req, _result, lambda: _unreported(key))
