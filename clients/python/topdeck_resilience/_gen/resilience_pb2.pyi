from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ACQUIRE_REASON_ALLOWED: AcquireReason
ACQUIRE_REASON_CIRCUIT_OPEN: AcquireReason
ACQUIRE_REASON_CONCURRENCY_LIMITED: AcquireReason
ACQUIRE_REASON_RATE_LIMITED: AcquireReason
ACQUIRE_REASON_UNSPECIFIED: AcquireReason
ACQUIRE_REASON_UPSTREAM_THROTTLED: AcquireReason
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_UNSPECIFIED: CircuitState
DESCRIPTOR: _descriptor.FileDescriptor
OUTCOME_FAILURE: Outcome
OUTCOME_SUCCESS: Outcome
OUTCOME_UNSPECIFIED: Outcome

class AcquireRequest(_message.Message):
    __slots__ = ["breaker", "cost", "dry_run", "key", "limit", "limits", "max_wait", "policy"]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    breaker: str
    cost: int
    dry_run: bool
    key: str
    limit: RateLimit
    limits: _containers.RepeatedCompositeFieldContainer[LimitRequest]
    max_wait: _duration_pb2.Duration
    policy: str
    def __init__(self, key: _Optional[str] = ..., limit: _Optional[_Union[RateLimit, _Mapping]] = ..., policy: _Optional[str] = ..., cost: _Optional[int] = ..., max_wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., breaker: _Optional[str] = ..., dry_run: bool = ..., limits: _Optional[_Iterable[_Union[LimitRequest, _Mapping]]] = ...) -> None: ...

class AcquireResponse(_message.Message):
    __slots__ = ["allowed", "breaker_generation", "breaker_state", "degraded", "limited_by", "limits", "permit_id", "reason", "remaining", "reset_after", "retry_after", "shadow_reason", "slot_token", "waited"]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    BREAKER_GENERATION_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    LIMITED_BY_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    SHADOW_REASON_FIELD_NUMBER: _ClassVar[int]
    SLOT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WAITED_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    breaker_generation: int
    breaker_state: CircuitState
    degraded: bool
    limited_by: str
    limits: _containers.RepeatedCompositeFieldContainer[LimitDecision]
    permit_id: str
    reason: AcquireReason
    remaining: int
    reset_after: _duration_pb2.Duration
    retry_after: _duration_pb2.Duration
    shadow_reason: AcquireReason
    slot_token: str
    waited: _duration_pb2.Duration
    def __init__(self, allowed: bool = ..., reason: _Optional[_Union[AcquireReason, str]] = ..., remaining: _Optional[int] = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reset_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., breaker_state: _Optional[_Union[CircuitState, str]] = ..., permit_id: _Optional[str] = ..., degraded: bool = ..., waited: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., breaker_generation: _Optional[int] = ..., limits: _Optional[_Iterable[_Union[LimitDecision, _Mapping]]] = ..., limited_by: _Optional[str] = ..., slot_token: _Optional[str] = ..., shadow_reason: _Optional[_Union[AcquireReason, str]] = ...) -> None: ...

class BreakerEvent(_message.Message):
    __slots__ = ["at", "breaker", "generation", "reason", "to"]
    AT_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    breaker: str
    generation: int
    reason: str
    to: CircuitState
    def __init__(self, breaker: _Optional[str] = ..., to: _Optional[_Union[CircuitState, str]] = ..., at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., generation: _Optional[int] = ..., **kwargs) -> None: ...

class BreakerPolicy(_message.Message):
    __slots__ = ["failure_rate_threshold", "failure_threshold", "half_open_max_calls", "minimum_calls", "mode", "name", "probe_timeout", "recovery_timeout", "success_threshold", "window"]
    FAILURE_RATE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FAILURE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HALF_OPEN_MAX_CALLS_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_CALLS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROBE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    failure_rate_threshold: float
    failure_threshold: int
    half_open_max_calls: int
    minimum_calls: int
    mode: str
    name: str
    probe_timeout: _duration_pb2.Duration
    recovery_timeout: _duration_pb2.Duration
    success_threshold: int
    window: _duration_pb2.Duration
    def __init__(self, failure_threshold: _Optional[int] = ..., recovery_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., half_open_max_calls: _Optional[int] = ..., success_threshold: _Optional[int] = ..., probe_timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., mode: _Optional[str] = ..., failure_rate_threshold: _Optional[float] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., minimum_calls: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class BreakerStateRequest(_message.Message):
    __slots__ = ["breaker"]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    breaker: str
    def __init__(self, breaker: _Optional[str] = ...) -> None: ...

class BreakerStateResponse(_message.Message):
    __slots__ = ["status"]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: BreakerStatus
    def __init__(self, status: _Optional[_Union[BreakerStatus, _Mapping]] = ...) -> None: ...

class BreakerStatus(_message.Message):
    __slots__ = ["consecutive_failures", "degraded", "generation", "name", "next_probe_at", "opened_at", "policy", "probes_in_flight", "state", "window_calls", "window_failures"]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEXT_PROBE_AT_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROBES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CALLS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FAILURES_FIELD_NUMBER: _ClassVar[int]
    consecutive_failures: int
    degraded: bool
    generation: int
    name: str
    next_probe_at: _timestamp_pb2.Timestamp
    opened_at: _timestamp_pb2.Timestamp
    policy: BreakerPolicy
    probes_in_flight: int
    state: CircuitState
    window_calls: int
    window_failures: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[CircuitState, str]] = ..., consecutive_failures: _Optional[int] = ..., generation: _Optional[int] = ..., opened_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., next_probe_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., probes_in_flight: _Optional[int] = ..., policy: _Optional[_Union[BreakerPolicy, _Mapping]] = ..., degraded: bool = ..., window_calls: _Optional[int] = ..., window_failures: _Optional[int] = ...) -> None: ...

class LimitDecision(_message.Message):
    __slots__ = ["allowed", "in_flight", "key", "reason", "remaining", "reset_after", "retry_after", "shadow"]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    in_flight: int
    key: str
    reason: AcquireReason
    remaining: int
    reset_after: _duration_pb2.Duration
    retry_after: _duration_pb2.Duration
    shadow: bool
    def __init__(self, key: _Optional[str] = ..., allowed: bool = ..., reason: _Optional[_Union[AcquireReason, str]] = ..., remaining: _Optional[int] = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reset_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., in_flight: _Optional[int] = ..., shadow: bool = ...) -> None: ...

class LimitRequest(_message.Message):
    __slots__ = ["cost", "key", "limit", "policy"]
    COST_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    cost: int
    key: str
    limit: RateLimit
    policy: str
    def __init__(self, key: _Optional[str] = ..., limit: _Optional[_Union[RateLimit, _Mapping]] = ..., policy: _Optional[str] = ..., cost: _Optional[int] = ...) -> None: ...

class ListBreakersRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "prefix"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    prefix: str
    def __init__(self, prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBreakersResponse(_message.Message):
    __slots__ = ["breakers", "next_page_token"]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerStatus]
    next_page_token: str
    def __init__(self, breakers: _Optional[_Iterable[_Union[BreakerStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ["burst", "in_flight_lease", "max_calls", "max_in_flight", "time_window"]
    BURST_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_LEASE_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    TIME_WINDOW_FIELD_NUMBER: _ClassVar[int]
    burst: int
    in_flight_lease: _duration_pb2.Duration
    max_calls: int
    max_in_flight: int
    time_window: _duration_pb2.Duration
    def __init__(self, max_calls: _Optional[int] = ..., time_window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., burst: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., in_flight_lease: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ["slot_token"]
    SLOT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    slot_token: str
    def __init__(self, slot_token: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ["degraded", "released"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    released: int
    def __init__(self, released: _Optional[int] = ..., degraded: bool = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ["breaker", "breaker_generation", "latency", "outcome", "permit_id", "slot_token", "upstream"]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    BREAKER_GENERATION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    breaker: str
    breaker_generation: int
    latency: _duration_pb2.Duration
    outcome: Outcome
    permit_id: str
    slot_token: str
    upstream: _containers.RepeatedCompositeFieldContainer[UpstreamFeedback]
    def __init__(self, breaker: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., latency: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., permit_id: _Optional[str] = ..., breaker_generation: _Optional[int] = ..., slot_token: _Optional[str] = ..., upstream: _Optional[_Iterable[_Union[UpstreamFeedback, _Mapping]]] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ["degraded", "ignored", "released", "state", "upstream"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    ignored: bool
    released: int
    state: CircuitState
    upstream: _containers.RepeatedCompositeFieldContainer[UpstreamResult]
    def __init__(self, state: _Optional[_Union[CircuitState, str]] = ..., ignored: bool = ..., degraded: bool = ..., released: _Optional[int] = ..., upstream: _Optional[_Iterable[_Union[UpstreamResult, _Mapping]]] = ...) -> None: ...

class ReportUpstreamRequest(_message.Message):
    __slots__ = ["feedback"]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    feedback: _containers.RepeatedCompositeFieldContainer[UpstreamFeedback]
    def __init__(self, feedback: _Optional[_Iterable[_Union[UpstreamFeedback, _Mapping]]] = ...) -> None: ...

class ReportUpstreamResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[UpstreamResult]
    def __init__(self, results: _Optional[_Iterable[_Union[UpstreamResult, _Mapping]]] = ...) -> None: ...

class ResetBreakerRequest(_message.Message):
    __slots__ = ["breaker", "state"]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    breaker: str
    state: CircuitState
    def __init__(self, breaker: _Optional[str] = ..., state: _Optional[_Union[CircuitState, str]] = ...) -> None: ...

class ResetBreakerResponse(_message.Message):
    __slots__ = ["status"]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: BreakerStatus
    def __init__(self, status: _Optional[_Union[BreakerStatus, _Mapping]] = ...) -> None: ...

class UpstreamFeedback(_message.Message):
    __slots__ = ["key", "limit", "policy", "remaining", "reset_after", "retry_after"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    key: str
    limit: RateLimit
    policy: str
    remaining: int
    reset_after: _duration_pb2.Duration
    retry_after: _duration_pb2.Duration
    def __init__(self, key: _Optional[str] = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., remaining: _Optional[int] = ..., reset_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., limit: _Optional[_Union[RateLimit, _Mapping]] = ..., policy: _Optional[str] = ...) -> None: ...

class UpstreamResult(_message.Message):
    __slots__ = ["clamped", "degraded", "key", "paused_for", "remaining"]
    CLAMPED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FOR_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    clamped: bool
    degraded: bool
    key: str
    paused_for: _duration_pb2.Duration
    remaining: int
    def __init__(self, key: _Optional[str] = ..., paused_for: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., clamped: bool = ..., remaining: _Optional[int] = ..., degraded: bool = ...) -> None: ...

class WatchBreakersRequest(_message.Message):
    __slots__ = ["prefix"]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class WatchBreakersResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: BreakerEvent
    def __init__(self, event: _Optional[_Union[BreakerEvent, _Mapping]] = ...) -> None: ...

class AcquireReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
