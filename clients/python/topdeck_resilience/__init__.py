"""topdeck_resilience: the Python SDK of the TopDeck resilience service.

Its modules mirror the seed's ``topdeck.common`` ones, so moving over is an
import change plus an address:

=========================  =====================================  ==========================
seed module                this package                           backed by
=========================  =====================================  ==========================
``resilience.py``          :mod:`topdeck_resilience.resilience`   Acquire / ReportOutcome
``worker_pool.py``         :mod:`topdeck_resilience.worker_pool`  local
``cache.py``               :mod:`topdeck_resilience.cache`        CacheService
``logging_config.py``      :mod:`topdeck_resilience.logging_config` local (ids go out on RPCs)
=========================  =====================================  ==========================

Every object takes ``client=`` (a :class:`ResilienceClient`) and otherwise
uses the process-wide default client, whose address is
``TOPDECK_RESILIENCE_ADDR`` (default ``localhost:50051``). When the service
cannot be reached, limits and breakers decide locally (``degraded``), the
cache misses, and nothing hangs: see :mod:`topdeck_resilience.client`.
"""

from . import errors
from .cache import Cache, CacheConfig, cached
from .client import (
    BreakerPolicy,
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
    ClientClosedError,
    DeadlineExceeded,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimited,
    ResilienceError,
    ServiceError,
    ServiceUnavailableError,
    StoreUnavailableError,
    UnauthenticatedError,
)
from .logging_config import get_logger, set_correlation_id, setup_logging
from .resilience import CircuitBreaker, ErrorTracker, RateLimiter, RetryConfig, retry_after_of, retry_with_backoff
from .worker_pool import WorkerPool, WorkerPoolConfig, parallel_map

__version__ = "0.1.0"

__all__ = [
    "ResilienceClient",
    "get_default_client",
    "set_default_client",
    "deadline",
    "time_left",
    "RateLimiter",
    "RateLimit",
    "RetryConfig",
    "retry_with_backoff",
    "retry_after_of",
    "CircuitBreaker",
    "CircuitState",
    "BreakerSettings",
    "BreakerStatus",
    "BreakerPolicy",
    "Decision",
    "Reason",
    "ReportResult",
    "ErrorTracker",
    "WorkerPool",
    "WorkerPoolConfig",
    "parallel_map",
    "Cache",
    "CacheConfig",
    "cached",
    "setup_logging",
    "get_logger",
    "set_correlation_id",
    "__version__",
]
# Every error is public here too: one list, errors.__all__.
__all__ += errors.__all__
