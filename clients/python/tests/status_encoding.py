"""Test helper: a serialized google.rpc.Status with RetryInfo / BadRequest /
ErrorInfo details, written by hand in the protobuf wire format."""

from typing import Dict, List, Optional, Tuple


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _any(type_url: str, value: bytes) -> bytes:
    return _field(1, type_url) + _field(2, value)


def status_with_details(
    code: int,
    message: str,
    retry_delay: Optional[float] = None,
    violations: List[Tuple[str, str]] = (),
    reason: str = "",
    domain: str = "",
    metadata: Optional[Dict[str, str]] = None,
) -> bytes:
    out = _field(1, code) + _field(2, message)
    if retry_delay is not None:
        secs = int(retry_delay)
        dur = _field(1, secs) + _field(2, int(round((retry_delay - secs) * 1e9)))
        out += _field(3, _any("type.googleapis.com/google.rpc.RetryInfo", _field(1, dur)))
    if violations:
        br = b"".join(_field(1, _field(1, f) + _field(2, d)) for f, d in violations)
        out += _field(3, _any("type.googleapis.com/google.rpc.BadRequest", br))
    if reason:
        ei = _field(1, reason) + _field(2, domain)
        for k, v in (metadata or {}).items():
            ei += _field(3, _field(1, k) + _field(2, v))
        out += _field(3, _any("type.googleapis.com/google.rpc.ErrorInfo", ei))
    return out
