from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
INVALIDATION_KIND_DELETE: InvalidationKind
INVALIDATION_KIND_DELETE_PATTERN: InvalidationKind
INVALIDATION_KIND_EXPIRED: InvalidationKind
INVALIDATION_KIND_RESYNC: InvalidationKind
INVALIDATION_KIND_SET: InvalidationKind
INVALIDATION_KIND_UNSPECIFIED: InvalidationKind

class DeletePatternRequest(_message.Message):
    __slots__ = ["pattern"]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    def __init__(self, pattern: _Optional[str] = ...) -> None: ...

class DeletePatternResponse(_message.Message):
    __slots__ = ["degraded", "deleted"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    deleted: int
    def __init__(self, deleted: _Optional[int] = ..., degraded: bool = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ["keys"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ["degraded", "deleted"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    deleted: int
    def __init__(self, deleted: _Optional[int] = ..., degraded: bool = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ["fresh", "key"]
    FRESH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    fresh: bool
    key: str
    def __init__(self, key: _Optional[str] = ..., fresh: bool = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ["degraded", "found", "ttl", "value"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    found: bool
    ttl: _duration_pb2.Duration
    value: bytes
    def __init__(self, found: bool = ..., value: _Optional[bytes] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., degraded: bool = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ["degraded", "deletes", "errors", "hit_ratio", "hits", "keys", "misses", "sets"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DELETES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    deletes: int
    errors: int
    hit_ratio: float
    hits: int
    keys: int
    misses: int
    sets: int
    def __init__(self, hits: _Optional[int] = ..., misses: _Optional[int] = ..., sets: _Optional[int] = ..., deletes: _Optional[int] = ..., errors: _Optional[int] = ..., hit_ratio: _Optional[float] = ..., keys: _Optional[int] = ..., degraded: bool = ...) -> None: ...

class Invalidation(_message.Message):
    __slots__ = ["keys", "kind", "pattern"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    kind: InvalidationKind
    pattern: str
    def __init__(self, kind: _Optional[_Union[InvalidationKind, str]] = ..., keys: _Optional[_Iterable[str]] = ..., pattern: _Optional[str] = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ["key", "ttl", "value"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    ttl: _duration_pb2.Duration
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SetResponse(_message.Message):
    __slots__ = ["degraded", "stored"]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    degraded: bool
    stored: bool
    def __init__(self, stored: bool = ..., degraded: bool = ...) -> None: ...

class WatchInvalidationsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class WatchInvalidationsResponse(_message.Message):
    __slots__ = ["invalidation"]
    INVALIDATION_FIELD_NUMBER: _ClassVar[int]
    invalidation: Invalidation
    def __init__(self, invalidation: _Optional[_Union[Invalidation, _Mapping]] = ...) -> None: ...

class InvalidationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
