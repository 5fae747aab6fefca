"""Decoding of the google.rpc.Status details that gRPC servers attach to errors.

The service (and any gRPC upstream) puts a serialized google.rpc.Status in the
``grpc-status-details-bin`` trailer; its details are ``google.protobuf.Any``
values such as RetryInfo, BadRequest and ErrorInfo. Those messages are tiny
and stable, so they are read here straight from the protobuf wire format:
the SDK then needs no googleapis-common-protos and registers nothing in the
default descriptor pool (no clash with another copy of those protos).

Everything here is pure and safe across threads and tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

DETAILS_KEY = "grpc-status-details-bin"

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@dataclass(frozen=True)
class FieldViolation:
    """One field of a request that the service rejected (google.rpc.BadRequest).

    ``field`` is the API name of the field (e.g. ``"limit.max_calls"``) and
    ``description`` says what is wrong with it. Immutable.
    """

    field: str
    description: str


@dataclass(frozen=True)
class StatusDetails:
    """The details of one error status that the SDK understands. Immutable.

    ``retry_after`` comes from a RetryInfo detail (seconds, None when absent),
    ``field_violations`` from BadRequest, ``reason``/``domain``/``metadata``
    from ErrorInfo.
    """

    retry_after: Optional[float] = None
    field_violations: Tuple[FieldViolation, ...] = ()
    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[Tuple[int, Any]]:
    """Yields (field number, value): an int for varints, bytes for
    length-delimited fields; fixed-width fields are skipped."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            yield num, v
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            yield num, buf[i : i + n]
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _duration(buf: bytes) -> float:
    seconds = nanos = 0
    for num, v in _fields(buf):
        if num == 1 and isinstance(v, int):
            seconds = _signed(v)
        elif num == 2 and isinstance(v, int):
            nanos = _signed(v)
    return seconds + nanos / 1e9


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else ""


def _text_pair(blob: bytes) -> Tuple[str, str]:
    """The text fields 1 and 2 of a message: a FieldViolation's field and
    description, a map entry's key and value. Raises ValueError."""
    a = b = ""
    for num, v in _fields(blob):
        if num == 1:
            a = _text(v)
        elif num == 2:
            b = _text(v)
    return a, b


def parse_status_details(blob: bytes) -> StatusDetails:
    """Parses a serialized google.rpc.Status; unknown details are ignored.

    Raises nothing: a malformed blob gives empty details.
    """
    retry_after: Optional[float] = None
    violations = []
    reason = domain = ""
    md = {}
    try:
        for num, v in _fields(blob):
            if num != 3 or not isinstance(v, bytes):
                continue
            type_url, value = "", b""
            for n2, v2 in _fields(v):
                if n2 == 1:
                    type_url = _text(v2)
                elif n2 == 2 and isinstance(v2, bytes):
                    value = v2
            if type_url == _RETRY_INFO:
                for n3, v3 in _fields(value):
                    if n3 == 1 and isinstance(v3, bytes):
                        retry_after = max(_duration(v3), 0.0)
            elif type_url == _BAD_REQUEST:
                for n3, v3 in _fields(value):
                    if n3 == 1 and isinstance(v3, bytes):
                        violations.append(FieldViolation(*_text_pair(v3)))
            elif type_url == _ERROR_INFO:
                for n3, v3 in _fields(value):
                    if n3 == 1:
                        reason = _text(v3)
                    elif n3 == 2:
                        domain = _text(v3)
                    elif n3 == 3 and isinstance(v3, bytes):
                        k, val = _text_pair(v3)
                        md[k] = val
    except ValueError:
        pass
    return StatusDetails(retry_after, tuple(violations), reason, domain, md)


def details_from_metadata(md: Optional[Iterable[Tuple[str, Any]]]) -> StatusDetails:
    """Finds and parses ``grpc-status-details-bin`` in gRPC metadata (a
    sequence of (key, value) pairs, or grpc.aio.Metadata). Raises nothing."""
    if md:
        for k, v in md:
            if k == DETAILS_KEY and isinstance(v, (bytes, bytearray)):
                return parse_status_details(bytes(v))
    return StatusDetails()


def metadata_value(md: Optional[Iterable[Tuple[str, Any]]], key: str) -> Optional[str]:
    """Returns the first value of ``key`` in gRPC metadata, or None."""
    if md:
        for k, v in md:
            if k == key:
                return v if isinstance(v, str) else _text(v)
    return None


__all__: Sequence[str] = ("FieldViolation", "StatusDetails", "parse_status_details", "details_from_metadata")
