"""The exceptions of topdeck_resilience.

Everything the SDK raises on purpose derives from :class:`ResilienceError`:

* :class:`RateLimited` and :class:`CircuitOpenError`: a limit or a breaker
  refused the call; nothing was called. Both carry ``retry_after`` (seconds),
  which :func:`topdeck_resilience.resilience.retry_with_backoff` honours.
* :class:`ServiceError` and its subclasses: the resilience service itself
  answered with an error status (the request was wrong, the policy is
  unknown, its shared store is down and the limit says ``deny``...). They
  carry the status code, the server's message and its details (RetryInfo as
  ``retry_after``, BadRequest as ``field_violations``). A local decision never
  replaces them.
* :class:`ServiceUnavailableError`: the service could not be reached
  (UNAVAILABLE or a deadline without an answer from it). Limits and breakers
  only raise it with ``fail_open=False``; otherwise they decide locally.

Exception objects are plain values: safe to share across threads and tasks.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import grpc

from ._status import FieldViolation, StatusDetails


class ResilienceError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class ClientClosedError(ResilienceError, RuntimeError):
    """The :class:`~topdeck_resilience.ResilienceClient` was closed; create a
    new one (the process-wide default client is recreated on next use)."""


class ServiceUnavailableError(ResilienceError, ConnectionError):
    """The resilience service could not be reached: the channel reported
    UNAVAILABLE, or the call's deadline passed without any answer from the
    service. After one, the client decides locally for its retry interval
    before asking the service again.

    Attributes: ``code`` (grpc.StatusCode or None when the call was skipped in
    the retry interval) and ``details`` (the transport's message).
    """

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class DeadlineExceeded(ResilienceError, TimeoutError):
    """The caller's own :func:`~topdeck_resilience.deadline` ran out while
    the SDK waited for the service; the service is not considered down."""


class ServiceError(ResilienceError):
    """The service answered the call with an error status.

    Attributes:
        code: the grpc.StatusCode.
        message: the server's message (for INVALID_ARGUMENT it starts with the
            field's name).
        retry_after: seconds from a RetryInfo detail, or None.
        field_violations: BadRequest field violations (``.field``,
            ``.description``), possibly empty.
        reason, domain: from an ErrorInfo detail, when present.
        correlation_id: the x-correlation-id the server logged the call with.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: Optional[StatusDetails] = None,
        correlation_id: Optional[str] = None,
    ) -> None:
        d = details or StatusDetails()
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.retry_after: Optional[float] = d.retry_after
        self.field_violations: Tuple[FieldViolation, ...] = d.field_violations
        self.reason = d.reason
        self.domain = d.domain
        self.correlation_id = correlation_id


class InvalidArgumentError(ServiceError, ValueError):
    """INVALID_ARGUMENT: the request was malformed; ``field_violations`` name
    the fields. Also raised by the SDK itself, before sending anything, for an
    argument it can check locally (then ``code`` is still INVALID_ARGUMENT)."""

    @classmethod
    def local(cls, field: str, description: str) -> "InvalidArgumentError":
        """An INVALID_ARGUMENT found by the SDK before any call."""
        return cls(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}: {description}",
            StatusDetails(field_violations=(FieldViolation(field, description),)),
        )


class NotFoundError(ServiceError, LookupError):
    """NOT_FOUND: e.g. a limit ``policy`` the server's configuration does not
    define."""


class StoreUnavailableError(ServiceError):
    """UNAVAILABLE answered by the service itself: its shared store (Redis) is
    unreachable and the limit says ``on_store_failure: deny``. Unlike
    :class:`ServiceUnavailableError` the service is up, so no local decision
    is made."""


class PermissionDeniedError(ServiceError):
    """PERMISSION_DENIED: the caller's token lacks the method's role."""


class UnauthenticatedError(ServiceError):
    """UNAUTHENTICATED: the service wants a (valid) ``token=``."""


class FailedPreconditionError(ServiceError):
    """FAILED_PRECONDITION: e.g. the breaker policy in the server's
    configuration is invalid."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAVAILABLE: StoreUnavailableError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
}


def service_error(
    code: grpc.StatusCode, message: str, details: Optional[StatusDetails], correlation_id: Optional[str]
) -> ServiceError:
    """Builds the ServiceError subclass that matches ``code``."""
    return _BY_CODE.get(code, ServiceError)(code, message, details, correlation_id)


def _refusal_message(what: str, retry_after: float, local: bool) -> str:
    """The message of a refusal (RateLimited, CircuitOpenError): ``what``,
    then when to retry and whether it was decided locally."""
    msg = what
    if retry_after > 0:
        msg += f"; retry after {retry_after:.3f}s"
    if local:
        msg += " (local decision)"
    return msg


class RateLimited(ResilienceError):
    """A rate limit refused the call (nothing was called), or
    :meth:`RateLimiter.acquire` could not get tokens within ``max_wait`` or
    the current :func:`~topdeck_resilience.deadline`.

    Attributes: ``retry_after`` (seconds until the tokens could be there),
    ``key``, ``local`` (decided without the service) and ``decision`` (the
    full :class:`~topdeck_resilience.Decision`, when there is one).
    """

    def __init__(self, retry_after: float = 0.0, *, key: str = "", local: bool = False, decision: Any = None) -> None:
        self.retry_after = max(float(retry_after), 0.0)
        self.key = key
        self.local = local
        self.decision = decision
        super().__init__(_refusal_message(f"rate limited (key {key})" if key else "rate limited", self.retry_after, local))


class CircuitOpenError(ResilienceError):
    """A circuit breaker refused the call without calling the function: it is
    open, or half-open with all its probes in flight.

    Attributes: ``retry_after`` (seconds until it admits a probe), ``breaker``
    (its name) and ``local`` (decided without the service).
    """

    def __init__(self, retry_after: float = 0.0, *, breaker: str = "", local: bool = False) -> None:
        self.retry_after = max(float(retry_after), 0.0)
        self.breaker = breaker
        self.local = local
        super().__init__(_refusal_message(f"circuit breaker {breaker!r} open" if breaker else "circuit breaker open", self.retry_after, local))


__all__: Sequence[str] = (
    "ResilienceError",
    "ClientClosedError",
    "ServiceUnavailableError",
    "DeadlineExceeded",
    "ServiceError",
    "InvalidArgumentError",
    "NotFoundError",
    "StoreUnavailableError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "FailedPreconditionError",
    "RateLimited",
    "CircuitOpenError",
    "FieldViolation",
)
